import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from s3a.embed import EmbedParams, encode_images, encode_texts, text_classifier, tokenize_texts, zero_shot


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (70 + i, 90, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths.insert(2, str(corrupt))
    return paths


def test_encode_images_matches_model_and_skips_corrupt(tiny_clip, image_files, caplog):
    result = encode_images(
        tiny_clip.model, tiny_clip.preprocess, image_files, EmbedParams(batch_size=4, num_workers=0)
    )
    assert result.index.tolist() == [0, 1, 3, 4, 5]
    assert [p for p, _ in result.failed] == [image_files[2]]
    assert "could not be read" in caplog.text and image_files[2] in caplog.text
    assert result.embeddings.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        x = torch.stack(
            [tiny_clip.preprocess(Image.open(image_files[i]).convert("RGB")) for i in result.index]
        )
        expected = F.normalize(tiny_clip.model.encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5)


def test_encode_images_independent_of_batching(tiny_clip, image_files):
    a = encode_images(
        tiny_clip.model, tiny_clip.preprocess, image_files, EmbedParams(batch_size=1, num_workers=0)
    )
    b = encode_images(
        tiny_clip.model, tiny_clip.preprocess, image_files, EmbedParams(batch_size=6, num_workers=2)
    )
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_text_classifier_is_normalised_template_mean(tiny_clip):
    names, templates = ["golden_retriever", "crane"], ["a photo of a {}.", "art of the {}.", "itap of a {}."]
    weights = text_classifier(tiny_clip.model, tiny_clip.tokenizer, names, templates, batch_size=2)
    assert weights.shape == (2, 32)
    prompts = encode_texts(tiny_clip.model, tiny_clip.tokenizer, [t.format("crane") for t in templates])
    mean = prompts.mean(axis=0)
    np.testing.assert_allclose(weights[1], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ValueError, match="template"):
        text_classifier(tiny_clip.model, tiny_clip.tokenizer, names, [])


def test_zero_shot_argmax_probability_and_restriction():
    classifier = np.eye(4, dtype=np.float32)
    z = np.array([[0.8, 0.6, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8], [0.0, 0.6, 0.0, 0.8]], np.float32)
    pred, prob = zero_shot(z, classifier, device="cpu")
    assert pred.tolist() == [0, 3, 3]
    logits = 100 * z[0]
    expected = np.exp(logits[0] - logits.max()) / np.exp(logits - logits.max()).sum()
    assert prob[0] == pytest.approx(expected, rel=1e-5)
    pred, prob = zero_shot(z, classifier, candidates=np.array([1, 2]), device="cpu")
    assert pred.tolist() == [1, 2, 1]
    assert prob[2] == pytest.approx(1 / (1 + np.exp(-60)), rel=1e-6)


def test_zero_shot_chunking_is_invisible():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 8)).astype(np.float32)
    w = rng.normal(size=(30, 8)).astype(np.float32)
    a = zero_shot(z, w, chunk=7, device="cpu")
    b = zero_shot(z, w, chunk=1000, device="cpu")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert zero_shot(z[:0], w, device="cpu")[0].shape == (0,)


