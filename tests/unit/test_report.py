import math
import re
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
    stages = [rows("a", [1.0, 2.0]).assign(stage=s) for s in ("teacher", "zeroshot", "student", "structural")]
    order = summarize(stages).stage.drop_duplicates().tolist()
    assert order == ["zeroshot", "structural", "student", "teacher"]  # pipeline order
    with pytest.raises(ValueError, match="duplicate"):
        summarize([rows("a", [1.0, 2.0]), rows("a", [1.0, 2.0])])


def test_markdown_shows_percentages_and_missing():
    text = summary_markdown(summarize([rows("a", [3.0, 4.25])]))
    assert "12.3" in text and "n/a" in text and "4.2" in text
    assert "random weights" not in text


def test_markdown_and_printed_summary_count_the_clusters_that_fell_back_to_wordnet(tmp_path, capsys):
    structural = rows("photos", [3.0, 4.0]).assign(stage="structural", llm_fallback_clusters=[4, 4])
    clean = rows("dogs", [3.0, 4.0]).assign(stage="structural", llm_fallback_clusters=[0, 0])
    summary = summarize([structural, clean, rows("photos", [1.0, 2.0])])
    text = summary_markdown(summary)
    assert "LLM fallback" in text and "photos/m: 4 clusters" in text and "dogs/m" not in text
    assert "--forcerun describe_candidates" in text
    assert "LLM fallback" not in summary_markdown(summarize([clean]))
    write_table(summary, tmp_path / "summary.parquet")
    assert main([str(tmp_path / "summary.parquet")]) == 0
    assert "photos/m: 4 clusters" in capsys.readouterr().out


def test_markdown_says_plainly_when_a_model_has_random_weights():
    table = rows("a", [3.0, 4.25]).assign(skipped=[2, 0], oov_fraction=[0.25, 0.0])
    summary = summarize([table, table.assign(model="real")], random_models=["m"])
    assert summary.groupby("model").random_weights.all().to_dict() == {"m": True, "real": False}
    text = summary_markdown(summary)
    assert text.endswith(
        "Note: model m has random weights, so these accuracies are meaningless: they "
        "show that the pipeline runs end to end, not how well S3A works."
    )
    header = text.splitlines()[0]
    assert "skipped" in header and "oov_fraction" in header and re.search(r"\|\s+0\.25 \|", text)


def test_summarize_adapter_writes_table_and_markdown(tmp_path, capsys):
    inputs = []
    for name in ("x", "y"):
        path = tmp_path / f"{name}.parquet"
        write_table(rows(name, [1.0, 2.0]), path)
        inputs.append(str(path))
    smk = SimpleNamespace(
        input=inputs,
        output=SimpleNamespace(
            table=str(tmp_path / "s.parquet"),
            markdown=str(tmp_path / "s.md"),
            comparison=str(tmp_path / "c.html"),
        ),
        params=SimpleNamespace(oov={"x": False, "y": True}, random_weights=["m"]),
        log=[str(tmp_path / "log.txt")],
    )
    runpy.run_path(str(SCRIPTS / "summarize.py"), run_name="adapter")["main"](smk)
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 4
    assert (tmp_path / "s.md").read_text().count("| x ") == 2
    assert "summary of 4 metric rows" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "c.html").read_text().count("<tr>") == 2  # one row per dataset
    assert main([str(tmp_path / "s.parquet")]) == 0
    printed = capsys.readouterr().out
    assert "Results:" in printed and "Note: model m has random weights" in printed
    assert main([str(tmp_path / "missing.parquet")]) == 1


