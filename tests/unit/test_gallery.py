"""The gallery of discovered classes: card contents, typical images, and the page in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from s3a.gallery import GalleryParams, gallery_cards, render_html, representative_images, write_gallery

REPO = Path(__file__).resolve().parents[2]
#: where the browser test keeps its screenshot (CI can collect the folder)
ARTIFACTS = Path(os.environ.get("S3A_TEST_ARTIFACTS", REPO / "test-artifacts"))


def test_typical_images_are_nearest_the_cluster_mean():
    rng = np.random.default_rng(0)
    centre = np.zeros(8)
    centre[0] = 1.0
    spread = np.linspace(0.05, 2.0, 20)  # image i lies further from the centre as i grows
    x = centre + spread[:, None] * rng.normal(size=(20, 8)) / np.sqrt(8)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(100, 120)
    picks = representative_images(ids, x, np.zeros(20, np.int64), GalleryParams(typical=3, random=4, seed=1))
    typical, drawn = picks[0]
    cosine = x @ (x.mean(0) / np.linalg.norm(x.mean(0)))
    np.testing.assert_array_equal(typical, ids[np.argsort(-cosine)[:3]])
    assert len(drawn) == 4 and not set(drawn) & set(typical) and set(drawn) <= set(ids)
    again = representative_images(ids, x, np.zeros(20, np.int64), GalleryParams(typical=3, random=4, seed=1))
    np.testing.assert_array_equal(again[0][1], drawn)  # seeded
    small = representative_images(ids[:2], x[:2], np.array([0, 1]), GalleryParams(typical=3, random=4))
    assert {c: (len(t), len(r)) for c, (t, r) in small.items()} == {0: (1, 0), 1: (1, 0)}


def _gallery_inputs(tmp_path: Path, n_per: int = 6):
    """Two clusters of real JPEG files: 'tabby' (cats) and 'golden_retriever' (mostly dogs)."""
    vocabulary = pd.DataFrame(
        {
            "vocab_index": [0, 1, 2],
            "name": ["tabby", "golden_retriever", "fox"],
            "synset_ids": [["n02123045"], ["n02099601"], ["n02119022"]],
            "definitions": [["a cat with a striped coat"], ["an English breed of dog"], ["alert carnivore"]],
        }
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2 * n_per):
        path = tmp_path / "images" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        cls = "tabby" if i < n_per or i == 2 * n_per - 1 else "golden_retriever"
        wnid = "n02123045" if cls == "tabby" else "n02099601"
        rows.append((i, str(path), "train", int(cls != "tabby"), cls, wnid))
    manifest = pd.DataFrame(rows, columns=["image_id", "path", "split", "class_index", "class_name", "wnid"])
    cluster = np.array([0] * n_per + [1] * n_per)
    structural = pd.DataFrame({"image_id": np.arange(2 * n_per), "vocab_index": cluster, "cluster": cluster})
    descriptions = pd.DataFrame(
        {
            "cluster": [0, 0, 1, 1],
            "name": ["tabby", "tabby", "golden_retriever", "fox"],
            "phrase": ["striped cat", "domestic cat", "friendly dog", "red fur"],
            "count": [1, 3, 2, 2],
        }
    )
    names = pd.DataFrame(
        {
            "image_id": np.arange(2 * n_per),
            "name": ["tabby"] * n_per + ["golden_retriever", "fox"] * (n_per // 2),
        }
    )
    emb = rng.normal(size=(2 * n_per, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return manifest, vocabulary, structural, descriptions, names, (np.arange(2 * n_per), emb)


def test_cards_carry_name_definition_phrases_size_and_majority(tmp_path):
    inputs = _gallery_inputs(tmp_path)
    cards = gallery_cards(*inputs, GalleryParams(typical=2, random=2), labelled=True)
    by_name = {c.name: c for c in cards}
    cat, dog = by_name["tabby"], by_name["golden_retriever"]
    assert cat.size == dog.size == 6
    assert cat.definitions == ("a cat with a striped coat",)
    assert cat.phrases == (("domestic cat", 3), ("striped cat", 1))  # most frequent first
    assert dog.phrases == (("friendly dog", 2),)  # only the phrases of the chosen name
    assert cat.true_class == "tabby" and cat.match is True
    assert dog.true_class == "golden_retriever" and dog.match is True
    assert cat.final_agreement == 1.0 and dog.final_agreement == pytest.approx(0.5)
    assert len(cat.typical) == 2 and len(cat.random) == 2
    unlabeled = gallery_cards(*inputs, GalleryParams(typical=2, random=2), labelled=False)
    assert all(c.true_class is None and c.match is None for c in unlabeled)


def check_in_chromium(page: Path, screenshot: Path) -> dict:
    """Load ``page`` from disk in headless chromium; return what the page showed.

    A copy of the page with a probe script first in ``<head>`` records every error event (script
    errors and resources that failed to load) and ``console.error`` call, and on ``load`` writes the
    number of cards, the images and the ones with ``naturalWidth == 0`` into the DOM, which
    ``--dump-dom`` prints. The page itself is then screenshotted, and chromium's console log of both
    runs is returned too.
    """
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if os.environ.get("S3A_REQUIRE_BROWSER") == "1":
            pytest.fail("S3A_REQUIRE_BROWSER=1 but chromium is not installed (run ci/browser.sh)")
        pytest.skip("chromium is not installed (apt-get install -y chromium; `make test` installs it)")
    probe = (
        "<script>window.__errors=[];"
        "addEventListener('error',e=>__errors.push(String(e.message||(e.target&&e.target.src)||e)),true);"
        "const __ce=console.error;console.error=(...a)=>{__errors.push(a.join(' '));__ce(...a)};"
        "addEventListener('load',()=>{const im=[...document.images];const p=document.createElement('pre');"
        "p.id='s3a-probe';p.textContent=JSON.stringify({cards:document.querySelectorAll('section.card').length,"
        "images:im.length,broken:im.filter(i=>!(i.complete&&i.naturalWidth>0)).map(i=>i.getAttribute('src')),"
        "errors:__errors});document.body.appendChild(p)});</script>"
    )
    probed = page.with_name("_probe.html")
    probed.write_text(
        page.read_text(encoding="utf-8").replace("<head>", "<head>" + probe, 1), encoding="utf-8"
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    try:
        dom = subprocess.run(
            [browser, *flags, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        probed.unlink()
    found = re.search(r'<pre id="s3a-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page never finished loading:\n{dom.stderr[-3000:]}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = subprocess.run(
        [browser, *flags, "--window-size=1200,1600", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(html.unescape(found.group(1)))
    result["console"] = [
        line for line in (dom.stderr + shot.stderr).splitlines() if "CONSOLE" in line and "file://" in line
    ]
    return result


@pytest.mark.slow
def test_gallery_page_in_a_real_browser(tmp_path):
    inputs = _gallery_inputs(tmp_path)
    params = GalleryParams(typical=3, random=2, thumbnail_px=48)
    cards = gallery_cards(*inputs, params, labelled=True)
    manifest = inputs[0]
    out = tmp_path / "gallery"
    paths = dict(zip(manifest.image_id, manifest.path, strict=True))
    n = write_gallery(cards, paths, out, params, title="test <gallery>")
    assert n == 10 and len(list((out / "thumbs").glob("*.jpg"))) == 10
    assert max(Image.open(p).size[0] for p in (out / "thumbs").glob("*.jpg")) <= 48
    text = (out / "index.html").read_text()
    assert "test &lt;gallery&gt;" in text and "majority true class: tabby" in text
    shutil.rmtree(tmp_path / "images")  # the page needs nothing but its own folder
    moved = shutil.move(out, tmp_path / "elsewhere")
    result = check_in_chromium(Path(moved) / "index.html", ARTIFACTS / "gallery.png")
    assert result["cards"] == 2
    assert result["images"] == 10 and result["broken"] == []
    assert result["errors"] == [] and result["console"] == []
    assert (ARTIFACTS / "gallery.png").stat().st_size > 0


@pytest.mark.slow
def test_a_missing_thumbnail_is_caught_by_the_browser_check(tmp_path):
    """The browser check can fail: a deleted thumbnail shows up as broken and as an error."""
    inputs = _gallery_inputs(tmp_path)
    params = GalleryParams(typical=1, random=0, thumbnail_px=32)
    cards = gallery_cards(*inputs, params, labelled=False)
    out = tmp_path / "gallery"
    write_gallery(cards, dict(zip(inputs[0].image_id, inputs[0].path, strict=True)), out, params, title="t")
    victim = next((out / "thumbs").glob("*.jpg"))
    victim.unlink()
    result = check_in_chromium(out / "index.html", tmp_path / "shot.png")
    assert result["broken"] == [f"thumbs/{victim.name}"] and result["errors"]


def test_build_gallery_adapter(tmp_path):
    import runpy
    from types import SimpleNamespace

    from s3a.io import write_embeddings, write_table

    manifest, vocabulary, structural, descriptions, names, (ids, emb) = _gallery_inputs(tmp_path)
    files = {}
    for key, table in {
        "manifest": manifest,
        "vocabulary": vocabulary,
        "structural": structural,
        "descriptions": descriptions,
        "names": names,
    }.items():
        files[key] = str(tmp_path / f"{key}.parquet")
        write_table(table, files[key])
    files["embeddings"] = str(tmp_path / "embed.parquet")
    write_embeddings(ids, emb, files["embeddings"])
    smk = SimpleNamespace(
        input=SimpleNamespace(**files),
        output=[str(tmp_path / "out" / "gallery")],
        params=SimpleNamespace(
            gallery={"typical": 2, "random": 1, "thumbnail_px": 32, "seed": 0},
            labelled=True,
            note="Model tiny has random weights.",
        ),
        wildcards=SimpleNamespace(dataset="pets", model="tiny"),
        log=[str(tmp_path / "gallery.log")],
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "build_gallery.py"), run_name="adapter")["main"](smk)
    page = (tmp_path / "out" / "gallery" / "index.html").read_text()
    assert page.count('<section class="card"') == 2 and "pets: classes discovered with tiny" in page
    assert "Model tiny has random weights." in page
    assert len(list((tmp_path / "out" / "gallery" / "thumbs").glob("*.jpg"))) == 6
    assert "2 cards, 6 thumbnails" in (tmp_path / "gallery.log").read_text()


HOSTILE = [
    'a<img src=x onerror="document.title=1">.jpg',
    "q\"uote's $(touch PWNED); `id`.jpg",
    "new\nline <script>alert(1)<\\script>.jpg",
]


@pytest.mark.slow
def test_hostile_file_names_are_shown_never_run(tmp_path):
    """Photo names with markup, quotes, `$(...)`, `;` and newlines: the page escapes them (each thumbnail
    carries its file name and links to the photo), and in a real browser nothing extra loads or runs."""
    inputs = _gallery_inputs(tmp_path)
    manifest = inputs[0]
    renamed = []
    for i, path in enumerate(manifest.path):
        new = Path(path).with_name(HOSTILE[i % len(HOSTILE)].replace(".jpg", f" {i}.jpg"))
        os.rename(path, new)
        renamed.append(str(new))
    manifest["path"] = renamed
    params = GalleryParams(typical=3, random=2, thumbnail_px=48)
    cards = gallery_cards(*inputs, params, labelled=True)
    out = tmp_path / "gallery"
    assert (
        write_gallery(cards, dict(zip(manifest.image_id, manifest.path, strict=True)), out, params, title="t")
        == 10
    )
    text = (out / "index.html").read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    # each of the 10 thumbnails links to its photo (percent-encoded) with its name as a tooltip (escaped)
    assert (
        sum(
            f'<a href="{Path(r).absolute().as_uri()}" title="{html.escape(Path(r).name)}">' in text
            for r in renamed
        )
        == 10
    )
    result = check_in_chromium(out / "index.html", tmp_path / "shot.png")
    assert result["images"] == 10 and result["broken"] == []  # no injected <img src=x>
    assert result["errors"] == [] and result["console"] == []
    assert not list(tmp_path.rglob("PWNED"))


def test_card_names_as_in_names_csv_and_phrase_source_labelled(tmp_path):
    """The card title is the vocabulary name as names.csv writes it; WordNet phrases (offline backend,
    or a cluster the LLM could not describe) are not called LLM phrases."""
    manifest, vocabulary, structural, descriptions, names, embeddings = _gallery_inputs(tmp_path)
    params = GalleryParams(typical=1, random=0)
    cards = gallery_cards(manifest, vocabulary, structural, descriptions, names, embeddings, params, False)
    page = render_html(cards, {}, title="t")
    assert "<h2>golden_retriever</h2>" in page and "LLM phrases:" in page and "WordNet phrases" not in page
    offline = descriptions.assign(source="wordnet")
    cards = gallery_cards(manifest, vocabulary, structural, offline, names, embeddings, params, False)
    page = render_html(cards, {}, title="t")
    assert "WordNet phrases (no LLM answer):" in page and "LLM phrases:" not in page
