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
