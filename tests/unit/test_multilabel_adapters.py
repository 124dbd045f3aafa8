"""The CDUL rules' adapters (workflow/scripts/, named as their rules) run through ``main(smk)`` with a fake
``snakemake`` object, chained on the generated multi-label set with the tiny random model:
prepare -> embed_images (the existing adapter) -> embed_tiles, embed_label_set -> init_pseudolabels
-> train_linear -> predict_linear -> evaluate; predict_images on a saved finetune model."""

from __future__ import annotations

import copy
import itertools
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import ML_TRAIN

from s3a.io import read_embeddings, read_table
from s3a.multilabel.aggregate import PseudoParams, scores_table, view_scores
from s3a.multilabel.cdul.linear import linear_features, load_linear, predict_linear
from s3a.multilabel.classifier import read_classifier
from s3a.multilabel.data.tables import LABEL_SET_COLUMNS, LABELS_COLUMNS
from s3a.multilabel.imagetrain.network import ImageTrainParams, build_net, save_model
from s3a.multilabel.metrics import EVAL_COLUMNS
from s3a.multilabel.views.tables import read_tiles

_RUNS = itertools.count()
SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
TILES = {"grid": 3, "fit": "center_crop", "dtype": "float16", "batch_size": 18, "num_workers": 0}
PSEUDO = {"temperature": 100.0, "zeta": 0.2, "lam": 0.0, "local_reduce": "cdul"}
EVALUATE = {"threshold": 0.5, "topk": [3, 5], "small_area_px": 1024}


def run(script: str, tmp: Path, *, input=None, output=None, params=None, wildcards=None) -> Path:  # noqa: A002
    """Run ``workflow/scripts/<script>.py``'s ``main`` with a fake ``snakemake`` object (one thread);
    returns its log file."""
    log = (
        tmp
        / "logs"
        / f"{script}-{len(list((tmp / 'logs').glob('*')) if (tmp / 'logs').exists() else [])}.log"
    )
    smk = SimpleNamespace(
        input=SimpleNamespace(**{k: str(v) for k, v in (input or {}).items()}),
        output=output,
        params=SimpleNamespace(**(params or {})),
        wildcards=SimpleNamespace(**(wildcards or {})),
        threads=1,
        log=[str(log)],
    )
    runpy.run_path(str(SCRIPTS / f"{script}.py"), run_name="adapter")["main"](smk)
    return log


