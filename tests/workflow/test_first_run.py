"""A first run without surprises: missing checkpoint at parse time, resumable demo, clean slate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow.test_workflow import REPO, copy_workflow, run_snakemake

#: snakemake runs in subprocesses: the slow tier (`make unit` leaves it out)
pytestmark = pytest.mark.slow


def test_missing_checkpoint_or_unsaid_activation_fails_at_parse_time_naming_key(tmp_path):
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    demo = (work / "config" / "demo.yaml").read_text()
    missing = tmp_path / "weights" / "my-clip.pt"
    old = "pretrained: resources/models/random-s3a-tiny-seed0.pt"
    (work / "config" / "bad.yaml").write_text(demo.replace(old, f"pretrained: {missing}"))
    result = run_snakemake(["-n", "--configfile", "config/bad.yaml"], work, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "models.tiny.pretrained" in output and str(missing) in output
    # a local file of an architecture with OpenAI (QuickGELU) and GELU weights must say which
    weights = tmp_path / "weights" / "ViT-B-16.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    unsaid = demo.replace(old, f"pretrained: {weights}").replace("arch: s3a-tiny", "arch: ViT-B-16")
    (work / "config" / "unsaid.yaml").write_text(unsaid)
    result = run_snakemake(["-n", "--configfile", "config/unsaid.yaml"], work, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "models.tiny.quick_gelu" in output and "`quick_gelu: true`" in output
    # the demo's own random checkpoint is made by a rule, so its absence is fine
    ok = run_snakemake(["-n", "--configfile", "config/demo.yaml"], work, timeout=300)
    assert ok.returncode == 0, ok.stderr


def _make(*args: str, cwd: Path = REPO) -> str:
    result = subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def test_make_demo_resumes_after_a_kill_and_takes_extra_arguments():
    command = _make("-n", "demo", "VENV=/nonexistent-venv", "ARGS=--unlock --quiet")
    line = next(s for s in command.splitlines() if "snakemake" in s and "--configfile" in s)
    assert "--rerun-incomplete" in line and line.rstrip().endswith("--unlock --quiet")
    assert "--printshellcmds" not in line  # it prints "Shell command: None" for every script rule


def test_clean_demo_removes_only_what_the_demo_made(tmp_path):
    """`make clean-demo` removes the demo's outputs (read from config/demo.yaml) and nothing of a user's:
    another folder's results and training state, Snakemake's metadata and locks, a report."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "demo.yaml", tmp_path / "config" / "demo.yaml")
    left = [
        "results/shapes/manifest.parquet",
        "results/shapes_ml/tiny/names.parquet",
        "resources/demo/shapes/circle/0000.jpg",
        "resources/models/random-s3a-tiny-seed0.pt",
        "resources/train/shapes/tiny/state.pt",
        "resources/ml_train/shapes_ml/tiny/linear/state.pt",
        "logs/prepare_manifest/shapes.log",
        "benchmarks/embed_images/shapes/tiny-train.tsv",
    ]
    kept = [
        "results/photos_1a2b3c/vit_b16/names.csv",
        "results/photos_1a2b3c/vit_b16/gallery/index.html",
        "resources/train/imagenet1k/vit_b16/state.pt",
        "resources/ml_train/voc2012/vit_b16/linear/state.pt",
        "logs/prepare_manifest/photos_1a2b3c.log",
        ".snakemake/locks/0.input.lock",  # another run may hold it
        ".snakemake/metadata/cmVzdWx0cw==",
        "report.zip",
    ]
    for path in left + kept:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    _make("clean-demo", f"VENV={Path(sys.executable).parent.parent}", cwd=tmp_path)
    assert [p for p in left if (tmp_path / p).exists()] == []
    assert [p for p in kept if not (tmp_path / p).exists()] == []


def test_dataset_parameters_are_checked_before_any_job(tmp_path):
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    demo = (work / "config" / "demo.yaml").read_text()
    (work / "config" / "bad.yaml").write_text(demo.replace("images_per_class: 40", "images_per_clas: 40"))
    result = run_snakemake(["--configfile", "config/bad.yaml", "--cores", "1"], work, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Configuration error: {work / 'config' / 'bad.yaml'}: datasets.shapes.params: unknown key "
        "'images_per_clas' for kind 'generated'; allowed keys: root, classes, images_per_class, image_size, "
        "seed, test_fraction; did you mean 'images_per_class'?"
    ]
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_invalid_yaml_in_the_default_config_names_line_and_column(tmp_path):
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    config = work / "config" / "config.yaml"
    text = config.read_text()
    assert "  imagenet1k:\n" in text
    config.write_text(text.replace("  imagenet1k:\n", "  imagenet1k:\n   bad: [\n", 1))
    result = run_snakemake(["-n"], work, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Configuration error: config/config.yaml: line "), lines
    assert ", column " in lines[0]
