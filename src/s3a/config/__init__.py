"""The configuration, once: one typed model per config block (:mod:`s3a.config.models`), and the files
generated from them (:mod:`s3a.config.generate`): ``config/config.schema.json``, ``config/README.md``
and the config with its defaults filled in. ``python -m s3a.config schema|readme`` prints a file.
"""

from s3a.config.generate import BLOCKS, json_schema, readme, resolved
from s3a.config.models import (
    DATASET_KINDS,
    DECODERS,
    ENV_NAME,
    KMEANS_BACKENDS,
    LLM,
    OVERRIDES,
    Block,
    Compute,
    Config,
    DatasetEntry,
    Discover,
    Embed,
    Evaluate,
    Gallery,
    Int,
    KMeans,
    KSearch,
    ModelEntry,
    Names,
    Realign,
    Run,
    Train,
    Vocabulary,
    Vote,
)

__all__ = [
    "BLOCKS", "DATASET_KINDS", "DECODERS", "ENV_NAME", "KMEANS_BACKENDS", "LLM", "OVERRIDES", "Block",
    "Compute", "Config", "DatasetEntry", "Discover", "Embed", "Evaluate", "Gallery", "Int", "KMeans",
    "KSearch", "ModelEntry", "Names", "Realign", "Run", "Train", "Vocabulary", "Vote", "json_schema",
    "readme", "resolved",
]  # fmt: skip