@pytest.fixture(scope="module")
def chain(tiny_checkpoint, tmp_path_factory):
    """Every output of the chain, by name; ``R`` = results/{dataset}, ``M`` = results/{dataset}/{model}."""
    tmp = tmp_path_factory.mktemp("ml")
    r, m = tmp / "results" / "gen", tmp / "results" / "gen" / "tiny"
    model = {"arch": "s3a-tiny", "pretrained": str(tiny_checkpoint)}
    ds = {"mldataset": "gen", "model": "tiny"}
    f = {
        "manifest": r / "manifest.parquet",
        "labels": r / "labels.parquet",
        "label_set": r / "label_set.parquet",
        "classifier": m / "ml" / "label_classifier.parquet",
    }
    f["prepare_log"] = run(
        "prepare_multilabel",
        tmp,
        params={
            "kind": "generated_multilabel",
            "params": {
                "root": str(tmp / "data"),
                "n_train": 8,
                "n_test": 4,
                "canvas": 96,
                "prompt_style": "raw",
            },
        },
        output=SimpleNamespace(
            manifest=str(f["manifest"]), labels=str(f["labels"]), label_set=str(f["label_set"])
        ),
        wildcards={"mldataset": "gen"},
    )
    run(
        "embed_label_set",
        tmp,
        input={"label_set": f["label_set"], "checkpoint": tiny_checkpoint},
        params={"model": model, "templates": "cdul", "batch_size": 4},
        output=[str(f["classifier"])],
        wildcards=ds,
    )
    for split in ("train", "test"):
        f[f"embed_{split}"] = m / "embed" / f"{split}.parquet"
        f[f"tiles_{split}"] = m / "ml" / "tiles" / f"{split}.parquet"
        f[f"pseudo_{split}"] = m / "ml" / "pseudo" / f"{split}.parquet"
        sw = {**ds, "split": split}
        run(
            "embed_images",
            tmp,
            input={"manifest": f["manifest"]},
            params={"model": model, "batch_size": 8, "decoder": "pil"},
            output=[str(f[f"embed_{split}"])],
            wildcards=sw,
        )
        run(
            "embed_tiles",
            tmp,
            input={"manifest": f["manifest"], "checkpoint": tiny_checkpoint},
            params={"model": model, "tiles": TILES},
            output=[str(f[f"tiles_{split}"])],
            wildcards=sw,
        )
        run(
            "init_pseudolabels",
            tmp,
            input={
                "embeddings": f[f"embed_{split}"],
                "tiles": f[f"tiles_{split}"],
                "classifier": f["classifier"],
            },
            params={"pseudo": PSEUDO},
            output=[str(f[f"pseudo_{split}"])],
            wildcards=sw,
        )
    train = copy.deepcopy(ML_TRAIN)
    train["linear"].update(epochs=2, batch_size=4, tiles=True)
    train["label_update"]["every"] = 1
    lin = m / "ml" / "linear"
    f.update(model=lin / "model.pt", history=lin / "history.parquet", refined=lin / "labels_refined.parquet")
    f["state"] = tmp / "resources" / "ml_train" / "gen" / "tiny" / "linear" / "state.pt"
    f["train_log"] = run(
        "train_linear",
        tmp,
        input={
            "pseudo": f["pseudo_train"],
            "embeddings": f["embed_train"],
            "tiles": f["tiles_train"],
            "classifier": f["classifier"],
            "labels": f["labels"],
            "manifest": f["manifest"],
        },
        params={"train": train, "pseudo": PSEUDO, "state": str(f["state"])},
        output=SimpleNamespace(model=str(f["model"]), history=str(f["history"]), labels=str(f["refined"])),
        wildcards={**ds, "learner": "linear"},
    )
    f["linear_test"] = lin / "test.parquet"
    run(
        "predict_linear",
        tmp,
        input={"model": f["model"], "embeddings": f["embed_test"], "tiles": f["tiles_test"]},
        params={"train": train},
        output=[str(f["linear_test"])],
        wildcards={**ds, "split": "test"},
    )
    for stage, scores, split in (
        ("zs_final", "pseudo_test", "test"),
        ("pseudo_train", "pseudo_train", "train"),
        ("refined_linear", "refined", "train"),
        ("linear", "linear_test", "test"),
    ):
        f[f"eval_{stage}"] = m / "ml" / "eval" / f"{stage}.parquet"
        run(
            "evaluate_multilabel",
            tmp,
            input={
                "scores": f[scores],
                "manifest": f["manifest"],
                "labels": f["labels"],
                "label_set": f["label_set"],
            },
            params={
                "stage": stage,
                "split": split,
                "setting": "standard",
                "evaluate": EVALUATE,
                "pseudo": PSEUDO,
            },
            output=[str(f[f"eval_{stage}"])],
            wildcards={**ds, "stage": stage},
        )
    return f


def test_prepare(chain):
    manifest, labels, label_set = (read_table(chain[k]) for k in ("manifest", "labels", "label_set"))
    assert len(manifest) == 12 and manifest.split.value_counts().to_dict() == {"train": 8, "test": 4}
    assert list(labels.columns) == list(LABELS_COLUMNS) and labels.image_id.nunique() == 12
    assert list(label_set.columns) == list(LABEL_SET_COLUMNS) and len(label_set) == 6
    assert label_set.prompt.tolist() == label_set.name.tolist()  # the builder takes prompt_style
    assert "6 labels" in chain["prepare_log"].read_text()


def test_label_set_and_tiles(chain):
    w = read_classifier(chain["classifier"])
    assert w.shape == (6, 32) and np.allclose(np.linalg.norm(w, axis=1), 1, atol=1e-5)
    tiles = pq.read_table(chain["tiles_test"])
    assert tiles.column_names == ["image_id", "tile", "box", "embedding"] and tiles.num_rows == 4 * 9
    assert tiles.schema.field("embedding").type == pa.list_(pa.float16(), 32)  # tiles.dtype
    assert tiles.column("image_id").to_pylist()[::9] == [8, 9, 10, 11]


