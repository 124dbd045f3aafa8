"""The multi-label summary and report: published numbers of MULTILABEL_SPEC section 12, the summary
table's order, the Markdown, and the multi-label section of ``python -m s3a.report``."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from s3a.io import write_table
from s3a.multilabel.metrics import EVAL_COLUMNS
from s3a.multilabel.report import PUBLISHED, summarize, summary_markdown
from s3a.report import main

REPORT = Path(__file__).resolve().parents[2] / "src" / "s3a" / "report.py"


def rows(dataset: str, stage: str, subsets=("all",), split="test", m=50.0, **extra) -> pd.DataFrame:
    base = dict.fromkeys(EVAL_COLUMNS, math.nan)
    frame = pd.DataFrame([{**base, "dataset": dataset, "model": "vit", "stage": stage, "split": split,
                           "subset": s, "n_images": 10, "map": m, "c_f1": 40.25, "f1_at_3": 30.0,
                           **extra} for s in subsets])  # fmt: skip
    return frame


def published(method: str, dataset: str, setting: str, metric: str) -> tuple[float, str]:
    hit = PUBLISHED[
        (PUBLISHED.method == method)
        & (PUBLISHED.dataset == dataset)
        & (PUBLISHED.setting == setting)
        & (PUBLISHED.metric == metric)
    ]
    assert len(hit) == 1, (method, dataset, setting, metric)
    return float(hit.value.iloc[0]), str(hit.source.iloc[0])


def test_published_numbers_of_spec_12():
    assert list(PUBLISHED.columns) == ["method", "dataset", "setting", "metric", "value", "source"]
    assert published("CDUL (paper)", "voc2007", "standard", "map") == (89.0, "sec")
    assert published("CDUL (paper)", "voc2012", "standard", "map") == (88.6, "sec")
    assert published("CDUL (paper)", "coco", "standard", "map") == (69.2, "sec")
    assert published("CDUL (paper)", "nuswide", "standard", "map") == (44.0, "sec")
    assert published("ML-Decoder", "coco", "standard", "map") == (91.4, "readme")
    assert published("ML-Decoder", "nuswide", "zsl", "map") == (31.1, "readme")
    assert published("ML-Decoder", "voc", "standard", "map") == (96.6, "sec")
    assert published("ML-Decoder", "openimages", "standard", "map") == (86.8, "sec")
    assert published("ML-Decoder", "nuswide", "zsl", "f1_at_3") == (34.1, "recalled")
    assert published("ML-Decoder", "nuswide", "zsl", "f1_at_5") == (30.8, "recalled")
    assert published("ML-Decoder", "nuswide", "gzsl", "map") == (19.9, "recalled")
    fast0tag = [published("Fast0Tag", "nuswide", s, m)[0] for s in ("zsl", "gzsl") for m in
                ("map", "f1_at_3", "f1_at_5")]  # fmt: skip
    assert fast0tag == [15.1, 27.8, 26.4, 3.7, 11.5, 13.5]
    assert published("CLIP-Decoder", "nuswide", "zsl", "map_gain") == (3.9, "readme")
    assert published("CLIP-Decoder", "nuswide", "gzsl", "map_gain") == (2.3, "readme")
    assert published("CLIP-Decoder", "nuswide", "zsl", "map") == (35.0, "inferred")
    assert published("CLIP ViT-B/16 (softmax)", "nuswide", "standard", "map") == (42.85, "issues")
    assert not PUBLISHED.duplicated(["method", "dataset", "setting", "metric"]).any()


def test_summarize_orders_stages_and_subsets_and_rejects_duplicates():
    tables = [
        rows("voc2012", "linear"),
        rows("nuswide_zsl", "mldecoder", ("gzsl", "all", "unseen")),
        rows("voc2012", "zs_final", ("small", "all")),
        rows("voc2012", "ov_hier", n_discovered=3.0),
        rows("voc2012", "zs_global"),
        pd.DataFrame(columns=list(EVAL_COLUMNS)),  # an empty ov_hier table (hierarchy off)
    ]
    summary = summarize(tables)
    assert list(summary.columns) == [*EVAL_COLUMNS, "n_discovered"]
    assert summary[["dataset", "stage", "subset"]].values.tolist() == [
        ["nuswide_zsl", "mldecoder", "all"],
        ["nuswide_zsl", "mldecoder", "unseen"],
        ["nuswide_zsl", "mldecoder", "gzsl"],
        ["voc2012", "zs_global", "all"],
        ["voc2012", "zs_final", "all"],
        ["voc2012", "zs_final", "small"],
        ["voc2012", "linear", "all"],
        ["voc2012", "ov_hier", "all"],
    ]
    assert summary.n_discovered.isna().sum() == 7
    with pytest.raises(ValueError, match="duplicate multi-label metric rows"):
        summarize([rows("voc2012", "linear"), rows("voc2012", "linear")])
    assert summarize([]).columns.tolist() == list(EVAL_COLUMNS)
    with pytest.raises(ValueError, match=r"lack the columns \['f1_at_5', 'map'\]"):
        summarize([rows("voc2012", "linear").drop(columns=["map", "f1_at_5"])])


def test_markdown_shows_ours_and_the_matching_published_rows():
    summary = summarize([rows("voc2012", "zs_final", m=61.25), rows("nuswide_zsl", "mldecoder", ("unseen",))])
    text = summary_markdown(summary)
    ours, theirs = text.split("Published")
    header = [h.strip() for h in ours.splitlines()[2].strip("|").split("|")]
    assert header == ["dataset", "model", "stage", "split", "subset", "n_images", "mAP", "CF1", "OF1",
                      "F1@3", "F1@5"]  # fmt: skip
    assert "61.2" in ours and "40.2" in ours and "n/a" in ours  # OF1, F1@5 were not given
    # VOC 2012 and NUS-WIDE rows are shown, COCO's and VOC 2007's are not
    assert "88.6 [sec]" in theirs and "96.6 [sec]" in theirs and "44.0 [sec]" in theirs
    assert "31.1 [readme]" in theirs and "34.1 [recalled]" in theirs and "42.85 [issues]" in theirs
    assert "3.9 [readme]" in theirs and "35.0 [inferred]" in theirs
    assert "91.4" not in theirs and "69.2" not in theirs and "89.0" not in theirs
    only_generated = summary_markdown(summarize([rows("generated", "linear")]))
    assert "Published" not in only_generated and "| generated" in only_generated


def test_s3a_report_adds_the_multilabel_section(tmp_path, capsys):
    ml = summarize([rows("voc2012", "linear", m=77.5)])
    write_table(ml, tmp_path / "summary_multilabel.parquet")
    # only the multi-label summary: it is shown, the S3A one is reported missing by omission
    assert main([str(tmp_path / "summary.parquet")]) == 0
    out = capsys.readouterr().out
    assert "## Multi-label" in out and "77.5" in out and "88.6 [sec]" in out
    assert "Results:" not in out and "summary_multilabel.md" in out
    s3a_rows = pd.DataFrame(
        {"dataset": ["pets"], "model": ["m"], "stage": ["zeroshot"], "label_set": ["vocabulary"],
         "split": ["test"], "n": [5], "top1": [12.5], "cluster_acc": [20.0], "soft_acc": [math.nan]}
    )  # fmt: skip
    write_table(s3a_rows, tmp_path / "summary.parquet")
    assert main([str(tmp_path / "summary.parquet")]) == 0
    out = capsys.readouterr().out
    assert out.index("12.5") < out.index("Results:") < out.index("## Multi-label") < out.index("77.5")
    (tmp_path / "summary_multilabel.parquet").unlink()
    assert main([str(tmp_path / "summary.parquet")]) == 0
    assert "Multi-label" not in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere" / "summary.parquet")]) == 1


def test_core_report_does_not_import_multilabel_at_import_time():
    """s3a.multilabel builds on the core modules: s3a.report loads the multi-label report only inside
    its command line entry, never at module level."""
    tree = ast.parse(REPORT.read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert names and not any(name.startswith("s3a.multilabel") for name in names)
    inner = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert "s3a.multilabel.report" in inner  # used lazily by main()
