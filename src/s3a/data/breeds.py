"""BREEDS benchmarks (Living-17, Nonliving-26, Entity-13, Entity-30) as fine-grained leaf datasets.

The class sets are those of the ``robustness`` library's ``breeds_helpers.make_*`` functions with
``split=None`` (all subclasses, no source/target split), rebuilt here from the three hierarchy files
of BREEDS-Benchmarks (``imagenet_class_hierarchy/modified``), read from ``info_dir``:

* ``class_hierarchy.txt``: one ``<parent> <child>`` edge per line;
* ``dataset_class_info.json``: the 1,000 ImageNet classes as ``[index, wnid, name]``;
* ``node_names.txt``: ``<node>\\t<name>`` for every hierarchy node.

Construction (:func:`breeds_leaf_wnids`):

1. Keep only the hierarchy edges on a path from the root ``n00001740`` (entity) down to an ImageNet
   class: walk up from the 1,000 classes through their parents.
2. The *level* of a node is the length of the longest path from the root to it.
3. Superclasses are the nodes at ``level`` (restricted to the descendants of ``ancestor`` when given),
   in sorted order, that reach at least ``n_subclasses`` ImageNet classes. The ImageNet classes a
   node reaches are found by walking down and stopping at the first ImageNet class on each path.
4. With one ``np.random.RandomState(2)`` for the whole dataset, each superclass in turn draws
   ``n_subclasses`` of its sorted reachable classes without replacement (``rng.choice``).

========== ===== ============ ================ ============
dataset    level ancestor     subclasses each  leaf classes
========== ===== ============ ================ ============
entity13   3     (none)       20               260
entity30   4     (none)       8                240
living17   5     n00004258    4                68
nonliving26 5    n00021939    4                104
========== ===== ============ ================ ============

The manifest keeps the *leaf* (ImageNet) classes: ``class_index`` is the rank of the leaf wnid,
``class_name`` its vocabulary name; images come from the user's ImageNet tree (see
:mod:`s3a.data.imagenet`): ``train`` -> split ``train``, ``val`` -> split ``test``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.io import atomic_path

from .base import DatasetError, abspath
from .imagenet import imagenet_subset, imagenet_train_wnids

__all__ = [
    "BREEDS_FILES",
    "BREEDS_URL",
    "BREEDS_DATASETS",
    "BreedsSpec",
    "BreedsHierarchy",
    "ensure_breeds_files",
    "breeds_leaf_wnids",
    "build_breeds",
]

log = logging.getLogger(__name__)

BREEDS_FILES: tuple[str, ...] = ("class_hierarchy.txt", "dataset_class_info.json", "node_names.txt")
BREEDS_URL = (
    "https://raw.githubusercontent.com/MadryLab/BREEDS-Benchmarks/master/imagenet_class_hierarchy/modified"
)
ROOT_WNID = "n00001740"  # entity
BREEDS_SEED = 2
TRAVERSE_DEPTH = 20  # the robustness library looks at most 20 edges below ``ancestor``


@dataclass(frozen=True)
class BreedsSpec:
    """Parameters of one BREEDS dataset (see the module docstring)."""

    title: str
    level: int
    n_subclasses: int
    ancestor: str | None
    n_superclasses: int


BREEDS_DATASETS: dict[str, BreedsSpec] = {
    "entity13": BreedsSpec("Entity-13", level=3, n_subclasses=20, ancestor=None, n_superclasses=13),
    "entity30": BreedsSpec("Entity-30", level=4, n_subclasses=8, ancestor=None, n_superclasses=30),
    "living17": BreedsSpec("Living-17", level=5, n_subclasses=4, ancestor="n00004258", n_superclasses=17),
    "nonliving26": BreedsSpec(
        "Nonliving-26", level=5, n_subclasses=4, ancestor="n00021939", n_superclasses=26
    ),
}


def _urlopen(url: str, timeout: float = 60.0):
    """Open ``url`` (the one network call of this module; tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https URL


def ensure_breeds_files(info_dir: str | os.PathLike[str], download: bool = True) -> Path:
    """Make sure the three hierarchy files are in ``info_dir``, downloading the missing ones.

    Each missing file is fetched from ``BREEDS_URL/<file>`` into a temporary file in ``info_dir`` and
    renamed into place, so an interrupted download leaves nothing behind.

    Raises:
        DatasetError: a file is missing and ``download`` is false, or its download failed.
    """
    folder = abspath(info_dir)
    for name in BREEDS_FILES:
        target = folder / name
        if target.is_file():
            continue
        url = f"{BREEDS_URL}/{name}"
        if not download:
            raise DatasetError(
                f"BREEDS: no file {target}; put the BREEDS-Benchmarks hierarchy files {list(BREEDS_FILES)} "
                f"in {folder} (from {BREEDS_URL}) or set download: true"
            )
        folder.mkdir(parents=True, exist_ok=True)
        log.info("BREEDS: downloading %s to %s", url, target)
        try:
            with atomic_path(target) as tmp, _urlopen(url) as response:
                tmp.write_bytes(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetError(
                f"BREEDS: could not download {name} from {url} into {folder} ({exc}); download the files "
                f"{list(BREEDS_FILES)} by hand into {folder}"
            ) from exc
    return folder


class BreedsHierarchy:
    """The BREEDS class hierarchy restricted to the ancestors of the ImageNet classes.

    Args:
        info_dir: folder holding :data:`BREEDS_FILES`.
    """

    def __init__(self, info_dir: str | os.PathLike[str], root: str = ROOT_WNID) -> None:
        folder = abspath(info_dir)
        try:
            class_info = json.loads((folder / "dataset_class_info.json").read_text())
            edges = [line.split() for line in (folder / "class_hierarchy.txt").read_text().splitlines()]
            node_lines = (folder / "node_names.txt").read_text().splitlines()
        except (OSError, ValueError) as exc:
            raise DatasetError(f"BREEDS: cannot read the hierarchy files in {folder} ({exc})") from exc
        self.leaves: list[str] = [str(c[1]) for c in class_info]
        self.leaf_set = frozenset(self.leaves)
        self.names: dict[str, str] = {}
        for line in node_lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                self.names[parts[0]] = parts[1]
        parents: dict[str, set[str]] = defaultdict(set)
        for edge in edges:
            if len(edge) == 2:
                parents[edge[1]].add(edge[0])
        # keep the edges on upward paths from the ImageNet classes
        self.children: dict[str, set[str]] = defaultdict(set)
        frontier = {w for w in self.leaves if w in parents}
        seen: set[str] = set()
        while frontier:
            nxt: set[str] = set()
            for node in frontier:
                for parent in parents.get(node, ()):
                    self.children[parent].add(node)
                    nxt.add(parent)
            seen |= frontier
            frontier = nxt - seen
        self.level = self._levels(root)

    def _levels(self, root: str) -> dict[str, int]:
        """Longest-path depth of every node below ``root``."""
        level: dict[str, int] = {}
        frontier = {root: 0}
        while frontier:
            nxt: dict[str, int] = {}
            for node, depth in frontier.items():
                if level.get(node, -1) < depth:
                    level[node] = depth
                for child in self.children.get(node, ()):
                    nxt[child] = max(nxt.get(child, -1), depth + 1)
            frontier = nxt
        return level

    def reachable_leaves(self, node: str) -> list[str]:
        """Sorted ImageNet classes below ``node`` (the first ImageNet class on every downward path)."""
        found: set[str] = {node} if node in self.leaf_set else set()
        frontier = {node}
        visited: set[str] = set()
        while frontier:
            nxt: set[str] = set()
            for w in frontier:
                for child in self.children.get(w, ()):
                    if child in self.leaf_set:
                        found.add(child)
                    else:
                        nxt.add(child)
            visited |= frontier
            frontier = nxt - visited
        return sorted(found)

    def descendants(self, node: str, depth: int = TRAVERSE_DEPTH) -> set[str]:
        """``node`` and the nodes at most ``depth`` edges below it."""
        out = {node}
        frontier = {node}
        for _ in range(depth):
            frontier = {c for w in frontier for c in self.children.get(w, ())}
            if not frontier:
                break
            out |= frontier
        return out

    def superclasses(self, spec: BreedsSpec) -> list[str]:
        """Sorted nodes at ``spec.level`` (under ``spec.ancestor``) reaching >= ``n_subclasses`` classes."""
        valid = self.descendants(spec.ancestor) if spec.ancestor else None
        nodes = sorted(
            n for n, lev in self.level.items() if lev == spec.level and (valid is None or n in valid)
        )
        return [n for n in nodes if len(self.reachable_leaves(n)) >= spec.n_subclasses]

    def node_name(self, node: str) -> str:
        return self.names.get(node, node)


def breeds_leaf_wnids(kind: str, info_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The BREEDS dataset ``kind`` as ``superclass wnid -> drawn leaf wnids`` (superclasses sorted).

    Raises:
        DatasetError: unknown ``kind`` or unexpected hierarchy files.
    """
    if kind not in BREEDS_DATASETS:
        raise DatasetError(f"BREEDS: unknown dataset {kind!r}; known: {sorted(BREEDS_DATASETS)}")
    spec = BREEDS_DATASETS[kind]
    hierarchy = BreedsHierarchy(info_dir)
    superclasses = hierarchy.superclasses(spec)
    if len(superclasses) != spec.n_superclasses:
        raise DatasetError(
            f"{spec.title}: the hierarchy files in {abspath(info_dir)} give {len(superclasses)} "
            f"superclasses, expected {spec.n_superclasses}; use the 'modified' hierarchy files from "
            f"{BREEDS_URL}"
        )
    rng = np.random.RandomState(BREEDS_SEED)
    out: dict[str, list[str]] = {}
    for node in superclasses:
        pool = hierarchy.reachable_leaves(node)
        out[node] = [str(w) for w in rng.choice(pool, spec.n_subclasses, replace=False)]
    log.info(
        "%s: %d superclasses x %d subclasses = %d leaf classes",
        spec.title,
        len(out),
        spec.n_subclasses,
        len({w for ws in out.values() for w in ws}),
    )
    return out


def build_breeds(kind: str, root: str, info_dir: str, download: bool = True) -> pd.DataFrame:
    """Manifest of a BREEDS dataset over the user's ImageNet tree, labelled by fine-grained leaf class.

    Layout::

        <root>/train/<wnid>/*.JPEG    ImageNet-1K train -> split "train"
        <root>/val/<wnid>/*.JPEG      ImageNet-1K val (wnid folders) -> split "test"
        <info_dir>/class_hierarchy.txt, dataset_class_info.json, node_names.txt
                                      (downloaded from BREEDS-Benchmarks when missing and download=True)

    Args:
        kind: ``entity13``, ``entity30``, ``living17`` or ``nonliving26``.
        root: ImageNet root folder.
        info_dir: folder of the BREEDS hierarchy files.
        download: fetch missing hierarchy files from GitHub.

    Raises:
        DatasetError: missing files, or leaf classes absent from ``<root>/train``.
    """
    spec = BREEDS_DATASETS[kind]
    imagenet_train_wnids(root, spec.title)  # checks train/ and val/ exist before any download
    ensure_breeds_files(info_dir, download=download)
    leaves = sorted({w for ws in breeds_leaf_wnids(kind, info_dir).values() for w in ws})
    return imagenet_subset(root, leaves, spec.title)


def _builder(kind: str):
    def build(root: str, info_dir: str, download: bool = True) -> pd.DataFrame:
        return build_breeds(kind, root=root, info_dir=info_dir, download=download)

    spec = BREEDS_DATASETS[kind]
    build.__name__ = f"build_{kind}"
    build.__qualname__ = build.__name__
    build.__doc__ = (
        f"{spec.title}: BREEDS level-{spec.level} superclasses"
        + (f" under {spec.ancestor}" if spec.ancestor else "")
        + f", {spec.n_subclasses} leaf classes each, labelled by leaf class.\n\n"
        + "Params: root (ImageNet root with train/<wnid>, val/<wnid>), info_dir (BREEDS hierarchy files),\n"
        + "download (fetch missing hierarchy files, default true). See :func:`build_breeds`."
    )
    return build


build_entity13 = _builder("entity13")
build_entity30 = _builder("entity30")
build_living17 = _builder("living17")
build_nonliving26 = _builder("nonliving26")
