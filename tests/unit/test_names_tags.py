"""A photo folder's tags where a person reads them: the `tags` column of names.parquet / names.csv, each
thumbnail's tags in the gallery and the tag page (tag -> its photos, largest first), in a real browser."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_gallery import ARTIFACTS, _gallery_inputs, check_in_chromium

from s3a.gallery import (
    GalleryParams,
    gallery_cards,
    render_tag_page,
    tag_sections,
    tags_caption,
    write_gallery,
)
from s3a.io import write_table
from s3a.names import TAGS_TYPE, names_arrow, names_table, write_names_csv

REPO = Path(__file__).resolve().parents[2]
VOCAB = pd.DataFrame({"vocab_index": [0, 1, 2, 3], "name": ["cat", "dog", "fox", "St._John's_wort"]})


def _names_inputs():
    manifest = pd.DataFrame({"image_id": [0, 1, 2], "path": ["/a.jpg", "/b.jpg", "/c.jpg"], "split": "train"})
    final = pd.DataFrame(
        {
            "image_id": [0, 1, 2],
            "student_vocab_index": [1, 0, 2],
            "student_score": 0.5,
            "student_runner_ups": [[0]] * 3,
        }
    )
    zeroshot = pd.DataFrame({"image_id": [0, 1, 2], "pred_vocab_index": [0, 0, 0], "score": 0.4})
    clusters = pd.DataFrame({"image_id": [0, 1, 2], "cluster": [0, 1, 1]})
    return manifest, VOCAB, final, zeroshot, clusters


def test_tags_column_in_parquet_and_csv(tmp_path):
    # long tags in any order; photo 1 has no tag
    tags = pd.DataFrame(
        {
            "image_id": [2, 0, 0, 2],
            "rank": [0, 1, 0, 1],
            "vocab_index": [3, 2, 1, 0],
            "score": [0.9, 0.51, 0.8, 0.5],
        }
    )
    table = names_table(*_names_inputs(), tags=tags)
    assert list(table.columns)[-1] == "tags"
    assert table.tags.tolist() == [
        [{"name": "dog", "score": 0.8}, {"name": "fox", "score": 0.51}],
        [],
        [{"name": "St._John's_wort", "score": 0.9}, {"name": "cat", "score": 0.5}],
    ]
    arrow = names_arrow(table)
    assert arrow.schema.field("tags").type == TAGS_TYPE
    write_table(arrow, tmp_path / "names.parquet")
    back = pd.read_parquet(tmp_path / "names.parquet")
    assert [[t["name"] for t in ts] for ts in back.tags] == [["dog", "fox"], [], ["St._John's_wort", "cat"]]
    assert back.tags[0][0]["score"] == pytest.approx(0.8)
    write_names_csv(table, tmp_path / "names.csv")
    csv = pd.read_csv(tmp_path / "names.csv", keep_default_na=False)
    assert csv.tags.tolist() == ["dog:0.800; fox:0.510", "", "St._John's_wort:0.900; cat:0.500"]
    # no tag at all: still a list<struct> column; without tags no column
    none = names_table(*_names_inputs(), tags=tags.iloc[:0])
    assert names_arrow(none).schema.field("tags").type == TAGS_TYPE
    assert "tags" not in names_table(*_names_inputs()).columns


def test_name_images_adapter_adds_the_tags(tmp_path):
    manifest, vocabulary, final, zeroshot, clusters = _names_inputs()
    files = {}
    tags = pd.DataFrame({"image_id": [1], "rank": [0], "vocab_index": [2], "score": [0.75]})
    for key, table in dict(manifest=manifest, vocabulary=vocabulary, final=final, zeroshot=zeroshot,
                           structural=clusters, tags=tags).items():  # fmt: skip
        files[key] = str(tmp_path / f"{key}.parquet")
        write_table(table, files[key])
    files["final"], files["zeroshot"] = [files["final"]], [files["zeroshot"]]
    out = SimpleNamespace(table=str(tmp_path / "names.parquet"), csv=str(tmp_path / "names.csv"))
    smk = SimpleNamespace(input=SimpleNamespace(**files), output=out, log=[str(tmp_path / "n.log")])
    runpy.run_path(str(REPO / "workflow/scripts/name_images.py"), run_name="adapter")["main"](smk)
    back = pd.read_parquet(out.table)
    assert [list(t) for t in back.tags] == [[], [{"name": "fox", "score": 0.75}], []]
    assert "1 images tagged (1 tags)" in (tmp_path / "n.log").read_text()


def _tagged_names(names: pd.DataFrame) -> pd.DataFrame:
    """Tags for the gallery's 12 photos: every photo 'whisker', odd ones 'ball', photo 3 'ball' best."""
    tags = []
    for i in names.image_id:
        ts = [{"name": "whisker", "score": 0.6 + 0.01 * i}]
        if i % 2:
            ts.insert(0, {"name": "ball", "score": 0.99 if i == 3 else 0.7})
        tags.append(ts)
    return names.assign(tags=tags)


