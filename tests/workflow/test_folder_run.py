"""The one-command path on a folder of your own photos: `snakemake --config folder=PATH`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.test_workflow import JOB_COUNTS, copy_workflow, job_counts, run_snakemake

#: snakemake runs in subprocesses: the slow tier (`make unit` leaves it out)
pytestmark = pytest.mark.slow

N_PHOTOS = 40


def test_folder_dry_run_names_without_evaluation(tmp_path):
    """The folder dataset runs alone, on its train split, with names and a gallery but no metrics."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    (tmp_path / "My Photos").mkdir()
    result = run_snakemake(["-n", "--config", f"folder={tmp_path / 'My Photos'}"], work, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts == JOB_COUNTS["folder_dry_run"]
    assert "results/my_photos/vit_b16/names.parquet" in result.stdout


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, shared_data) -> tuple[Path, Path, pd.DataFrame, str]:
    """40 real photos copied into one flat folder (plus a corrupt one and files to ignore), named."""
    sample = shared_data / "imagenet-sample"
    if not sample.is_dir():
        pytest.skip(f"no {sample}")
    root = tmp_path_factory.mktemp("folder")
    photos = root / "photos"
    photos.mkdir()
    for src in sorted(sample.glob("*.JPEG"))[:N_PHOTOS]:
        shutil.copy(src, photos / src.name)
    (photos / "corrupt.jpg").write_bytes(b"not a jpeg")
    (photos / ".hidden.jpg").write_bytes(b"ignored")
    (photos / "notes.txt").write_text("ignored")
    (root / "work").mkdir()
    work = copy_workflow(root / "work")
    args = ["--configfile", "config/demo.yaml", "--config", f"folder={photos}", "--cores", "2"]
    result = run_snakemake(args, work)
    assert result.returncode == 0, result.stderr[-5000:]
    vocabulary = pd.read_parquet(work / "results/vocabulary/vocabulary.parquet", columns=["name"])
    return work, photos, vocabulary, result.stdout


@pytest.mark.slow
@pytest.mark.data
def test_names_table_of_a_photo_folder(photo_run):
    work, photos, vocabulary, output = photo_run
    table = pd.read_parquet(work / "results/photos/tiny/names.parquet")
    readable = sorted(str(p) for p in photos.glob("*.JPEG"))
    assert sorted(table.path) == readable  # one row per readable image, the corrupt one skipped
    names = set(vocabulary.name)
    assert set(table.name) <= names and set(table.zeroshot_name) <= names
    for name, runner_ups in zip(table.name, table.runner_up_names, strict=True):
        assert len(runner_ups) == 3 and len({name, *runner_ups}) == 4 and set(runner_ups) <= names
    assert table.score.between(0, 1).all() and table.cluster.notna().all()
    csv = pd.read_csv(work / "results/photos/tiny/names.csv")
    assert csv.path.tolist() == table.path.tolist() and csv.name.tolist() == table.name.tolist()
    # no ground truth, no metrics
    assert not (work / "results/photos/tiny/eval").exists()
    assert not (work / "results/summary.parquet").exists()
    page = (work / "results/photos/tiny/gallery/index.html").read_text()
    assert page.count('<section class="card"') == table.cluster.nunique()
    assert "majority true class" not in page
    # the run's last line points to the names
    assert output.strip().splitlines()[-1] == (
        "Names of every image: results/photos/tiny/names.csv; gallery: results/photos/tiny/gallery/index.html"
    )
