"""Rule openvocab_labels: per-image vocabulary scores (CDUL aggregation of the kept names) and the
discovered label set (openvocab.discovery: none, frequency or cluster_vote)."""

from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.openvocab.discovery import openvocab_labels
from s3a.multilabel.openvocab.scores import read_views


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        openvocab = dict(smk.params.openvocab)
        if openvocab.get("n_labels") is None:  # null: discover as many names as the dataset has labels
            openvocab["n_labels"] = len(read_table(smk.input.label_set, columns=["label_index"]))
        glob = tiles = vocab_ids = vocabulary = None
        if openvocab.get("discovery") == "cluster_vote":  # the embeddings only serve the cluster vote
            import torch  # the other discoveries are numpy only (torch takes seconds to import)

            torch.set_num_threads(smk.threads)
            _, glob, tiles = read_views(smk.input.embeddings, smk.input.tiles)
            vocab_ids, vocabulary = read_embeddings(smk.input.vocabulary, id_column="vocab_index")
        scores, discovered = openvocab_labels(
            read_table(smk.input.views),
            openvocab,
            dict(smk.params.pseudo),
            glob,
            tiles,
            vocab_ids,
            vocabulary,
            dict(smk.params.kmeans),
            dict(smk.params.vote),
        )
        write_table(scores, smk.output.scores)
        write_table(discovered, smk.output.discovered)
        log.info("open-vocabulary scores: %d rows; %d names discovered", len(scores), len(discovered))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
