"""Rule predict_mldecoder: sigmoid scores of the token-trained CLIP-Decoder head over every label."""

import torch

from s3a.io import write_table
from s3a.logs import log_to
from s3a.multilabel.classifier import read_classifier
from s3a.multilabel.data.tables import predictions_table
from s3a.multilabel.decoder.tokens import load_tokens
from s3a.multilabel.decoder.train import load_head_model, predict_mldecoder


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        head, _ = load_head_model(smk.input.model)
        image_ids, tokens = load_tokens(smk.input.tokens, smk.input.ids)
        scores = predict_mldecoder(head, tokens, read_classifier(smk.input.classifier))
        write_table(predictions_table(image_ids, scores), smk.output[0])
        log.info("mldecoder scores: %d images x %d labels", *scores.shape)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