def test_text_classifier_fills_name_phrase_slots_and_handles_no_items(tiny_clip):
    templates = ["a photo of a {1} {0}.", "{0}, which is {1}."]
    weights = text_classifier(tiny_clip.model, tiny_clip.tokenizer, [("dog", "curly tail")], templates)
    prompts = encode_texts(
        tiny_clip.model, tiny_clip.tokenizer, ["a photo of a curly tail dog.", "dog, which is curly tail."]
    )
    mean = prompts.mean(axis=0)
    np.testing.assert_allclose(weights[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert text_classifier(tiny_clip.model, tiny_clip.tokenizer, [], templates).shape == (0, 32)


def test_tokenising_in_worker_processes_gives_the_tokens_of_one_call(tiny_clip, monkeypatch):
    """The chunks come back in order from the workers: the same tensor as one tokenizer call, for
    vocabulary prompts of every length, odd characters and a last partial chunk."""
    import os

    from s3a.vocab import TEMPLATES, build_vocabulary, fill_templates

    names = list(build_vocabulary().name[::97]) + ["café au lait", "naïve  \t spacing", "&amp; html", ""]
    prompts = fill_templates(names, TEMPLATES["imagenet7"])
    expected = tiny_clip.tokenizer(prompts)
    parent = os.getpid()
    pids = set()

    def tokenizer(texts):
        pids.add(os.getpid())
        return tiny_clip.tokenizer(texts)

    tokens = tokenize_texts(tokenizer, prompts, workers=2, chunk=97)
    assert torch.equal(tokens, expected) and len(prompts) % 97 != 0
    assert parent not in pids  # every chunk was tokenised in a worker
    # one worker, or a single chunk: in this process
    pids.clear()
    assert torch.equal(tokenize_texts(tokenizer, prompts, workers=1, chunk=97), expected)
    assert torch.equal(tokenize_texts(tokenizer, prompts[:50], workers=2, chunk=97), expected[:50])
    assert pids == {parent}


def test_trimmed_text_tower_equals_full_context(tiny_clip):
    from s3a.embed import encode_text_tokens

    texts = [
        "a photo of a dog.",
        "itap of a very very long and winding description of a golden_retriever.",
        "x",
    ]
    tokens = tiny_clip.tokenizer(texts)
    with torch.no_grad():
        full = tiny_clip.model.encode_text(tokens)
        trimmed = encode_text_tokens(tiny_clip.model, tokens)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)
    # encode_texts sorts by length internally and returns rows in the input order
    got = encode_texts(tiny_clip.model, tiny_clip.tokenizer, texts, batch_size=2, progress=False)
    np.testing.assert_allclose(got, F.normalize(full, dim=-1).numpy(), atol=1e-5)


@pytest.mark.data
def test_fast_decoder_agrees_with_pil_on_real_photos(tiny_clip, shared_data, tmp_path):
    photos = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[::25]
    assert len(photos) == 40
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    paths = [str(p) for p in photos] + [str(broken)]
    pil = encode_images(
        tiny_clip.model, tiny_clip.preprocess, paths, EmbedParams(batch_size=16, num_workers=0)
    )
    fast = encode_images(
        tiny_clip.model,
        tiny_clip.preprocess,
        paths,
        EmbedParams(batch_size=16, num_workers=1, decoder="fast"),
    )
    np.testing.assert_array_equal(pil.index, fast.index)
    assert [p for p, _ in fast.failed] == [str(broken)]
    cosine = np.sum(pil.embeddings * fast.embeddings, axis=1)
    assert cosine.mean() >= 0.99, cosine.mean()
    assert cosine.min() >= 0.95, cosine.min()


def test_fast_decoder_reads_size_and_normalisation(tiny_clip):
    from s3a.embed import FastDecode

    fast = FastDecode.from_transform(tiny_clip.preprocess)
    assert fast.size == 64 and fast.mean[0] == pytest.approx(0.48145466)
    with pytest.raises(ValueError, match="decoder"):
        EmbedParams(decoder="gpu-magic")


def _odd_images(tmp_path) -> list[str]:
    """A colour JPEG, a greyscale JPEG, a CMYK JPEG, a PNG with alpha, a corrupt JPEG, a colour JPEG."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    paths = [tmp_path / n for n in ("a.jpg", "grey.jpg", "cmyk.jpg", "alpha.png", "broken.jpg", "b.jpg")]
    Image.fromarray(rgb).save(paths[0], quality=95)
    Image.fromarray(rgb[..., 0]).save(paths[1], quality=95)
    Image.fromarray(rgb).convert("CMYK").save(paths[2], quality=95)
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(paths[3])
    paths[4].write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    Image.fromarray(rgb[::-1, :80]).save(paths[5], quality=95)
    return [str(p) for p in paths]


def _codec_or_skip(codec: str, monkeypatch) -> None:
    from s3a.decode import load_nvimgcodec

    if codec == "nvimgcodec" and load_nvimgcodec() is None:
        pytest.skip("nvImageCodec is not installed")
    monkeypatch.setenv("S3A_GPU_JPEG", codec)


@pytest.mark.parametrize("codec", ["torchvision", "nvimgcodec"])
def test_gpu_decoder_reads_every_format_and_reports_corrupt_files(tiny_clip, tmp_path, codec, monkeypatch):
    """The ``gpu`` decoder's code path on the CPU (the codecs' CPU decoders stand in for the GPU ones):
    formats the batched decode cannot take fall back without losing the order, and a corrupt file is
    reported."""
    _codec_or_skip(codec, monkeypatch)
    paths = _odd_images(tmp_path)
    pil = encode_images(
        tiny_clip.model, tiny_clip.preprocess, paths, EmbedParams(batch_size=6, num_workers=0)
    )
    gpu = encode_images(
        tiny_clip.model, tiny_clip.preprocess, paths, EmbedParams(batch_size=6, num_workers=1, decoder="gpu")
    )
    assert gpu.index.tolist() == pil.index.tolist() == [0, 1, 2, 3, 5]
    assert [p for p, _ in gpu.failed] == [paths[4]]
    cosine = np.sum(pil.embeddings * gpu.embeddings, axis=1)
    assert cosine.min() >= 0.99, cosine
    # decoded ahead in a background thread (the default) or in this one: the same result, bit for bit
    params = EmbedParams(batch_size=2, num_workers=1, decoder="gpu", prefetch=0)
    inline = encode_images(tiny_clip.model, tiny_clip.preprocess, paths, params)
    ahead = encode_images(
        tiny_clip.model, tiny_clip.preprocess, paths, params.model_copy(update={"prefetch": 2})
    )
    assert (
        ahead.index.tolist() == inline.index.tolist() == gpu.index.tolist() and ahead.failed == inline.failed
    )
    np.testing.assert_array_equal(ahead.embeddings, inline.embeddings)


def test_ahead_hands_over_in_order_raises_the_threads_error_and_stops_with_its_consumer():
    import threading

    from s3a.decode import ahead

    def failing():
        yield from range(3)
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in ahead(failing(), torch.device("cpu"), depth=2):
            got.append(item)
    assert got == [0, 1, 2]
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield torch.full((2,), n)
                n += 1
        finally:
            closed.set()

    before = threading.active_count()
    stream = ahead(endless(), torch.device("cpu"), depth=3)
    assert [int(next(stream)[0]) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()  # the consumer stops early: the thread ends and the source is closed
    assert closed.wait(5) and threading.active_count() == before


def test_resize_center_crop_matches_torchvision_geometry():
    from torchvision.transforms import v2

    from s3a.embed import resize_center_crop

    rng = np.random.default_rng(4)
    images = [
        torch.from_numpy(rng.integers(0, 255, (3, h, w), dtype=np.uint8))
        for h, w in [(75, 100), (100, 75), (64, 64), (75, 100), (301, 97)]
    ]
    got = resize_center_crop(images, 64)
    assert got.shape == (5, 3, 64, 64) and got.dtype == torch.uint8
    reference = v2.Compose(
        [v2.Resize(64, interpolation=v2.InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(64)]
    )
    for image, crop in zip(images, got, strict=True):
        expected = reference(image.float()).round().clamp(0, 255)
        assert (crop.float() - expected).abs().max() <= 1.0


def test_gpu_decoder_rejects_unknown_codec(monkeypatch):
    from s3a.embed import GpuDecode

    monkeypatch.setenv("S3A_GPU_JPEG", "magic")
    with pytest.raises(ValueError, match="S3A_GPU_JPEG"):
        GpuDecode(64, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.gpu
@pytest.mark.data
@pytest.mark.parametrize("codec", ["torchvision", "nvimgcodec"])
def test_gpu_decoder_agrees_with_pil_on_real_photos_vit_b16(shared_data, codec, monkeypatch):
    """GPU JPEG decoding vs the exact PIL path, random-weight ViT-B-16 at 224 px (needs a GPU)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (nvJPEG)")
    _codec_or_skip(codec, monkeypatch)
    from s3a.models import ModelSpec, load_clip

    clip = load_clip(ModelSpec("ViT-B-16", None), device="cuda")
    photos = [str(p) for p in sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:200]]
    assert len(photos) >= 100
    pil = encode_images(clip.model, clip.preprocess, photos, EmbedParams(batch_size=64, num_workers=4))
    gpu = encode_images(
        clip.model, clip.preprocess, photos, EmbedParams(batch_size=64, num_workers=4, decoder="gpu")
    )
    np.testing.assert_array_equal(pil.index, gpu.index)
    cosine = np.sum(pil.embeddings * gpu.embeddings, axis=1)
    print(
        f"gpu ({codec}) vs pil on {len(photos)} photos: "
        f"mean cosine {cosine.mean():.5f}, min {cosine.min():.5f}"
    )
    assert cosine.mean() >= 0.999, cosine.mean()


