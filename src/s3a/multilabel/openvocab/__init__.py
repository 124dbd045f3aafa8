"""Open-vocabulary multi-label over the S3A vocabulary (spec 8): per-view top-k scores and their
aggregation (:mod:`.scores`), label discovery (:mod:`.discovery`), the exact and WordNet-
hierarchical evaluation (:mod:`.hierarchy`), and the tags of an unlabeled photo folder (:mod:`.tags`).
"""