def test_comparison_table_sets_ours_beside_the_paper(tmp_path):
    from s3a.report import comparison_table, plot_cluster_sizes, plot_training

    stages = []
    for stage, split, top1, soft in (("zeroshot", "train", 30.0, 40.0), ("student", "test", 50.0, 60.0)):
        for dataset in ("stanford_dogs", "cifar100"):
            stages.append(
                {
                    "dataset": dataset,
                    "model": "vit_b16",
                    "stage": stage,
                    "label_set": "vocabulary",
                    "split": split,
                    "n": 10,
                    "top1": top1,
                    "cluster_acc": top1 + 1,
                    "soft_acc": soft,
                }  # fmt: skip
            )
    table = comparison_table(pd.DataFrame(stages), {"cifar100": True}).set_index("dataset")
    assert table.loc["stanford_dogs", "zeroshot_train_acc"] == 30.0  # exact top-1
    assert table.loc["cifar100", "student_test_acc"] == 60.0  # OOV: the soft score
    assert table.loc["stanford_dogs", "student_test_clu"] == 51.0
    assert math.isnan(table.loc["cifar100", "structural_train_acc"])
    assert (
        table.loc["stanford_dogs", "paper_s3a_acc"] == 58.94
        and table.loc["cifar100", "paper_s3a_clu"] == 46.40
    )
    history = pd.DataFrame(
        {"epoch": [0, 1], "loss": [2.0, 1.0], "loss_ins": [1.0, 0.5], "loss_str": [4.0, 2.0],
         "structural_top1": [10.0, 20.0], "teacher_top1_train": [5.0, 6.0], "confident_fraction": [0.2, 0.3]}
    )  # fmt: skip
    plot_training(history, tmp_path / "t.png")
    clusters = pd.DataFrame({"cluster": [0, 0, 1, 2, 2, 2]})
    plot_cluster_sizes(clusters, clusters, tmp_path / "c.png")
    for name in ("t.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_best_epoch_is_marked_beside_the_last_one(tmp_path):
    """The summary and the comparison carry both the last epoch and the best one selected on test."""
    from s3a.report import comparison_table

    def row(stage, top1, **extra):
        return pd.DataFrame([{"dataset": "stanford_dogs", "model": "vit_b16", "stage": stage,
                              "label_set": "vocabulary", "split": "test", "n": 10, "top1": top1,
                              "cluster_acc": top1 + 1, "soft_acc": math.nan, **extra}])  # fmt: skip

    best = row("student_best", 55.0, epoch=7, selected_by="top1", selection="best epoch, selected on test")
    summary = summarize([row("student", 50.0), row("teacher", 49.0), row("zeroshot", 30.0), best])
    selection = dict(zip(summary.stage, summary.selection, strict=True))
    assert selection == {
        "student": "last epoch",
        "teacher": "last epoch",
        "zeroshot": "",
        "student_best": "best epoch, selected on test",
    }
    text = summary_markdown(summary)
    assert "selection" in text and "best epoch, selected on test" in text and "last epoch" in text
    table = comparison_table(summary).set_index("dataset")
    assert table.loc["stanford_dogs", "student_test_acc"] == 50.0
    assert table.loc["stanford_dogs", "student_best_test_acc"] == 55.0
    assert table.loc["stanford_dogs", "student_best_test_clu"] == 56.0


def test_evaluate_best_adapter_selects_on_test(tmp_path):
    """Rule evaluate_best: per-epoch test predictions -> the row of the best epoch, marked as such."""
    from s3a.metrics import BEST_SELECTION

    vocabulary = pd.DataFrame(
        {"vocab_index": [0, 1, 2], "name": ["cat", "dog", "tram"], "synset_ids": [["n1"], ["n2"], ["n3"]]}
    )
    manifest = pd.DataFrame(
        {"image_id": [0, 1, 2, 3], "path": ["a", "b", "c", "d"], "split": "test",
         "class_index": [0, 0, 1, 1], "class_name": ["cat", "cat", "dog", "dog"],
         "wnid": ["n1", "n1", "n2", "n2"]}
    )  # fmt: skip
    epochs = pd.DataFrame(
        {"image_id": [0, 1, 2, 3] * 3, "epoch": [1] * 4 + [3] * 4 + [5] * 4,
         "student_vocab_index": [0, 2, 2, 2] + [0, 0, 1, 1] + [0, 0, 1, 2],
         "teacher_vocab_index": 0}
    )  # fmt: skip
    for name, frame in (("m", manifest), ("v", vocabulary), ("e", epochs)):
        write_table(frame, tmp_path / f"{name}.parquet")
    smk = SimpleNamespace(
        input=SimpleNamespace(
            manifest=str(tmp_path / "m.parquet"),
            vocabulary=str(tmp_path / "v.parquet"),
            epochs=str(tmp_path / "e.parquet"),
        ),
        output=[str(tmp_path / "best.parquet")],
        params=SimpleNamespace(soft_model=None, oov=False),
        wildcards=SimpleNamespace(dataset="pets", model="tiny"),
        log=[str(tmp_path / "log.txt")],
    )
    runpy.run_path(str(SCRIPTS / "evaluate_best.py"), run_name="adapter")["main"](smk)
    best = pd.read_parquet(tmp_path / "best.parquet")
    assert len(best) == 1
    row = best.iloc[0]
    assert (row.stage, row.split, row.epoch, row.selected_by) == ("student_best", "test", 3, "top1")
    assert row.top1 == 100.0 and row.selection == BEST_SELECTION
    # an OOV set without a soft scorer: the cluster accuracy decides (epoch 3 again, the earliest tie)
    smk.params = SimpleNamespace(soft_model=None, oov=True)
    runpy.run_path(str(SCRIPTS / "evaluate_best.py"), run_name="adapter")["main"](smk)
    assert pd.read_parquet(tmp_path / "best.parquet").iloc[0].selected_by == "cluster_acc"
