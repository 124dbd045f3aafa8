"""A folder with fewer images than the training batch trains with a batch of all its images."""

from __future__ import annotations

import pytest

from s3a.train.__main__ import fit_batch
from s3a.train.params import TrainParams


def test_batch_shrinks_to_the_images_of_a_small_folder(caplog):
    params = TrainParams(batch_size=128)
    assert fit_batch(params, 500) is params
    with caplog.at_level("WARNING"):
        assert fit_batch(params, 10).batch_size == 10
    assert "fewer than train.batch_size 128: training with a batch of 10" in caplog.text
    assert fit_batch(params, 11, world_size=4).batch_size == 8  # divisible by the processes
    with pytest.raises(ValueError, match="2 images to train on: fewer than the 4 training processes"):
        fit_batch(params, 2, world_size=4)
