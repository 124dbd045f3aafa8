"""The one-command path on a folder of your own photos: `snakemake --config folder=PATH`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from s3a.configcheck import folder_name
from tests.workflow.test_workflow import (
    JOB_COUNTS,
    REPO,
    SNAKEMAKE,
    copy_workflow,
    job_counts,
    run_snakemake,
)

#: snakemake runs in subprocesses: the slow tier (`make unit` leaves it out)
pytestmark = pytest.mark.slow

N_PHOTOS = 40


def test_folder_dry_run_names_without_evaluation(tmp_path):
    """The folder dataset runs alone, on its train split, with names and a gallery but no metrics."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    _photos(tmp_path / "My Photos", 1)
    result = run_snakemake(["-n", "--config", f"folder={tmp_path / 'My Photos'}"], work, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts == JOB_COUNTS["folder_dry_run"]
    name = folder_name(tmp_path / "My Photos")
    assert name.startswith("my_photos_") and f"results/{name}/vit_b16/names.parquet" in result.stdout


def _photos(folder: Path, n: int, start: int = 0) -> None:
    """``n`` small distinct JPEG photos (seeded noise) named ``start``, ``start + 1``, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        pixels = np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.jpg")


def test_a_missing_or_unreadable_folder_stops_before_any_job(tmp_path):
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"not a jpeg")
    for folder, start in (
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "bad", ": none of its image files"),
    ):
        args = ["--configfile", "config/demo.yaml", "--config", f"folder={folder}", "--cores", "1"]
        result = run_snakemake(args, work, timeout=300)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
        assert result.stderr.startswith(f"Error: folder {folder}{' ' if start[0] != ':' else ''}{start}")
        assert not (work / "results").exists() and not (work / "logs").exists()


#: names a shell or a page would interpret, given to three of the photos
HOSTILE = ["a<img src=x onerror=alert(1)>", "q'uote $(touch PWNED) `id`;", "new\nline"]


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, shared_data) -> dict:
    """40 real photos, three of them with hostile names, in a folder whose name a shell would run, with
    a corrupt photo and entries a listing must skip (a hidden file, a text file, a link to a folder
    holding the photos, a pipe, a name not in UTF-8), named by the one documented command, which is
    killed (`kill -9`) while a job runs: the same command, after `--unlock` clears the stale lock,
    resumes by itself. One run serves every test below (the resume, the names, the tags, the reruns).

    The demo's batch is raised to 64, above the 40 photos: a folder smaller than a batch trains too.
    """
    sample = shared_data / "imagenet-sample"
    if not sample.is_dir():
        pytest.skip(f"no {sample}")
    root = tmp_path_factory.mktemp("folder")
    photos = root / 'my "photos" $(touch PWNED);'
    photos.mkdir()
    for src in sorted(sample.glob("*.JPEG"))[:N_PHOTOS]:
        shutil.copy(src, photos / src.name)
    for name, src in zip(HOSTILE, sorted(photos.glob("*.JPEG")), strict=False):
        src.rename(photos / f"{name} {src.name}")
    readable = sorted(str(p) for p in photos.glob("*.JPEG"))
    (photos / "corrupt.jpg").write_bytes(b"not a jpeg")
    (photos / ".hidden.jpg").write_bytes(b"ignored")
    (photos / "notes.txt").write_text("ignored")
    os.symlink("/", photos / "root")  # not followed: it holds the photos
    os.mkfifo(photos / "pipe.jpg")  # never opened
    shutil.copy(readable[-1], photos / os.fsdecode(b"bad\xff.jpg"))  # not UTF-8: skipped, said
    (root / "work").mkdir()
    work = copy_workflow(root / "work")
    shutil.copytree(REPO / "profiles", work / "profiles")  # profiles/default: the workflow's defaults
    args = ["--configfile", "config/demo.yaml", "--config", f"folder={photos}", "train={'batch_size': 64}"]
    args += ["--cores", "2"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(
        [*SNAKEMAKE, *args], cwd=work, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    incomplete = work / ".snakemake" / "incomplete"
    deadline = time.time() + 600
    while (
        time.time() < deadline
        and run.poll() is None
        and not (incomplete.is_dir() and any(incomplete.iterdir()))
    ):
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # a hard kill while a job runs
    run.wait(timeout=60)
    killed_mid_job = incomplete.is_dir() and any(incomplete.iterdir())
    locked = run_snakemake(args, work)
    unlocked = run_snakemake([*args, "--unlock"], work, timeout=300)
    result = run_snakemake(args, work)  # the same command: the cut-off job is rerun by itself
    assert result.returncode == 0, result.stderr[-5000:]
    vocabulary = pd.read_parquet(work / "results/vocabulary/vocabulary.parquet", columns=["name"])
    return {
        "work": work, "photos": photos, "args": args, "readable": readable, "vocabulary": vocabulary,
        "output": result.stdout, "killed_mid_job": killed_mid_job, "locked": locked, "unlocked": unlocked,
    }  # fmt: skip


@pytest.mark.data
def test_a_killed_folder_run_resumes_with_the_same_command(photo_run):
    """After `kill -9` mid-job the stale lock is named (with `--unlock`); once unlocked, the documented
    command reruns the cut-off job by itself. No name was run as a command; the skipped entries are said."""
    assert photo_run["killed_mid_job"]
    locked = photo_run["locked"]
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # the stale lock
    assert photo_run["unlocked"].returncode == 0
    work, photos = photo_run["work"], photo_run["photos"]
    name = folder_name(photos)
    log = (work / f"logs/self_train/{name}/tiny.log").read_text()
    assert f"fewer than train.batch_size 64: training with a batch of {len(photo_run['readable'])}" in log
    assert not list(photos.parent.rglob("PWNED")), "a name was run as a command"
    assert (
        "skipped 1 links to a folder holding the photos, 1 not regular files, 1 names not in UTF-8"
        in (work / f"logs/prepare_manifest/{name}.log").read_text()
    )


@pytest.mark.slow
@pytest.mark.data
def test_names_table_of_a_photo_folder(photo_run):
    work, photos, vocabulary, output = (photo_run[k] for k in ("work", "photos", "vocabulary", "output"))
    prefix = f"results/{folder_name(photos)}/tiny"
    table = pd.read_parquet(work / f"{prefix}/names.parquet")
    readable = photo_run["readable"]
    assert sorted(table.path) == readable  # one row per readable image, the corrupt one skipped
    names = set(vocabulary.name)
    assert set(table.name) <= names and set(table.zeroshot_name) <= names
    for name, runner_ups in zip(table.name, table.runner_up_names, strict=True):
        assert len(runner_ups) == 3 and len({name, *runner_ups}) == 4 and set(runner_ups) <= names
    assert table.score.between(0, 1).all() and table.cluster.notna().all()
    csv = pd.read_csv(work / f"{prefix}/names.csv")
    assert csv.path.tolist() == table.path.tolist() and csv.name.tolist() == table.name.tolist()
    # no ground truth, no metrics
    assert not (work / f"{prefix}/eval").exists()
    assert not (work / "results/summary.parquet").exists()
    page = (work / f"{prefix}/gallery/index.html").read_text()
    assert page.count('<section class="card"') == table.cluster.nunique()
    assert "majority true class" not in page
    # the run's last line points to the names, the gallery and its tag page, and says how many files
    # could not be read (corrupt.jpg)
    n = len(readable) + 1
    assert output.strip().splitlines()[-1] == (
        f"Names of every image (1 of {n} image files could not be read: see "
        f"logs/embed_images/{folder_name(photos)}/tiny-*.log): {prefix}/names.csv; gallery: "
        f"{prefix}/gallery/index.html, tags: {prefix}/gallery/tags.html"
    )


@pytest.mark.slow
@pytest.mark.data
def test_tags_of_a_photo_folder_in_names_and_the_tag_page(photo_run):
    """`names.tags` is on by default: each photo's tags (discovered names with their scores) are in
    names.parquet (a list of name/score), names.csv (`name:score; ...`) and the gallery's tag page."""
    work, photos, vocabulary = (photo_run[k] for k in ("work", "photos", "vocabulary"))
    prefix = work / f"results/{folder_name(photos)}/tiny"
    table = pd.read_parquet(prefix / "names.parquet")
    discovered = pd.read_parquet(prefix / "tags/discovered.parquet")
    names = set(vocabulary.name)
    found = set(vocabulary.name.iloc[discovered.vocab_index]) if len(discovered) else set()
    tagged = [t for t in table.tags if len(t)]
    assert tagged, "no photo was tagged"
    for tags in table.tags:
        scores = [t["score"] for t in tags]
        assert (
            len(tags) <= 5 and all(0.5 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
        )
        assert {t["name"] for t in tags} <= found <= names
    csv = pd.read_csv(prefix / "names.csv", keep_default_na=False)
    expected = ["; ".join(f"{t['name']}:{t['score']:.3f}" for t in tags) for tags in table.tags]
    assert csv.tags.tolist() == expected
    index = (prefix / "gallery/index.html").read_text()
    page = (prefix / "gallery/tags.html").read_text()
    counts = pd.Series([t["name"] for tags in table.tags for t in tags]).value_counts()
    assert 'href="tags.html"' in index and '<span class="tags">' in index
    assert page.count('<section class="card tag"') == len(counts)
    sizes = [int(n) for n in re.findall(r'<p class="meta">(\d+) photos</p>', page)]
    assert sizes == sorted(counts.tolist(), reverse=True)  # largest first


@pytest.mark.data
def test_adding_or_removing_photos_reruns_that_folder_only(photo_run):
    """No change, nothing to do; photos added or removed rerun that folder's steps and nothing shared
    (vocabulary, model). Last in this file: it changes the folder that the tests above read."""
    work, photos, args = photo_run["work"], photo_run["photos"], photo_run["args"]
    assert "Nothing to be done" in run_snakemake(["-n", *args], work, timeout=300).stdout
    _photos(photos, 2, start=900)
    added = run_snakemake(["-n", *args], work, timeout=300)
    counts = job_counts(added.stdout)
    assert counts["prepare_manifest"] == 1 and counts["embed_images"] == 1 and counts["name_images"] == 1
    assert not {"build_vocabulary", "embed_vocabulary", "create_random_model"} & set(counts)
    (photos / "900.jpg").unlink()
    (photos / "901.jpg").unlink()
    assert "Nothing to be done" in run_snakemake(["-n", *args], work, timeout=300).stdout
    Path(photo_run["readable"][-1]).unlink()
    assert job_counts(run_snakemake(["-n", *args], work, timeout=300).stdout)["prepare_manifest"] == 1
