"""Dataset manifests: one table of ``(image_id, path, split, class_index, class_name, wnid)`` per dataset.

Usage::

    from s3a.data import build_manifest
    manifest = build_manifest("imagenet100", {"root": "/data/imagenet"})

:data:`DATASETS` maps each dataset kind to its builder; every builder documents the on-disk layout it
expects and its parameters. Problems a user can fix raise :class:`DatasetError` with the path
expected and how to get the data.
"""

from .base import IMAGE_EXTENSIONS, MANIFEST_COLUMNS, DatasetError
from .registry import DATASETS, UNLABELED_KINDS, build_manifest, builder_params, validate_manifest

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "UNLABELED_KINDS",
    "DatasetError",
    "build_manifest",
    "builder_params",
    "validate_manifest",
]
