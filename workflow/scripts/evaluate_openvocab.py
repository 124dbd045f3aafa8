"""Rule evaluate_openvocab: exact and WordNet-hierarchical metrics rows of the open-vocabulary scores
against the dataset's labels, with the discovery recall and precision."""

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.openvocab.hierarchy import evaluate_openvocab_step


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        exact, hier = evaluate_openvocab_step(
            read_table(smk.input.scores),
            read_table(smk.input.discovered),
            read_table(smk.input.labels),
            read_table(smk.input.label_set),
            read_table(smk.input.manifest, columns=["image_id", "split"]),
            read_table(smk.input.vocabulary, columns=["vocab_index", "name", "synset_ids"]),
            dict(smk.params.openvocab),
            dataset=smk.wildcards.mldataset,
            model=smk.wildcards.model,
        )
        write_table(exact, smk.output.exact)
        write_table(hier, smk.output.hier)
        for name, rows in (("exact", exact), ("hierarchical", hier)):
            for row in rows.itertuples():
                log.info("%s: mAP %.2f over %d labels", name, row.map, row.n_labels)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
