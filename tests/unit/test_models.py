from pathlib import Path

import open_clip
import pytest
import torch

from s3a.models import (
    TINY_ARCH,
    ModelError,
    ModelSpec,
    activation_problem,
    build_config,
    load_clip,
    save_random_checkpoint,
    uses_quick_gelu,
)


def build_unweighted(spec: ModelSpec):
    """``load_clip(spec, device="meta", load_weights=False)`` with meta as torch's default device as
    well, so that open_clip allocates and initialises no parameters on the CPU first (1 s per ViT-B, the
    largest part of the unit tier's model tests); the modules, activations and preprocessing it builds
    are the same."""
    with torch.device("meta"):
        return load_clip(spec, device="meta", load_weights=False)


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


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14"])
def test_openai_weights_get_quick_gelu_and_their_preprocessing(arch):
    """open_clip alone builds GELU for these and only warns; the weights were trained with QuickGELU."""
    tag = open_clip.get_pretrained_cfg(arch, "openai")
    assert tag["quick_gelu"] is True  # the registry entry the check relies on (no download)
    clip = build_unweighted(ModelSpec(arch, "openai"))
    assert uses_quick_gelu(clip.model)
    assert not any(isinstance(m, torch.nn.GELU) for m in clip.model.modules())
    cfg = clip.preprocess_cfg
    assert cfg["mean"] == pytest.approx(tag["mean"]) and cfg["std"] == pytest.approx(tag["std"])
    assert cfg["size"] == 224 and cfg["interpolation"] == "bicubic"


def test_laion_weights_keep_gelu():
    spec = ModelSpec("ViT-B-16", "laion2b_s34b_b88k")
    assert not open_clip.get_pretrained_cfg(spec.arch, spec.pretrained).get("quick_gelu", False)
    clip = build_unweighted(spec)
    assert not uses_quick_gelu(clip.model)
    assert any(isinstance(m, torch.nn.GELU) for m in clip.model.modules())


def test_a_model_key_a_user_adds_follows_its_tag():
    """Any architecture with an OpenAI tag, not only the two of config.yaml."""
    assert build_config(ModelSpec("ViT-B-32", "openai")).quick_gelu
    assert build_config(ModelSpec("RN50", "openai")).quick_gelu
    assert not build_config(ModelSpec("ViT-B-32", "laion2b_s34b_b79k")).quick_gelu
    # a local file says nothing: the architecture's default unless the entry states it
    assert not build_config(ModelSpec(TINY_ARCH, None)).quick_gelu
    assert build_config(ModelSpec(TINY_ARCH, None, quick_gelu=True)).quick_gelu


@pytest.mark.slow
def test_tag_preprocessing_differs_from_openai_and_is_used():
    """A tag with its own normalisation (not the OpenAI constants) reaches the built model."""
    spec = ModelSpec("ViT-L-14", "laion2b_s32b_b82k")
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained)
    assert tuple(cfg["mean"]) != OPENAI_MEAN
    built = build_unweighted(spec)
    assert built.preprocess_cfg["mean"] == pytest.approx(cfg["mean"])
    assert built.preprocess_cfg["std"] == pytest.approx(cfg["std"])
    assert not uses_quick_gelu(built.model)


def test_unresolvable_activation_mismatch_is_an_error():
    with pytest.raises(ModelError, match="quick_gelu is set to False.*QuickGELU"):
        build_config(ModelSpec("ViT-B-16", "openai", quick_gelu=False))
    with pytest.raises(ModelError, match="use the architecture 'ViT-B-16'"):
        build_config(ModelSpec("ViT-B-16-quickgelu", None, quick_gelu=False))


def test_tiny_model_preprocessing_config(tiny_clip):
    cfg = tiny_clip.preprocess_cfg
    assert cfg["size"] == 64
    assert cfg["mean"] == pytest.approx(OPENAI_MEAN) and cfg["std"] == pytest.approx(OPENAI_STD)


def _activation(model: torch.nn.Module) -> set[type]:
    """The activation classes of a built model's transformer MLPs (QuickGELU, GELU)."""
    from open_clip.transformer import QuickGELU

    return {type(m) for m in model.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))}


def test_local_file_of_an_openai_architecture_needs_quick_gelu(tmp_path):
    """The file says nothing about its activation and GELU would load OpenAI's weights silently."""
    weights = tmp_path / "ViT-B-16.pt"
    weights.write_bytes(b"")  # never read: the entry is refused before any weights are
    for spec in (ModelSpec("ViT-B-16", str(weights)), ModelSpec("RN50", str(weights))):
        with pytest.raises(ModelError, match="set quick_gelu") as err:
            load_clip(spec, device="meta", load_weights=False)
        message = str(err.value)
        assert "`quick_gelu: true`" in message and "`quick_gelu: false`" in message
        assert str(weights) in message and spec.arch in message
        assert "tags openai" in message  # the QuickGELU tags, from open_clip's table
    gelu_part = str(activation_problem(ModelSpec("ViT-B-16", str(weights)))).split("`quick_gelu: false`")[1]
    assert "laion2b_s34b_b88k" in gelu_part and "openai" not in gelu_part


@pytest.mark.parametrize(
    ("arch", "pretrained", "quick_gelu", "expected"),
    [
        ("ViT-B-16", "file", True, "QuickGELU"),  # a local file of OpenAI weights, stated
        ("ViT-B-16", "file", False, "GELU"),  # a local file of GELU weights (e.g. LAION's), stated
        ("ViT-B-16-quickgelu", "file", None, "QuickGELU"),  # the architecture fixes it
        ("ViT-B-32", "openai", None, "QuickGELU"),  # a tag: open_clip's table decides
        ("ViT-B-32", "laion2b_s34b_b79k", None, "GELU"),
        ("ViT-B-32-256", "file", None, "GELU"),  # no openai tag: GELU is its only activation
    ],
)
def test_safe_entries_build_the_activation_of_their_weights(tmp_path, arch, pretrained, quick_gelu, expected):
    from open_clip.transformer import QuickGELU

    if pretrained == "file":
        pretrained = str(tmp_path / "weights.safetensors")
        Path(pretrained).write_bytes(b"")
    spec = ModelSpec(arch, pretrained, quick_gelu=quick_gelu)
    assert activation_problem(spec) is None
    clip = build_unweighted(spec)
    assert _activation(clip.model) == {QuickGELU if expected == "QuickGELU" else torch.nn.GELU}


def test_tiny_test_model_from_its_file_builds_gelu(tiny_checkpoint, tiny_clip):
    assert activation_problem(ModelSpec(TINY_ARCH, str(tiny_checkpoint))) is None
    assert _activation(tiny_clip.model) == {torch.nn.GELU}
