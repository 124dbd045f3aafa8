"""``make clean-demo``: remove what the demo made, and nothing of anyone else's.

``python -m s3a.cleandemo config/demo.yaml`` reads the demo's datasets and models from its config and
removes, under the working directory:

- per demo dataset ``d``: ``results/d/``, its generated images (``params.root``), its training states
  (``resources/train/d/``, ``resources/ml_train/d/``) and its logs and benchmark records
  (``logs/<rule>/d/``, ``logs/<rule>/d.log``, the same under ``benchmarks/``);
- per demo model ``m`` (unless another dataset's ``results/<other>/m/`` still uses it): its text
  classifier ``results/vocabulary/m/``, its logs and benchmarks, and a random checkpoint made by
  ``create_random_model`` (``resources/models/random-*.pt``) with its log;
- the summaries (``results/summary*``, ``results/report/``) when every row in them is a demo dataset.

Another folder's or benchmark's results, the shared vocabulary, the LLM cache and Snakemake's
``.snakemake/`` (metadata, locks, conda environments) are kept: the demo's outputs are missing, so
the next ``make demo`` makes them all again.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

__all__ = ["demo_paths", "main"]

#: a checkpoint made by the rule create_random_model
RANDOM_CHECKPOINT = re.compile(r"resources/models/random-([\w.-]+-seed\d+)\.pt")
#: summary table -> the files made with it
SUMMARIES = {
    "results/summary.parquet": ["results/summary.md", "results/report/comparison.html"],
    "results/summary_multilabel.parquet": ["results/summary_multilabel.md", "results/report/multilabel.html"],
}


def _per_rule(top: Path, names: Iterable[str]) -> list[Path]:
    """``<top>/<rule>/<name>/`` and ``<top>/<rule>/<name>[-*].<ext>`` for every rule folder."""
    found = []
    for rule in sorted(p for p in top.glob("*") if p.is_dir()):
        for name in names:
            found += [rule / name, *(p for p in rule.glob(f"{name}.*") if p.is_file())]
            found += [p for p in rule.glob(f"{name}-*") if p.is_file()]
    return found


def _only_demo(table: Path, datasets: set[str]) -> bool:
    import pandas as pd

    try:
        names = set(pd.read_parquet(table, columns=["dataset"]).dataset.astype(str))
    except Exception:  # no dataset column, or not readable: not provably the demo's
        return False
    return names <= datasets


def demo_paths(config: dict, root: Path) -> list[Path]:
    """The existing files and folders under ``root`` that the demo of ``config`` made."""
    datasets = set(config.get("datasets") or {})
    models = set(config.get("models") or {})
    results = root / "results"
    others = {p.name for p in results.glob("*") if p.is_dir()} - datasets - {"vocabulary", "report"}
    in_use = {m for m in models for o in others if (results / o / m).exists()}
    paths = [results / d for d in datasets]
    for d, entry in (config.get("datasets") or {}).items():
        paths += [root / "resources" / "train" / d, root / "resources" / "ml_train" / d]
        data_root = (entry.get("params") or {}).get("root")
        if entry.get("kind", "").startswith("generated") and data_root:
            paths.append(root / data_root)
    for top in ("logs", "benchmarks"):
        paths += _per_rule(root / top, sorted(datasets))
    for m in sorted(models - in_use):
        paths.append(results / "vocabulary" / m)
        paths += [root / "logs" / "embed_vocabulary" / f"{m}.log"]
        paths += [root / "benchmarks" / "embed_vocabulary" / f"{m}.tsv"]
        match = RANDOM_CHECKPOINT.fullmatch(str(config["models"][m].get("pretrained") or ""))
        if match:
            paths += [root / match.group(0), root / "logs" / "create_random_model" / f"{match.group(1)}.log"]
    for table, made_with in SUMMARIES.items():
        if (root / table).is_file() and _only_demo(root / table, datasets):
            paths += [root / table, *(root / p for p in made_with)]
    return sorted({p for p in paths if p.exists() or p.is_symlink()})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config_file = args[0] if args else "config/demo.yaml"
    config = yaml.safe_load(Path(config_file).read_text())
    paths = demo_paths(config, Path.cwd())
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    print(
        f"clean-demo: removed {len(paths)} files and folders of the demo ({config_file}); other results kept"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
