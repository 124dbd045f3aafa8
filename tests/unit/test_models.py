import open_clip
import pytest
import torch

from s3a.models import TINY_ARCH, ModelError, ModelSpec, load_clip, save_random_checkpoint


def test_checkpoint_loads_through_pretrained_path(tiny_checkpoint, tiny_clip):
    saved = torch.load(tiny_checkpoint, map_location="cpu")
    loaded = tiny_clip.model.state_dict()
    assert saved.keys() == loaded.keys()
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value)
    assert tiny_clip.model.visual.output_dim == 32
    assert not tiny_clip.model.training


def test_random_checkpoints_depend_on_seed(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        save_random_checkpoint(TINY_ARCH, tmp_path / f"{name}.pt", seed=seed)
    a, b, c = (torch.load(tmp_path / f"{n}.pt") for n in "abc")
    key = "visual.conv1.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


def test_tokenizer_and_transform_match_architecture(tiny_clip):
    tokens = tiny_clip.tokenizer(["a photo of a dog."])
    assert tokens.shape == (1, 77)
    from PIL import Image

    x = tiny_clip.preprocess(Image.new("RGB", (120, 80)))
    assert tuple(x.shape) == (3, 64, 64)


def test_missing_checkpoint_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="does not exist") as err:
        load_clip(ModelSpec(TINY_ARCH, str(missing)))
    assert str(missing) in str(err.value)


def test_unknown_architecture():
    with pytest.raises(ModelError, match="not an open_clip architecture"):
        load_clip(ModelSpec("ViT-Q-99", None))


def test_unknown_pretrained_tag_lists_known_tags():
    with pytest.raises(ModelError, match="openai"):
        load_clip(ModelSpec("ViT-B-16", "openia"))


def test_download_failure_is_one_clear_error(monkeypatch):
    """The real download path up to the network boundary: open_clip's downloader fails."""

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(ModelError, match="network is unreachable.*internet") as err:
        load_clip(ModelSpec("ViT-B-16", "openai"), device="cpu")
    assert "ViT-B-16" in str(err.value)
