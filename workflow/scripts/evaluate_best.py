"""Rule evaluate_best: the student's best epoch on the test split, as the official code reports it."""

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.metrics import add_skipped, best_epoch_row, epoch_metrics, load_soft_scorer


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        manifest = read_table(smk.input.manifest)
        vocabulary = read_table(smk.input.vocabulary, columns=["vocab_index", "name", "synset_ids"])
        epochs = read_table(smk.input.epochs)
        scorer = load_soft_scorer(smk.params.soft_model)
        per_epoch = epoch_metrics(manifest, vocabulary, epochs, scorer, column="student_vocab_index")
        log.info("student on the test split per evaluated epoch:\n%s", per_epoch.to_string(index=False))
        best = add_skipped(best_epoch_row(per_epoch, "soft_acc" if smk.params.oov else "top1"), manifest)
        best.insert(0, "dataset", smk.wildcards.dataset)
        best.insert(1, "model", smk.wildcards.model)
        best.insert(2, "stage", "student_best")
        log.info("best epoch %d by %s", int(best.epoch.iloc[0]), best.selected_by.iloc[0])
        write_table(best, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
