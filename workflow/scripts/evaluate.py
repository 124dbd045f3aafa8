"""Rule evaluate: one row of metrics per split and label set for one stage's predictions."""

import pandas as pd

from s3a.discover.describe import wordnet_fallback_clusters
from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.metrics import add_skipped, candidate_recall, gt_vocab_index, load_soft_scorer, stage_metrics


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        manifest = read_table(smk.input.manifest)
        vocabulary = read_table(smk.input.vocabulary, columns=["vocab_index", "name", "synset_ids"])
        splits = smk.params.stage["splits"]
        predictions = {
            split: read_table(path) for split, path in zip(splits, smk.input.predictions, strict=True)
        }
        scorer = load_soft_scorer(smk.params.soft_model)
        rows = stage_metrics(manifest, vocabulary, predictions, scorer, column=smk.params.stage["column"])
        if smk.input.discovery:  # structural stage: did the candidates hold each cluster's true name?
            partition, candidates, descriptions = (read_table(path) for path in smk.input.discovery)
            gt = gt_vocab_index(list(manifest.wnid), list(manifest.class_name), vocabulary)
            gt = pd.Series(gt, index=manifest.image_id).loc[partition.image_id].to_numpy()
            rows["candidate_recall"] = candidate_recall(partition.cluster.to_numpy(), candidates, gt)
            # clusters the LLM could not describe (llm.on_failure: wordnet)
            rows["llm_fallback_clusters"] = len(wordnet_fallback_clusters(descriptions))
        add_skipped(rows, manifest)  # images of the split that could not be read
        rows.insert(0, "dataset", smk.wildcards.dataset)
        rows.insert(1, "model", smk.wildcards.model)
        rows.insert(2, "stage", smk.wildcards.stage)
        log.info("metrics:\n%s", rows.to_string(index=False))
        write_table(rows, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
