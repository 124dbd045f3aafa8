"""Workflow tier: dry runs and lint on every config, and the whole demo DAG on the CPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

#: snakemake runs in subprocesses: the slow tier (`make unit` leaves it out)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TIMEOUT = 900
#: the exact job-count tables (snapshot)
JOB_COUNTS = yaml.safe_load((Path(__file__).parent / "job_counts.yaml").read_text())


def run_snakemake(args: list[str], cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Run snakemake under a timeout; the output is kept for assertions and failure messages.

    The venv's bin/ leads PATH, as `make` does: rules run `python` and `torchrun` from PATH.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def copy_workflow(dest: Path) -> Path:
    for item in ("Snakefile", "workflow", "config"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run as {rule: count}."""
    lines = output[output.index("Job stats:") :].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_all_ten_benchmarks_without_data(tmp_path):
    work = copy_workflow(tmp_path)
    result = run_snakemake(["-n", "--configfile", "config/config.yaml"], work, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts == JOB_COUNTS["all_ten_benchmarks"]
    # the LLM step waits on the network: it takes no core from the jobs running beside it
    describe_jobs = [
        block for block in result.stdout.split("\nrule ") if block.startswith("describe_candidates:")
    ]
    assert len(describe_jobs) == counts["describe_candidates"]
    assert all("\n    threads: 0\n" in block for block in describe_jobs), describe_jobs[0]


def test_unknown_k_adds_the_k_search(tmp_path):
    work = copy_workflow(tmp_path)
    result = run_snakemake(
        [
            "-n",
            "--configfile",
            "config/config.yaml",
            "--config",
            "datasets={'entity13': {'kind': 'entity13', "
            "'k': 'auto', 'params': {'root': 'x', 'info_dir': 'y'}}}",
            "run={'datasets': ['entity13']}",
        ],
        work,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts["estimate_k"] == 1 and counts["cluster_images"] == 1 and counts["prepare_manifest"] == 1


@pytest.mark.parametrize("config", ["config/config.yaml", "config/demo.yaml"])
def test_lint_prints_no_warnings(config, tmp_path):
    """`snakemake --lint` finds nothing (every rule has the conda environment of workflow/envs/)."""
    result = run_snakemake(["--lint", "--configfile", config], REPO, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output and "Congratulations, your workflow is in a good condition" in output


def test_training_starts_one_process_per_gpu_of_the_job(tmp_path):
    """`--set-resources self_train:gpu=N` (a profile's per-rule numbers) sets torchrun's process count."""
    args = ["-n", "-p", "--configfile", "config/demo.yaml", "--forcerun", "self_train"]
    args += ["--set-resources", "self_train:gpu=3", "--", "results/shapes/tiny/train/student.pt"]
    result = run_snakemake(args, copy_workflow(tmp_path), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    command = next(line for line in output.splitlines() if "torchrun" in line)
    nproc = re.search(r"--nproc_per_node=(\$\(\(.*?\)\)) ", command).group(1)
    assert subprocess.run(["bash", "-c", f"echo {nproc}"], capture_output=True, text=True).stdout == "3\n"


def test_invalid_config_is_rejected_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "config" / "bad.yaml").write_text(
        (REPO / "config" / "demo.yaml").read_text().replace("batch_size: 64", "batch_size: -3")
    )
    result = run_snakemake(["-n", "--configfile", "config/bad.yaml"], work, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # one line naming the file, the key path and what is allowed, not the whole schema
    assert re.fullmatch(
        r"Configuration error: \S+/config/bad\.yaml: \w+\.\w*batch_size: -3 is out of range; allowed: >= 1\n",
        result.stderr,
    ), output
    # a wrong value given on the command line is blamed on the command line, not on the file
    args = ["-n", "--configfile", "config/demo.yaml", "--config", "train={'epochs': -1}"]
    result = run_snakemake(args, work, timeout=300)
    assert result.stderr.startswith("Configuration error: --config train: train.epochs: "), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "demo.yaml" not in result.stderr


def test_dataset_llm_override_is_validated(tmp_path):
    """A dataset's own `llm: {on_failure: ...}` entry (e.g. wordnet for a user's folder) passes the schema."""
    work = copy_workflow(tmp_path)
    config = (REPO / "config" / "config.yaml").read_text()
    entry = "    description_templates: caltech101\n"
    assert entry in config
    (work / "config" / "own.yaml").write_text(
        config.replace(entry, entry + "    llm: {on_failure: wordnet}\n")
    )
    result = run_snakemake(["-n", "--configfile", "config/own.yaml"], work, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    (work / "config" / "bad.yaml").write_text(config.replace(entry, entry + "    llm: {on_failure: retry}\n"))
    result = run_snakemake(["-n", "--configfile", "config/bad.yaml"], work, timeout=300)
    assert result.returncode != 0 and "retry" in result.stdout + result.stderr


def test_missing_data_root_names_dataset_and_path(tmp_path):
    work = copy_workflow(tmp_path)
    result = run_snakemake(
        ["--configfile", "config/config.yaml", "--cores", "1", "results/stanford_dogs/manifest.parquet"],
        work,
        timeout=300,
    )
    assert result.returncode != 0
    log = (work / "logs" / "prepare_manifest" / "stanford_dogs.log").read_text()
    assert "data/StanfordDogs" in log and "DatasetError" in log
    assert not (work / "results" / "stanford_dogs" / "manifest.parquet").exists()


SECOND = """
  # a second dataset, so partial reruns can show they leave the first one alone
  shapes2:
    kind: generated
    params:
      {root: resources/demo/shapes2, classes: [circle, square, star, cross], images_per_class: 12, seed: 1}
    k: 4
"""


def variant(work: Path, name: str, old: str, new: str) -> str:
    """Write config/<name>.yaml = config/two.yaml with one text replacement; return its path."""
    text = (work / "config" / "two.yaml").read_text()
    assert old in text
    (work / "config" / f"{name}.yaml").write_text(text.replace(old, new))
    return f"config/{name}.yaml"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The demo config plus a second generated dataset, run end to end once."""
    work = copy_workflow(tmp_path_factory.mktemp("demo"))
    demo = (work / "config" / "demo.yaml").read_text()
    (work / "config" / "two.yaml").write_text(demo.replace("\nmodels:", SECOND + "\nmodels:", 1))
    result = run_snakemake(["--configfile", "config/two.yaml", "--cores", "2"], work)
    assert result.returncode == 0, result.stderr[-5000:]
    return work


@pytest.mark.slow
def test_demo_runs_end_to_end(demo_run):
    work = demo_run
    manifest = pd.read_parquet(work / "results/shapes/manifest.parquet")
    summary = pd.read_parquet(work / "results/summary.parquet")
    assert set(summary.dataset) == {"shapes", "shapes2"}
    summary = summary[summary.dataset == "shapes"]
    # zero-shot: train/test x vocabulary/class names; structural labels: train; student, teacher: train/test;
    # the student's best epoch on test
    assert len(summary) == 10
    assert sorted(summary.stage.unique()) == ["structural", "student", "student_best", "teacher", "zeroshot"]
    history = pd.read_parquet(work / "results/shapes/tiny/train/history.parquet")
    assert history.epoch.tolist() == [0, 1] and (history.samples == 160).all()
    assert history.student_test_top1.notna().all()  # eval_every 1
    best = summary[summary.stage == "student_best"].iloc[0]
    assert best.top1 == history.student_test_top1.max() and "selected on the test split" in best.selection
    assert set(summary.loc[summary.stage.isin(["student", "teacher"]), "selection"]) == {"last epoch"}
    assert set(summary.label_set) == {"vocabulary", "class_names"}
    structural = summary[summary.stage == "structural"]
    assert structural.split.tolist() == ["train"]
    assert structural.candidate_recall.between(0, 1).all()  # spec 7.4 diagnostics
    assert (structural.llm_fallback_clusters == 0).all()  # the demo's offline backend never fails
    descriptions = pd.read_parquet(work / "results/shapes/tiny/discover/descriptions.parquet")
    assert set(descriptions.source) == {"wordnet"}
    assert (summary.loc[summary.label_set == "vocabulary", "missing_labels"] >= 0).all()
    labels = pd.read_parquet(work / "results/shapes/tiny/discover/structural_labels.parquet")
    k_search = pd.read_parquet(work / "results/shapes/tiny/discover/k_search.parquet")
    assert labels.cluster.nunique() <= int(k_search.loc[k_search.selected, "k"].iloc[0])
    assert labels.vocab_index.nunique() == labels.cluster.nunique()  # one distinct name per cluster
    for split, n in manifest.groupby("split").size().items():
        assert (summary.loc[(summary.split == split) & (summary.stage == "zeroshot"), "n"] == n).all()
    for column in ("top1", "cluster_acc", "soft_acc"):
        assert summary[column].between(0, 100).all(), summary
    # every image was readable; the generated class names are vocabulary names; the weights are random
    assert (summary.skipped == 0).all() and (summary.oov_fraction == 0).all()
    assert summary.random_weights.all()
    assert "Note: model tiny has random weights" in (work / "results/summary.md").read_text()
    names = pd.read_parquet(work / "results/shapes/tiny/names.parquet")
    assert sorted(names.image_id) == sorted(manifest.image_id)  # both splits of a labelled dataset
    gallery = (work / "results/shapes/tiny/gallery/index.html").read_text()
    assert gallery.count('<section class="card"') == labels.cluster.nunique()
    assert gallery.count("majority true class") == labels.cluster.nunique()
    assert "Model tiny has random weights" in gallery
    # the classifier covers the whole vocabulary
    vocabulary = pd.read_parquet(work / "results/vocabulary/vocabulary.parquet")
    classifier = pd.read_parquet(work / "results/vocabulary/tiny/classifier.parquet")
    assert len(classifier) == len(vocabulary) > 20000
    # a second run has nothing to do
    again = run_snakemake(["--configfile", "config/two.yaml", "--cores", "2", "-n"], work)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_training_setting_of_one_dataset_reruns_only_its_training(demo_run):
    config = variant(demo_run, "train2", "    k: 4\n", "    k: 4\n    train: {epochs: 3}\n")
    result = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    assert job_counts(result.stdout) == JOB_COUNTS["one_dataset_train_setting"]
    outputs = [line for line in result.stdout.splitlines() if line.strip().startswith("output:")]
    assert outputs and not any("results/shapes/" in line for line in outputs)


@pytest.mark.slow
def test_llm_settings_rerun_discovery_onwards_but_not_embeddings(demo_run):
    config = variant(demo_run, "llm", "  backend: wordnet\n", "  backend: wordnet\n  repeats: 2\n")
    result = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    assert job_counts(result.stdout) == JOB_COUNTS["llm_setting"]


@pytest.mark.slow
def test_dataset_llm_override_reruns_only_that_datasets_descriptions(demo_run):
    config = variant(demo_run, "own", "    k: 4\n", "    k: 4\n    llm: {on_failure: wordnet}\n")
    result = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    counts = job_counts(result.stdout)
    assert counts["describe_candidates"] == 1 and counts["realign_labels"] == 1, counts
    outputs = [line for line in result.stdout.splitlines() if line.strip().startswith("output:")]
    assert outputs and not any("results/shapes/" in line for line in outputs)


@pytest.mark.slow
def test_report_has_the_comparison_the_figures_and_the_galleries(demo_run):
    """`snakemake --report report.zip` after a run, as the README says (a zip: galleries are folders)."""
    result = run_snakemake(
        ["--configfile", "config/two.yaml", "--report", "report.zip"], demo_run, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    archive = zipfile.ZipFile(demo_run / "report.zip")
    names = archive.namelist()
    pages = [n for n in names if n.endswith("/index.html")]
    assert len(pages) == 2  # the galleries of shapes and shapes2, each with its thumbnails
    for page in pages:
        assert any(n.startswith(page[: -len("index.html")] + "thumbs/") for n in names)
    html = archive.read("report/report.html").decode()
    assert len(html) > 100_000
    for text in (
        "comparison.html",
        "training.png",
        "clusters.png",
        "shapes2",
        "Cluster sizes",
        "multilabel.html",
    ):
        assert text in html, text
    multilabel = (demo_run / "results" / "report" / "multilabel.html").read_text()
    assert multilabel.count("<td>shapes_ml</td>") >= 7  # every stage of the multi-label demo
    table = (demo_run / "results" / "report" / "comparison.html").read_text()
    assert table.count("<td>shapes</td>") == 1 and table.count("<td>shapes2</td>") == 1
    for column in (
        "paper_s3a_acc",
        "structural_train_acc",
        "student_test_acc",
        "student_best_test_acc",
        "teacher_test_clu",
    ):
        assert f"<th>{column}</th>" in table


def test_reproduction_config_decodes_every_embedding_with_pil(tmp_path):
    """config.yaml: the offline features use pil, and the same setting reaches the training's teacher
    features (one setting, passed through to `python -m s3a.train`)."""
    import yaml

    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text())["embed"]["decoder"] == "pil"
    work = copy_workflow(tmp_path)
    target = "results/stanford_dogs/vit_b16/train/history.parquet"
    for decoder in ("pil", "fast"):
        result = run_snakemake(
            [target, "-n", "-p", "--configfile", "config/config.yaml",
             "--config", f"embed={{'decoder': '{decoder}'}}"],
            work,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout
        commands = [line for line in result.stdout.splitlines() if "-m s3a.train" in line]
        assert len(commands) == 1 and f'"decoder": "{decoder}"' in commands[0]


@pytest.mark.slow
def test_decoder_setting_reruns_embeddings_training_and_predictions(demo_run):
    """embed.decoder feeds embed_images, self_train (teacher features) and predict alike."""
    config = variant(demo_run, "pil", "  decoder: fast\n", "  decoder: pil\n")
    result = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    counts = job_counts(result.stdout)
    assert counts["embed_images"] == 6 and counts["self_train"] == 2 and counts["predict"] == 4
    # the multi-label demo's images and patch tokens too; its tiles are cut from fully decoded images
    assert "embed_tiles" not in counts and counts["embed_patch_tokens"] == 2


@pytest.mark.slow
def test_multilabel_demo_runs_end_to_end(demo_run):
    """The multi-label DAG of the demo: every stage's metrics, the learners, the open vocabulary."""
    work = demo_run
    summary = pd.read_parquet(work / "results/summary_multilabel.parquet")
    assert set(summary.dataset) == {"shapes_ml"} and set(summary.model) == {"tiny"}
    stages = {"zs_global", "zs_local", "zs_final", "pseudo_train", "linear", "refined_linear", "mldecoder"}
    assert stages <= set(summary.stage)
    rows = summary[summary.stage.isin(stages) & (summary.subset == "all")]
    assert rows["map"].between(0, 100).all() and rows["map"].notna().all(), rows
    labels = pd.read_parquet(work / "results/shapes_ml/labels.parquet")
    label_set = pd.read_parquet(work / "results/shapes_ml/label_set.parquet")
    manifest = pd.read_parquet(work / "results/shapes_ml/manifest.parquet")
    assert len(label_set) == 6 and len(manifest) == 90 and labels.image_id.isin(manifest.image_id).all()
    for split, n in manifest.groupby("split").size().items():
        tiles = pd.read_parquet(work / f"results/shapes_ml/tiny/ml/tiles/{split}.parquet")
        assert len(tiles) == 9 * n  # the 3x3 grid
        pseudo = pd.read_parquet(work / f"results/shapes_ml/tiny/ml/pseudo/{split}.parquet")
        assert len(pseudo) == n
    history = pd.read_parquet(work / "results/shapes_ml/tiny/ml/linear/history.parquet")
    assert len(history) == 20  # multilabel.train.linear.epochs of the demo
    test = pd.read_parquet(work / "results/shapes_ml/tiny/ml/mldecoder/test.parquet")
    assert len(test) == (manifest.split == "test").sum() and len(test.scores.iloc[0]) == 6
    markdown = (work / "results/summary_multilabel.md").read_text()
    assert "| shapes_ml | tiny    | linear " in markdown
    assert "small" not in set(summary.subset)  # the generated shapes are all large
    # the S3A summary is untouched by the multi-label dataset
    assert "shapes_ml" not in set(pd.read_parquet(work / "results/summary.parquet").dataset)


@pytest.mark.slow
def test_pseudo_label_setting_reruns_from_pseudo_labels_never_the_tiles(demo_run):
    """Changing zeta reruns init_pseudolabels onward and never embed_tiles (params carry their slice)."""
    config = variant(demo_run, "zeta", "\nmultilabel:\n", "\nmultilabel:\n  pseudo: {zeta: 0.5}\n")
    result = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    assert job_counts(result.stdout) == JOB_COUNTS["multilabel_zeta"]


def test_image_learners_start_one_process_per_gpu_of_the_job(tmp_path):
    """finetune trains through torchrun like self_train; `--set-resources train_images:gpu=N` sets N."""
    work = copy_workflow(tmp_path)
    args = ["-n", "-p", "--configfile", "config/demo.yaml", "--config"]
    args += ["multilabel={'train': {'learners': ['finetune']}}", "--set-resources", "train_images:gpu=2"]
    result = run_snakemake([*args, "--", "results/shapes_ml/tiny/ml/finetune/model.pt"], work, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    command = next(line for line in output.splitlines() if "s3a.multilabel.imagetrain" in line)
    assert "--learner finetune" in command and "--supervision pseudo" in command
    nproc = re.search(r"--nproc_per_node=(\$\(\(.*?\)\)) ", command).group(1)
    assert subprocess.run(["bash", "-c", f"echo {nproc}"], capture_output=True, text=True).stdout == "2\n"


@pytest.mark.slow
def test_open_vocabulary_adds_its_rules_and_reruns_nothing_else(demo_run):
    """Enabling multilabel.openvocab after the demo runs only its three rules and the summary."""
    config = variant(
        demo_run,
        "openvocab",
        "\nmultilabel:\n",
        "\nmultilabel:\n  openvocab: {enabled: true, discovery: frequency, hierarchy: false}\n",
    )
    dry = run_snakemake(["-n", "--configfile", config], demo_run, timeout=300)
    assert job_counts(dry.stdout) == JOB_COUNTS["multilabel_openvocab"]
    result = run_snakemake(["--configfile", config, "--cores", "2"], demo_run)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = pd.read_parquet(demo_run / "results/summary_multilabel.parquet")
    rows = summary[summary.stage.isin(["ov_exact", "ov_hier"])]
    exact = rows[(rows.stage == "ov_exact") & (rows.subset == "all")].iloc[0]
    assert exact.n_images == 30 and 0 <= exact["map"] <= 100
    discovered = pd.read_parquet(demo_run / "results/shapes_ml/tiny/ml/openvocab/discovered_test.parquet")
    assert len(discovered) == 6  # n_labels null: as many names as the dataset's labels


@pytest.mark.slow
def test_finetune_learner_trains_through_torchrun(demo_run):
    """Adding the finetune learner after the demo runs train_images (torchrun) and its predictions only."""
    config = variant(
        demo_run,
        "finetune",
        "    learners: [linear, mldecoder]\n",
        "    learners: [linear, mldecoder, finetune]\n"
        "    finetune: {epochs: 2, batch_size: 16, num_workers: 0, label_every: 1}\n",
    )
    result = run_snakemake(["--configfile", config, "--cores", "2", "all_multilabel"], demo_run)
    assert result.returncode == 0, result.stderr[-5000:]
    counts = job_counts(result.stdout + result.stderr)
    assert (
        counts["train_images"] == 1 and counts["predict_images"] == 1 and counts["evaluate_multilabel"] == 2
    )
    assert "embed_tiles" not in counts and "train_linear" not in counts
    history = pd.read_parquet(demo_run / "results/shapes_ml/tiny/ml/finetune/history.parquet")
    assert history.epoch.tolist() == [1, 2] and history.n_updates.tolist() == [1, 2]
    summary = pd.read_parquet(demo_run / "results/summary_multilabel.parquet")
    assert {"finetune", "refined_finetune"} <= set(summary.stage)
