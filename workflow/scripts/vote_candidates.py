"""Rule vote_candidates: vote -> Hungarian -> re-assign iterations and each cluster's top names."""

import pandas as pd

from s3a.discover.vote import VoteParams, cluster_vote, pad_candidates, top1_rows, top_candidates
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        image_ids, features = read_embeddings(smk.input.embeddings)
        vocab_ids, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        clusters = read_table(smk.input.clusters).set_index("image_id").cluster.loc[image_ids].to_numpy()
        zeroshot = read_table(smk.input.zeroshot, columns=["image_id", "pred_vocab_index"])
        top1 = top1_rows(image_ids, zeroshot, vocab_ids, source=smk.input.zeroshot)
        params = VoteParams(**smk.params.vote)
        result = cluster_vote(features, classifier, clusters, params, top1=top1)
        candidates = top_candidates(result.votes, params.n_candidates)
        candidates = pad_candidates(candidates, features, classifier, result.partition, params.n_candidates)
        log.info("%d clusters, %d candidate names", result.votes.shape[0], candidates.vocab_index.nunique())
        write_table(candidates, smk.output.candidates)
        write_table(pd.DataFrame({"image_id": image_ids, "cluster": result.partition}), smk.output.partition)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
