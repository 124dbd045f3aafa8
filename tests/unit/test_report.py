import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from s3a.io import write_table
from s3a.report import main, summarize, summary_markdown

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def rows(dataset, top1):
    return pd.DataFrame(
        {
            "dataset": dataset,
            "model": "m",
            "stage": "zeroshot",
            "label_set": "vocabulary",
            "split": ["train", "test"],
            "n": [10, 5],
            "top1": top1,
            "cluster_acc": [50.0, 40.0],
            "soft_acc": [math.nan, 12.34],
        }
    )


def test_summarize_sorts_and_rejects_duplicates():
    summary = summarize([rows("b", [1.0, 2.0]), rows("a", [3.0, 4.0])])
    assert list(summary.dataset) == ["a", "a", "b", "b"]
    assert list(summary.split) == ["test", "train", "test", "train"]
    with pytest.raises(ValueError, match="duplicate"):
        summarize([rows("a", [1.0, 2.0]), rows("a", [1.0, 2.0])])


def test_markdown_shows_percentages_and_missing():
    text = summary_markdown(summarize([rows("a", [3.0, 4.25])]))
    assert "12.3" in text and "n/a" in text and "4.2" in text


def test_summarize_adapter_writes_table_and_markdown(tmp_path, capsys):
    inputs = []
    for name in ("x", "y"):
        path = tmp_path / f"{name}.parquet"
        write_table(rows(name, [1.0, 2.0]), path)
        inputs.append(str(path))
    smk = SimpleNamespace(
        input=inputs,
        output=SimpleNamespace(table=str(tmp_path / "s.parquet"), markdown=str(tmp_path / "s.md")),
        log=[str(tmp_path / "log.txt")],
    )
    runpy.run_path(str(SCRIPTS / "summarize.py"), run_name="adapter")["main"](smk)
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 4
    assert (tmp_path / "s.md").read_text().count("| x ") == 2
    assert "summary of 4 metric rows" in (tmp_path / "log.txt").read_text()
    assert main([str(tmp_path / "s.parquet")]) == 0
    assert "Results:" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.parquet")]) == 1
