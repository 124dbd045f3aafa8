"""The tile benchmark prints crops/s against img/s with their ratio, and the aggregation's time and memory."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_tiles_prints_both_rates_the_ratio_and_the_aggregation(monkeypatch, capsys, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (60 + 10 * i, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.jpg")
    monkeypatch.syspath_prepend(str(BENCH))  # bench_tiles imports its siblings bench_scale, bench_kmeans
    argv = ["bench_tiles.py", "--images", "4", "--image-dir", str(tmp_path), "--batch-size", "3"]
    argv += ["--workers", "0", "--device", "cpu", "--repeats", "1"]
    argv += ["--n", "300", "--labels", "7", "--dim", "16", "--chunk", "64"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(BENCH / "bench_tiles.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "device: cpu" in out and "4 images" in out
    img_s = float(re.search(r"baseline\):\s+([\d.]+) img/s", out).group(1))
    crops_s = float(re.search(r"ours\):\s+([\d.]+) crops/s", out).group(1))
    ratio = float(re.search(r"ratio crops/s / img/s: ([\d.]+)", out).group(1))
    assert img_s > 0 and crops_s > 0 and abs(ratio - crops_s / img_s) < 0.01 + 0.01 * ratio
    # and the steady rates, after the first forward batch (4 images in batches of 3: 3 + 1; 36 crops)
    steady = re.search(
        r"steady \(after the first forward batch\): ([\d.]+) img/s, ([\d.]+) crops/s, ratio ([\d.]+)", out
    )
    img_steady, crops_steady, ratio_steady = (float(g) for g in steady.groups())
    assert img_steady > 0 and crops_steady > 0
    assert abs(ratio_steady - crops_steady / img_steady) < 0.01 + 0.01 * ratio_steady
    assert "300 images x 7 labels x 9 tiles, D 16" in out
    for step in ("view_scores", "aggregate (S_agg"):
        line = next(x for x in out.splitlines() if x.startswith(step))
        assert re.search(r"[\d.]+ s\s+peak \+\s*(\d+|nan) MB", line), line
