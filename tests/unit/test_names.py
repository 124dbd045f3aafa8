"""The per-image names table and the top-k names under the vocabulary softmax."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import unit

from s3a.embed import zero_shot
from s3a.names import NAMES_COLUMNS, names_table, top_names, write_names_csv


def test_top_names_agree_with_argmax_and_sort_by_probability():
    rng = np.random.default_rng(0)
    images, classifier = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(30, 16)))
    index, prob = top_names(images, classifier, k=4, chunk=7)
    pred, best = zero_shot(images, classifier)
    assert index.shape == prob.shape == (50, 4)
    np.testing.assert_array_equal(index[:, 0], pred)
    np.testing.assert_allclose(prob[:, 0], best, rtol=1e-5)
    assert (np.diff(prob, axis=1) <= 0).all()  # best first
    assert all(len(set(row)) == 4 for row in index)  # distinct
    logits = 100.0 * images @ classifier.T
    expected = np.argsort(-logits, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(index, expected)
    with pytest.raises(ValueError, match="1 <= k <= 30"):
        top_names(images, classifier, k=31)


def test_names_table_joins_final_zero_shot_and_clusters(tmp_path):
    vocabulary = pd.DataFrame({"vocab_index": [0, 1, 2, 3], "name": ["cat", "dog", "fox", "owl"]})
    manifest = pd.DataFrame(
        {"image_id": [0, 1, 2], "path": ["/a.jpg", "/b.jpg", "/c.jpg"], "split": ["train", "train", "test"]}
    )
    # image 1 could not be read: no prediction, no row
    final = pd.DataFrame(
        {
            "image_id": [2, 0],
            "student_vocab_index": [3, 1],
            "student_score": [0.5, 0.9],
            "student_runner_ups": [[0, 1], [2, 3]],
        }
    )
    zeroshot = pd.DataFrame({"image_id": [0, 2], "pred_vocab_index": [0, 3], "score": [0.4, 0.6]})
    clusters = pd.DataFrame({"image_id": [0, 1], "cluster": [5, 6]})
    table = names_table(manifest, vocabulary, final, zeroshot, clusters)
    assert tuple(table.columns) == NAMES_COLUMNS
    assert table.image_id.tolist() == [0, 2]
    assert table.name.tolist() == ["dog", "owl"]
    assert table.zeroshot_name.tolist() == ["cat", "owl"]
    assert table.runner_up_names.tolist() == [["fox", "owl"], ["cat", "dog"]]
    assert table.cluster.tolist()[0] == 5 and pd.isna(table.cluster.iloc[1])  # test split: no cluster
    assert table.path.tolist() == ["/a.jpg", "/c.jpg"]
    write_names_csv(table, tmp_path / "names.csv")
    csv = pd.read_csv(tmp_path / "names.csv")
    assert csv.runner_up_names.tolist() == ["fox; owl", "cat; dog"]
    bad = final.assign(image_id=[2, 9])
    with pytest.raises(ValueError, match="missing from the manifest"):
        names_table(manifest, vocabulary, bad, zeroshot, clusters)


def test_name_images_adapter(tmp_path):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    from s3a.io import write_table

    tables = {
        "manifest": pd.DataFrame(
            {"image_id": [0, 1], "path": ["/a.jpg", "/b.jpg"], "split": ["train", "test"]}
        ),
        "vocabulary": pd.DataFrame({"vocab_index": [0, 1, 2], "name": ["cat", "dog", "fox"]}),
        "train": pd.DataFrame(
            {"image_id": [0], "student_vocab_index": [2], "student_score": [0.7], "student_runner_ups": [[0]]}
        ),
        "test": pd.DataFrame(
            {"image_id": [1], "student_vocab_index": [1], "student_score": [0.6], "student_runner_ups": [[2]]}
        ),
        "zs_train": pd.DataFrame({"image_id": [0], "pred_vocab_index": [0], "score": [0.5]}),
        "zs_test": pd.DataFrame({"image_id": [1], "pred_vocab_index": [1], "score": [0.4]}),
        "structural": pd.DataFrame({"image_id": [0], "vocab_index": [2], "cluster": [0]}),
    }
    paths = {k: str(tmp_path / f"{k}.parquet") for k in tables}
    for key, table in tables.items():
        write_table(table, paths[key])
    smk = SimpleNamespace(
        input=SimpleNamespace(
            manifest=paths["manifest"],
            vocabulary=paths["vocabulary"],
            final=[paths["train"], paths["test"]],
            zeroshot=[paths["zs_train"], paths["zs_test"]],
            structural=paths["structural"],
        ),
        output=SimpleNamespace(table=str(tmp_path / "names.parquet"), csv=str(tmp_path / "names.csv")),
        log=[str(tmp_path / "names.log")],
    )
    script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "name_images.py"
    runpy.run_path(str(script), run_name="adapter")["main"](smk)
    table = pd.read_parquet(tmp_path / "names.parquet")
    assert table.name.tolist() == ["fox", "dog"] and table.zeroshot_name.tolist() == ["cat", "dog"]
    assert table.runner_up_names.map(list).tolist() == [["cat"], ["fox"]]
    assert pd.read_csv(tmp_path / "names.csv").split.tolist() == ["train", "test"]