def test_tag_sections_largest_first_with_their_best_photos():
    names = _tagged_names(pd.DataFrame({"image_id": np.arange(12), "name": "x"}))
    sections = tag_sections(names, per_tag=3)
    assert [(s.name, s.size) for s in sections] == [("whisker", 12), ("ball", 6)]
    assert sections[0].shown == (11, 10, 9) and sections[1].shown == (3, 1, 5)  # best score, ties by id
    assert tags_caption(names.tags[3]) == "ball 0.99 · whisker 0.63"
    assert tag_sections(names.assign(tags=[[]] * 12), 3) == []
    page = render_tag_page(sections, {3: "thumbs/3.jpg"}, "t <x>", tags={3: "ball 0.99 · <b>"})
    assert page.index("<h2>whisker</h2>") < page.index("<h2>ball</h2>") and "t &lt;x&gt;: tags" in page
    assert "12 photos" in page and "ball 0.99 · &lt;b&gt;" in page and 'href="index.html"' in page


@pytest.mark.slow
def test_tag_page_and_thumbnail_tags_in_a_real_browser(tmp_path):
    manifest, vocabulary, structural, descriptions, names, emb = _gallery_inputs(tmp_path)
    names = _tagged_names(names)
    params = GalleryParams(typical=2, random=1, thumbnail_px=40)
    cards = gallery_cards(manifest, vocabulary, structural, descriptions, names, emb, params, labelled=False)
    sections = tag_sections(names, per_tag=4)
    captions = dict(zip(names.image_id, map(tags_caption, names.tags), strict=True))
    out = tmp_path / "gallery"
    paths = dict(zip(manifest.image_id, manifest.path, strict=True))
    n = write_gallery(cards, paths, out, params, sections, captions, title="photos")
    shown = {i for c in cards for i in (*c.typical, *c.random)} | {i for s in sections for i in s.shown}
    assert n == len(shown)
    index = (out / "index.html").read_text()
    assert 'href="tags.html"' in index and "the 2 names found in the photos" in index
    assert index.count('<span class="tags">') == 6 and "whisker 0.6" in index
    page = (out / "tags.html").read_text()
    assert page.count('<section class="card tag"') == 2 and page.index("whisker") < page.index("<h2>ball")
    shutil.move(out, tmp_path / "moved")  # both pages need nothing but their folder
    for name, sections_seen in (("index.html", 2), ("tags.html", 2)):
        result = check_in_chromium(tmp_path / "moved" / name, ARTIFACTS / f"gallery-{name}.png")
        assert result["cards"] == sections_seen and result["broken"] == [], result
        assert result["errors"] == [] and result["console"] == []
    assert result["images"] == 4 + 4  # whisker's best 4, ball's best 4


def test_build_gallery_adapter_writes_the_tag_page(tmp_path):
    manifest, vocabulary, structural, descriptions, names, (ids, emb) = _gallery_inputs(tmp_path)
    from s3a.io import write_embeddings

    files = {}
    tagged = names_arrow(_tagged_names(names))
    for key, table in dict(manifest=manifest, vocabulary=vocabulary, structural=structural,
                           descriptions=descriptions, names=tagged).items():  # fmt: skip
        files[key] = str(tmp_path / f"{key}.parquet")
        write_table(table, files[key])
    files["embeddings"] = str(tmp_path / "embed.parquet")
    write_embeddings(ids, emb, files["embeddings"])
    assert "tags" in pq.read_schema(files["names"]).names
    for tag_page, expect in ((3, True), (None, False)):
        smk = SimpleNamespace(
            input=SimpleNamespace(**files),
            output=[str(tmp_path / f"out{expect}" / "gallery")],
            params=SimpleNamespace(
                gallery={"typical": 2, "random": 1, "thumbnail_px": 32, "seed": 0},
                labelled=False,
                note="",
                tag_page=tag_page,
            ),
            wildcards=SimpleNamespace(dataset="photos", model="tiny"),
            log=[str(tmp_path / "gallery.log")],
        )
        runpy.run_path(str(REPO / "workflow/scripts/build_gallery.py"), run_name="adapter")["main"](smk)
        assert (Path(smk.output[0]) / "tags.html").exists() == expect
        assert ("tag page: 2 tags" in (tmp_path / "gallery.log").read_text()) == expect
