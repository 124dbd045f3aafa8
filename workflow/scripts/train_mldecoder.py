"""Rule train_mldecoder: the CLIP-Decoder head on the train split's patch tokens (pseudo-labels or the
seen labels' ground truth), resumable; writes the head file and its per-epoch history."""

import pyarrow.parquet as pq
import torch

from s3a.device import pick_device
from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.classifier import read_classifier
from s3a.multilabel.decoder.tokens import load_tokens
from s3a.multilabel.decoder.train import save_head_model, train_mldecoder
from s3a.multilabel.learners import head_params


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        token_ids, tokens = load_tokens(smk.input.tokens, smk.input.ids)
        supervision = smk.params.supervision
        trained = train_mldecoder(
            token_ids,
            tokens,
            read_classifier(smk.input.classifier),
            *head_params(dict(smk.params.train), device=str(pick_device(None))),
            supervision,
            pseudo_table=pq.read_table(smk.input.pseudo) if supervision == "pseudo" else None,
            pseudo=dict(smk.params.pseudo),
            manifest=read_table(smk.input.manifest),
            labels=read_table(smk.input.labels),
            label_set=read_table(smk.input.label_set),
            state_path=smk.params.state,
        )
        save_head_model(smk.output.model, trained)
        write_table(trained.history, smk.output.history)
        log.info(
            "mldecoder (%s): %d labels, %d epochs",
            supervision,
            len(trained.label_indices),
            len(trained.history),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