def test_pseudolabels(chain):
    table = pq.read_table(chain["pseudo_train"])
    ids, z = read_embeddings(chain["embed_train"])
    tile_ids, tiles = read_tiles(chain["tiles_train"])
    assert table.column("image_id").to_pylist() == ids.tolist() == tile_ids.tolist() == list(range(8))
    params = PseudoParams(**PSEUDO)
    expected = scores_table(ids, view_scores(z, tiles, read_classifier(chain["classifier"]), params), params)
    np.testing.assert_allclose(
        np.stack(table.column("s_final").to_numpy(zero_copy_only=False)),
        np.stack(expected.column("s_final").to_numpy(zero_copy_only=False)),
        rtol=1e-6,
    )


def test_train_and_predict_linear(chain):
    history = read_table(chain["history"])
    assert history.epoch.tolist() == [1, 2] and history.n_updates.tolist() == [1, 2]
    assert np.isfinite(history.gt_label_map).all()  # the labels input feeds the diagnostic
    refined = pq.read_table(chain["refined"])
    assert refined.column_names == ["image_id", "y"] and refined.column("image_id").to_pylist() == list(
        range(8)
    )
    assert refined.schema.field("y").type == pa.list_(pa.float32(), 6)
    assert chain["state"].is_file() and "final loss" in chain["train_log"].read_text()
    head, tiles = load_linear(chain["model"])
    assert tiles and head.linear.in_features == 64
    pred = pq.read_table(chain["linear_test"])
    assert pred.column_names == ["image_id", "scores"] and pred.column("image_id").to_pylist() == [
        8,
        9,
        10,
        11,
    ]
    ids, z = read_embeddings(chain["embed_test"])
    expected = predict_linear(head, linear_features(z, read_tiles(chain["tiles_test"])[1]))
    np.testing.assert_allclose(
        np.stack(pred.column("scores").to_numpy(zero_copy_only=False)), expected, rtol=1e-6
    )


def test_evaluate(chain):
    for stage, split, n_images, thresholded in (
        ("zs_final", "test", 4, False),
        ("pseudo_train", "train", 8, False),
        ("refined_linear", "train", 8, True),
        ("linear", "test", 4, True),
    ):
        rows = read_table(chain[f"eval_{stage}"])
        assert list(rows.columns) == list(EVAL_COLUMNS)
        assert rows.subset.tolist() == ["all"]  # the generated shapes are large: no small subset
        first = rows.iloc[0]
        assert [first.dataset, first.model, first.stage, first.split] == ["gen", "tiny", stage, split]
        assert first.n_images == n_images and first.n_labels == 6 and 0 <= first["map"] <= 100
        assert np.isnan(first.c_prec) != thresholded


def test_predict_images(chain, tiny_clip, tiny_checkpoint, tmp_path):
    w = read_classifier(chain["classifier"])
    net = build_net(copy.deepcopy(tiny_clip.model.visual), w, ImageTrainParams())
    net.head.linear.weight.data.normal_()
    save_model(net, tmp_path / "model.pt", ImageTrainParams())
    out = tmp_path / "finetune" / "test.parquet"
    log = run(
        "predict_images",
        tmp_path,
        input={"model": tmp_path / "model.pt", "manifest": chain["manifest"], "checkpoint": tiny_checkpoint},
        params={
            "model": {"arch": "s3a-tiny", "pretrained": str(tiny_checkpoint)},
            "batch_size": 4,
            "decoder": "pil",
            "num_workers": 0,
        },
        output=[str(out)],
        wildcards={"mldataset": "gen", "model": "tiny", "learner": "finetune", "split": "test"},
    )
    table = pq.read_table(out)
    assert table.column_names == ["image_id", "scores"] and table.column("image_id").to_pylist() == [
        8,
        9,
        10,
        11,
    ]
    scores = np.stack(table.column("scores").to_numpy(zero_copy_only=False))
    assert scores.shape == (4, 6) and ((scores > 0) & (scores < 1)).all()
    assert "scored 4 of 4 images" in log.read_text()


def test_pseudolabels_adapter_refuses_misaligned_inputs(chain, tmp_path):
    with pytest.raises(ValueError, match="different images"):
        run(
            "init_pseudolabels",
            tmp_path,
            input={
                "embeddings": chain["embed_train"],
                "tiles": chain["tiles_test"],
                "classifier": chain["classifier"],
            },
            params={"pseudo": PSEUDO},
            output=[str(tmp_path / "p.parquet")],
            wildcards={"split": "train"},
        )
    assert not (tmp_path / "p.parquet").exists()
    assert "different images" in next((tmp_path / "logs").glob("*.log")).read_text()
