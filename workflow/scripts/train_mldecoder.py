"""Rule train_mldecoder: the CLIP-Decoder head on the train split's patch tokens (pseudo-labels or the
seen labels' ground truth), resumable; writes the head file and its per-epoch history."""

import pyarrow.parquet as pq
import torch

from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.headsteps import load_tokens, save_head_model, train_mldecoder


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        token_ids, tokens = load_tokens(smk.input.tokens, smk.input.ids)
        label_ids, classifier = read_embeddings(smk.input.classifier, id_column="label_index")
        supervision = smk.params.supervision
        trained = train_mldecoder(
            token_ids,
            tokens,
            label_ids,
            classifier,
            dict(smk.params.train),
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
