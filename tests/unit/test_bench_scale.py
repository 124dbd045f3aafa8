"""The scale benchmark runs every discovery step at two sizes and prints time, memory and exponents."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_scale_prints_every_step_at_two_sizes(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))  # bench_scale imports its sibling bench_kmeans
    argv = ["bench_scale.py", "--sizes", "300", "600", "--k", "5", "--d", "16", "--iters", "3"]
    monkeypatch.setattr(sys, "argv", argv + ["--silhouette-sample", "200", "--real-top1", "--device", "cpu"])
    runpy.run_path(str(BENCH / "bench_scale.py"), run_name="__main__")
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"k-search (1 K)", "k-means", "top-1 (zero_shot)", "vote", "realign"}
    for step in ("k-search (1 K)", "k-means", "vote", "realign"):
        cells = [c.strip() for c in rows[step]]
        assert cells[2] == "300" and cells[5] == "600"
        assert cells[3].endswith(" s") and cells[6].endswith(" s") and cells[4].endswith(" MB")
    assert "silhouette of 200" in rows["k-search (1 K)"][10]
