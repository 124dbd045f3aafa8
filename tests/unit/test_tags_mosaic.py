"""Data tier (MULTILABEL_SPEC 11.2 run as a plain folder): tags of real-photo mosaics recover the planted
names well above chance, with no label anywhere in the tagging.

The mosaics (``mosaic`` builder on ``../shared/data/imagenet-sample``, K = 20 classes, 120 mosaics of
336 px, 2.8 photos each on average) are listed by the ``folder`` builder as a folder of your own photos
would be; their labels are kept aside for the comparison only. The "CLIP" is the weightless stand-in
pixel encoder of ``test_multilabel_mosaic`` (joint RGB histograms), centred on the mean over all 1,000
sample photos; the vocabulary is those 1,000 photos, each named by its class, so the tags must find
the 20 planted names among 1,000. Chance: each photo's tags (as many as it got) drawn at random from
the discovered names, the expected precision and recall.

Measured (default ``names.tags``: cluster_vote, 40 names, threshold 0.5, at most 5 tags), mosaic
seeds 0 / 1 / 2: precision 0.903 / 0.906 / 0.881, recall 0.832 / 0.828 / 0.776, against chance
precision 0.080 / 0.075 / 0.070 and recall 0.074 / 0.068 / 0.062; discovery found 20 / 20 / 18 of
the 20 planted names among its 40; 2.5-2.7 tags per photo (2.8 planted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_multilabel_mosaic import StandIn

from s3a.data.folders import build_folder
from s3a.io import write_embeddings
from s3a.multilabel.data.mosaic import build_mosaic
from s3a.multilabel.openvocab.tags import TagParams, image_tags
from s3a.multilabel.views.tables import tiles_table

pytestmark = [pytest.mark.slow, pytest.mark.data]
KMEANS = {"n_init": 3, "max_iter": 100, "seed": 0, "backend": "torch"}


def test_tags_of_a_mosaic_folder_recover_the_planted_names(shared_data, tmp_path):
    source = shared_data / "imagenet-sample"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    data = build_mosaic(str(tmp_path / "build"), str(source), classes=20, canvas=336, n_train=120, n_test=0)
    folder = tmp_path / "My mosaics"  # a plain folder: file names only, the labels stay aside
    shutil.copytree(tmp_path / "build" / "train", folder)
    planted_by_file = {
        Path(path).name: set(data.label_set.set_index("label_index").loc[group.label_index, "name"])
        for path, group in data.labels.merge(data.manifest, on="image_id").groupby("path")
    }
    manifest = build_folder(str(folder))
    assert len(manifest) == 120 and set(manifest.class_name) == {manifest.class_name.iloc[0]}  # unlabeled

    photos = sorted(str(p) for p in source.glob("*.JPEG"))
    encoder = StandIn(photos)  # the vocabulary: every sample photo, named by its class
    vocab_names = np.array([Path(p).stem.split("_", 1)[1] for p in photos])
    glob, tiles = encoder.views(manifest.path.tolist())
    ids = manifest.image_id.to_numpy()
    write_embeddings(ids, glob, tmp_path / "embed.parquet")
    pq.write_table(tiles_table(ids, np.zeros((len(ids), 9, 4), np.int32), tiles), tmp_path / "tiles.parquet")

    tags, found = image_tags(
        str(tmp_path / "embed.parquet"),
        str(tmp_path / "tiles.parquet"),
        np.arange(len(photos)),
        encoder.labels,
        TagParams(),
        kmeans=KMEANS,
        device="cpu",
    )
    discovered = set(vocab_names[found.vocab_index])
    tp = chance_tp = n_tags = n_planted = 0
    for image_id, path in zip(manifest.image_id, manifest.path, strict=True):
        planted = planted_by_file[Path(path).name]
        got = set(vocab_names[tags.vocab_index[tags.image_id == image_id]])
        tp += len(got & planted)
        n_tags += len(got)
        n_planted += len(planted)
        chance_tp += len(got) * len(planted & discovered) / len(discovered)
    precision, recall = tp / n_tags, tp / n_planted
    chance_precision, chance_recall = chance_tp / n_tags, chance_tp / n_planted
    figures = (
        precision,
        recall,
        chance_precision,
        chance_recall,
        len(discovered & set().union(*planted_by_file.values())),
    )
    # measured on seed 0: precision 0.903, recall 0.832, chance 0.080 / 0.074; 20 of 20 names discovered
    assert precision >= chance_precision + 0.5 and recall >= chance_recall + 0.5, figures
    assert figures[-1] >= 16, figures