def test_text_vectors_are_fp32_inside_an_autocast_region(tiny_clip):
    """The classifier and phrase vectors are built in fp32 even when the caller runs under autocast."""
    texts = ["a photo of a dog.", "a photo of a small red car parked on a street."]
    reference = encode_texts(tiny_clip.model, tiny_clip.tokenizer, texts, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = encode_texts(tiny_clip.model, tiny_clip.tokenizer, texts, progress=False)
    np.testing.assert_allclose(inside, reference, atol=1e-6)


@pytest.mark.gpu
def test_text_and_zero_shot_on_cuda_equal_fp32_cpu(tiny_checkpoint):
    """On CUDA the image encoder may use bf16, but text vectors and name logits stay fp32."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from s3a.embed import vocabulary_logits
    from s3a.models import TINY_ARCH, ModelSpec, load_clip

    texts = [f"a photo of a {name}." for name in ("dog", "cat", "tram", "maillot", "crane")]
    cpu = load_clip(ModelSpec(TINY_ARCH, str(tiny_checkpoint)), device="cpu")
    gpu = load_clip(ModelSpec(TINY_ARCH, str(tiny_checkpoint)), device="cuda")
    reference = encode_texts(cpu.model, cpu.tokenizer, texts, progress=False)
    on_cuda = encode_texts(gpu.model, gpu.tokenizer, texts, progress=False)
    np.testing.assert_allclose(on_cuda, reference, atol=1e-5)
    features = torch.nn.functional.normalize(torch.randn(64, 32), dim=-1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = vocabulary_logits(features.cuda(), torch.from_numpy(reference).cuda())
    assert logits.dtype == torch.float32
    expected = 100 * features @ torch.from_numpy(reference).T
    torch.testing.assert_close(logits.cpu(), expected, atol=1e-4, rtol=0)


def test_split_images_is_the_set_up_of_the_image_rules(tiny_checkpoint, tmp_path):
    """One split's rows, the model and the reader settings; an all-unreadable split is one line."""
    import pandas as pd

    from s3a.embed import split_images
    from s3a.io import write_table
    from s3a.models import TINY_ARCH

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [str(folder / f"{i}.jpg") for i in range(3)]
    manifest = pd.DataFrame(
        {"image_id": [0, 1, 2], "path": paths, "split": ["train", "test", "train"], "class_index": 0}
    )
    write_table(manifest, tmp_path / "manifest.parquet")
    model = {"arch": TINY_ARCH, "pretrained": str(tiny_checkpoint)}
    job = split_images(str(tmp_path / "manifest.parquet"), "train", model, 8, "pil", threads=3)
    assert job.rows.image_id.tolist() == [0, 2] and job.params.num_workers == 2
    assert job.params.batch_size == 8 and job.clip.model is not None
    assert job.unreadable(1, "log.txt") is None
    assert job.unreadable(0, "log.txt") == f"no readable image in {folder}: 2 unreadable files, see log.txt"
    empty = split_images(str(tmp_path / "manifest.parquet"), "val", model, 8, "pil", threads=1)
    assert empty.params.num_workers == 0 and empty.unreadable(0, "log.txt") is None
