"""The tags benchmark prints both peaks, both times, their ratios, and that both kept the same tags."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_tags_prints_memory_time_ratios_and_agreement(monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))  # bench_tags imports its sibling bench_scale
    argv = ["bench_tags.py", "--n", "300", "--dim", "16", "--labels", "5", "--chunk", "32"]
    monkeypatch.setattr(sys, "argv", [*argv, "--workdir", str(tmp_path)])
    runpy.run_path(str(BENCH / "bench_tags.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "300 photos x 9 tiles, D 16, 5 names" in out
    ours = re.search(r"ours \(streamed by image id, chunk 32\):\s+([\d.]+) s\s+peak \+\s*([\d.nan]+) MB", out)
    base = re.search(r"baseline \(whole tables, pandas long table\):\s+([\d.]+) s", out)
    assert ours and base and float(ours.group(1)) > 0 and float(base.group(1)) > 0
    assert re.search(r"ratio baseline / ours: memory [\d.naninf]+x, time [\d.]+x", out)
    assert re.search(r"same tags: True \(\d+ tags on \d+ photos\)", out)
