"""The prediction steps (s3a.predict) and their adapters, workflow/scripts/zero_shot.py and predict.py."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import unit
from PIL import Image

from s3a.classify import zero_shot
from s3a.embed import EmbedParams, encode_images, text_classifier
from s3a.io import read_table, write_embeddings, write_table
from s3a.models import TINY_ARCH, ModelSpec, load_trained
from s3a.predict import trained_predictions, zero_shot_predictions
from s3a.vocab import TEMPLATES

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def spec(tiny_checkpoint) -> ModelSpec:
    return ModelSpec(TINY_ARCH, str(tiny_checkpoint))


def own_world(tiny_clip, n_names=7, seed=0):
    """Images that are the dataset's own class-name embeddings, and a random vocabulary."""
    own = text_classifier(tiny_clip.model, tiny_clip.tokenizer, CLASSES, TEMPLATES["photo"])
    gt = np.array([2, 0, 1, 2, 1])
    manifest = pd.DataFrame(
        {"class_index": [10, 11, 12, 10, 11, 12], "class_name": CLASSES + CLASSES}
    )  # classes repeat over images; class indices need not start at 0
    vocabulary = unit(np.random.default_rng(seed).normal(size=(n_names, own.shape[1]))).astype(np.float32)
    return own[gt].astype(np.float32), gt, manifest, vocabulary


def test_zero_shot_predictions_name_the_own_classes_and_the_vocabulary(tiny_clip, spec):
    images, gt, manifest, vocabulary = own_world(tiny_clip)
    vocab_ids = np.arange(len(vocabulary)) + 100
    table = zero_shot_predictions(np.arange(5) + 7, images, vocab_ids, vocabulary, manifest, spec, "photo")
    assert list(table.columns) == ["image_id", "pred_vocab_index", "score", "pred_class_index", "class_score"]
    assert table.image_id.tolist() == [7, 8, 9, 10, 11]
    assert table.pred_class_index.tolist() == list(np.array([10, 11, 12])[gt])  # each image is its name
    np.testing.assert_array_equal(table.pred_vocab_index, vocab_ids[np.argmax(images @ vocabulary.T, axis=1)])
    assert ((table.score > 0) & (table.score <= 1)).all() and (table.class_score > 1 / 3).all()


def write_images(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (64 + i, 70, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip):
    """A manifest of 5 train images (one unreadable) and 2 test images, a classifier, and a student
    (the model's own weights) and a teacher (perturbed weights)."""
    folder = tmp_path_factory.mktemp("predict")
    paths = write_images(folder, 7)
    Path(paths[1]).write_bytes(b"not an image")
    manifest = pd.DataFrame(
        {"image_id": np.arange(7) + 50, "path": paths, "split": ["train"] * 5 + ["test"] * 2}
    )
    classifier = unit(np.random.default_rng(1).normal(size=(9, 32))).astype(np.float32)
    student, teacher = folder / "student.pt", folder / "teacher.pt"
    weights = {k: v.clone() for k, v in tiny_clip.model.visual.state_dict().items()}
    torch.save(weights, student)
    torch.manual_seed(0)
    torch.save(
        {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()},
        teacher,
    )
    return manifest, classifier, {"student": str(student), "teacher": str(teacher)}


def test_trained_predictions_score_student_and_teacher(trained, spec):
    manifest, classifier, checkpoints = trained
    vocab_ids = np.arange(len(classifier)) * 2
    params = EmbedParams(batch_size=2, num_workers=0)
    table = trained_predictions(
        manifest, "train", vocab_ids, classifier, spec, checkpoints, params, runner_ups=3
    )
    assert table.image_id.tolist() == [50, 52, 53, 54]  # the unreadable image has no row
    for role in ("student", "teacher"):
        clip = load_trained(spec, checkpoints[role])
        emb = encode_images(clip.model, clip.preprocess, list(manifest.path[[0, 2, 3, 4]]), params).embeddings
        pred, score = zero_shot(emb, classifier)
        np.testing.assert_array_equal(table[f"{role}_vocab_index"], vocab_ids[pred])
        np.testing.assert_allclose(table[f"{role}_score"], score, rtol=1e-5)
    runner_ups = np.stack(table.student_runner_ups)
    assert (
        runner_ups.shape == (4, 3)
        and not np.isin(table.student_vocab_index.to_numpy()[:, None], runner_ups).any()
    )
    assert (table.student_vocab_index != table.teacher_vocab_index).any()  # two different models


def test_trained_predictions_needs_both_checkpoints(trained, spec):
    manifest, classifier, checkpoints = trained
    with pytest.raises(ValueError, match="teacher"):
        trained_predictions(
            manifest, "test", np.arange(9), classifier, spec, {"student": checkpoints["student"]}
        )


def test_zero_shot_adapter(tmp_path, tiny_clip, spec):
    images, gt, manifest, vocabulary = own_world(tiny_clip)
    write_embeddings(np.arange(5), images, tmp_path / "embed.parquet")
    write_embeddings(np.arange(len(vocabulary)), vocabulary, tmp_path / "classifier.parquet", "vocab_index")
    write_table(manifest.assign(image_id=np.arange(6)), tmp_path / "manifest.parquet")
    smk = SimpleNamespace(
        input=SimpleNamespace(
            embeddings=str(tmp_path / "embed.parquet"),
            classifier=str(tmp_path / "classifier.parquet"),
            manifest=str(tmp_path / "manifest.parquet"),
        ),
        output=[str(tmp_path / "zs.parquet")],
        params=SimpleNamespace(model={"arch": spec.arch, "pretrained": spec.pretrained}, templates="photo"),
        threads=1,
        log=[str(tmp_path / "zs.log")],
    )
    runpy.run_path(str(SCRIPTS / "zero_shot.py"), run_name="adapter")["main"](smk)
    table = read_table(tmp_path / "zs.parquet")
    assert table.pred_class_index.tolist() == list(np.array([10, 11, 12])[gt])
    assert "distinct vocabulary names" in (tmp_path / "zs.log").read_text()


def test_predict_adapter(tmp_path, trained, spec):
    manifest, classifier, checkpoints = trained
    write_table(manifest, tmp_path / "manifest.parquet")
    write_embeddings(np.arange(len(classifier)), classifier, tmp_path / "classifier.parquet", "vocab_index")
    smk = SimpleNamespace(
        input=SimpleNamespace(
            manifest=str(tmp_path / "manifest.parquet"),
            classifier=str(tmp_path / "classifier.parquet"),
            **checkpoints,
        ),
        output=[str(tmp_path / "test.parquet")],
        params=SimpleNamespace(
            model={"arch": spec.arch, "pretrained": spec.pretrained},
            batch_size=4,
            decoder="pil",
            runner_ups=2,
        ),
        wildcards=SimpleNamespace(split="test"),
        threads=1,
        log=[str(tmp_path / "predict.log")],
    )
    runpy.run_path(str(SCRIPTS / "predict.py"), run_name="adapter")["main"](smk)
    table = read_table(tmp_path / "test.parquet")
    assert table.image_id.tolist() == [55, 56]
    assert [len(r) for r in table.student_runner_ups] == [2, 2]
    assert "test: 2 images" in (tmp_path / "predict.log").read_text()
