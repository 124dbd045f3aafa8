"""Data tier (MULTILABEL_SPEC 11.2): CDUL on real-photo mosaics with a stand-in pixel encoder.

The stand-in encoder reads pixels and has no weights: a view is resized to 112 x 112 (bilinear),
turned into a joint RGB histogram (8 bins per channel, 512-d) normalised to sum 1, square-rooted,
centred on the mean over the K class photos and L2-normalised. The label "text" embeddings are the
same encoder on each class photo fitted (cover, centre crop) to 224 x 224. The global view is the
whole mosaic resized to 224 x 224 (bicubic); the local views are the 3 x 3 tiles of
:func:`s3a.multilabel.views.tiles.tile_boxes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.cdul.align import LabelUpdateParams
from s3a.multilabel.cdul.linear import LinearParams, linear_features, predict_linear, train_linear
from s3a.multilabel.data.mosaic import build_mosaic, cover_resize
from s3a.multilabel.data.tables import label_matrix
from s3a.multilabel.metrics import mean_average_precision
from s3a.multilabel.views.tiles import tile_boxes

pytestmark = [pytest.mark.slow, pytest.mark.data]


def _hist(img: Image.Image) -> np.ndarray:
    px = np.asarray(img.convert("RGB").resize((112, 112), Image.BILINEAR)) // 32
    codes = (px[..., 0].astype(np.int64) * 8 + px[..., 1]) * 8 + px[..., 2]
    h = np.bincount(codes.ravel(), minlength=512).astype(np.float64)
    return np.sqrt(h / h.sum())


class StandIn:
    """The pixel encoder of the module docstring, centred on the class photos ``photos``."""

    def __init__(self, photos: list[str]) -> None:
        protos = []
        for p in photos:
            with Image.open(p) as img:
                protos.append(_hist(cover_resize(img.convert("RGB"), 224, 224)))
        self.mean = np.mean(protos, axis=0)
        self.labels = self._unit(np.array(protos))

    def _unit(self, h: np.ndarray) -> np.ndarray:
        x = h - self.mean
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def views(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(global (N, 512), tiles (N, 9, 512))`` unit embeddings."""
        glob, tiles = [], []
        for p in paths:
            with Image.open(p) as img:
                img = img.convert("RGB")
                glob.append(_hist(img.resize((224, 224), Image.BICUBIC)))
                tiles.append([_hist(img.crop(b)) for b in tile_boxes(img.width, img.height, 3, p)])
        return self._unit(np.array(glob)), self._unit(np.array(tiles))


def _photo_of(source: Path, wnid: str) -> str:
    return str(next(source.glob(f"{wnid}_*")))


def _setup(shared_data, root, **kw):
    source = shared_data / "imagenet-sample"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    data = build_mosaic(str(root), str(source), classes=20, canvas=336, **kw)
    enc = StandIn([_photo_of(source, w) for w in data.label_set["wnid"]])
    glob, tiles = enc.views(data.manifest["path"].tolist())
    y, _, _ = label_matrix(data.labels, data.manifest["image_id"].to_numpy(), 20)
    return data, enc, glob, tiles, y


@pytest.fixture(scope="module")
def mosaics(shared_data, tmp_path_factory):
    return _setup(shared_data, tmp_path_factory.mktemp("mosaic"), n_train=120, n_test=120, seed=0)


def test_local_views_recover_the_objects(mosaics):
    data, enc, glob, tiles, y = mosaics
    v = view_scores(glob, tiles, enc.labels)
    _, final = aggregate(v)
    m_g, m_a, m_f = (mean_average_precision(y, s)[0] for s in (v.s_global, v.s_alpha, final))
    # measured (canvas 336, 240 mosaics, seeds 0/1/2): S_g 87.7/93.0/92.2, alpha 98.3/96.1/99.2,
    # S_final 98.5/98.7/99.2 (the fixture uses seed 0)
    assert m_f >= m_g + 5 and m_a >= 97, (m_g, m_a, m_f)


def test_repro_temperature_regresses(mosaics):
    data, enc, glob, tiles, y = mosaics
    p = PseudoParams(temperature="repro", zeta=0.1)
    v = view_scores(glob, tiles, enc.labels, p)
    agg, final = aggregate(v, p)
    np.testing.assert_array_equal(agg, v.s_beta)
    m_g, m_f = mean_average_precision(y, v.s_global)[0], mean_average_precision(y, final)[0]
    assert m_f < m_g, (m_g, m_f)


def test_single_object_mosaics_gain_nothing(shared_data, tmp_path):
    data, enc, glob, tiles, y = _setup(
        shared_data, tmp_path, n_train=60, n_test=0, seed=1, layout_probs=(1.0, 0, 0, 0, 0)
    )
    v = view_scores(glob, tiles, enc.labels)
    _, final = aggregate(v)
    m_g, m_f = mean_average_precision(y, v.s_global)[0], mean_average_precision(y, final)[0]
    assert abs(m_f - m_g) <= 1, (m_g, m_f)


def test_linear_learner_improves_on_its_start_and_on_zero_shot(mosaics):
    """Trained on the train mosaics' S_final (no ground truth), tested on the test mosaics.

    Measured on seeds 0/1/2 (features = global + max-pooled tiles, Adam lr 3e-2, 100 epochs, one
    label update): test mAP of the head at its start 87.4/90.9/89.9 -> trained 95.3/95.5/94.1,
    zero-shot S_g on the test mosaics 87.1/94.1/92.0 (the fixture uses seed 0). Ten label updates
    instead of one pull the labels towards the weaker network (train label mAP 99.0 -> 97.1 on
    seed 0, against 98.0 after one): the reason for ``max_updates``.
    """
    data, enc, glob, tiles, y = mosaics
    train = (data.manifest["split"] == "train").to_numpy()
    test = ~train
    x = linear_features(glob, tiles)
    _, s0 = aggregate(view_scores(glob[train], tiles[train], enc.labels))
    params = LinearParams(epochs=100, batch_size=32, lr=3e-2)
    res = train_linear(
        x[train],
        s0,
        enc.labels,
        params,
        LabelUpdateParams(every=10, max_updates=1),
        gt=y[train],
        progress=False,
    )
    start = train_linear(
        x[train],
        s0,
        enc.labels,
        LinearParams(epochs=1, lr=1e-12),
        LabelUpdateParams(enabled=False),
        progress=False,
    )
    m_start = mean_average_precision(y[test], predict_linear(start.head, x[test]))[0]
    m_zs = mean_average_precision(y[test], view_scores(glob[test], tiles[test], enc.labels).s_global)[0]
    m_lin = mean_average_precision(y[test], predict_linear(res.head, x[test]))[0]
    assert m_lin >= m_start + 4 and m_lin >= m_zs + 4, (m_start, m_zs, m_lin)
    assert res.history["n_updates"].iloc[-1] == 1
