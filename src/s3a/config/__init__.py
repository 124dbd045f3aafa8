"""The configuration, once: one typed model per config block (:mod:`s3a.config.models`), and the files
generated from them (:mod:`s3a.config.generate`): ``config/config.schema.json``, ``config/README.md``
and the config with its defaults filled in. ``python -m s3a.config schema|readme`` prints a file.
"""

from s3a.config.base import Block, Int
from s3a.config.generate import BLOCKS, json_schema, readme, resolved, typed
from s3a.config.models import (
    DATASET_KINDS,
    DECODERS,
    ENV_NAME,
    KMEANS_BACKENDS,
    LLM,
    OVERRIDES,
    S3A_KINDS,
    Compute,
    Config,
    DatasetEntry,
    Discover,
    Embed,
    Evaluate,
    Gallery,
    KMeans,
    KSearch,
    ModelEntry,
    Names,
    Realign,
    Run,
    Tags,
    Train,
    Vocabulary,
    Vote,
)
from s3a.config.multilabel import LEARNERS, MULTILABEL_KINDS, MultiLabel

__all__ = [
    "BLOCKS", "Block", "Compute", "Config", "DATASET_KINDS", "DECODERS", "DatasetEntry", "Discover",
    "ENV_NAME", "Embed", "Evaluate", "Gallery", "Int", "KMEANS_BACKENDS", "KMeans", "KSearch", "LEARNERS",
    "LLM", "MULTILABEL_KINDS", "ModelEntry", "MultiLabel", "Names", "OVERRIDES", "Realign", "Run",
    "S3A_KINDS", "Tags", "Train", "Vocabulary", "Vote", "json_schema", "readme", "resolved", "typed",
]  # fmt: skip
