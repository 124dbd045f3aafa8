"""Open-vocabulary multi-label over the S3A vocabulary (spec 8): per-view top-k scores and their
aggregation (:mod:`.scores`), label discovery (:mod:`.discovery`) and the exact and WordNet-
hierarchical evaluation (:mod:`.hierarchy`).
"""
