"""A static HTML gallery of the discovered classes: one card per structural cluster.

Each card shows the cluster's name (the structural label of spec 5.5), its WordNet definitions,
the LLM phrases that decided it (``descriptions.parquet``), the cluster size, the share of its images
the final model (the self-trained student) still names the same way, and a grid of thumbnails: the
most typical images (nearest the cluster's mean embedding) then a few drawn at random. For labelled
datasets a card also gives the majority true class and whether the name matches it.

With multi-label tags (a photo folder's ``tags`` column of ``names.parquet``,
:mod:`s3a.multilabel.openvocab.tags`)
each thumbnail shows its photo's tags under it (and in its tooltip), and a second page ``tags.html``,
linked from the index, lists every tag with the number of photos holding it, largest first, and the
thumbnails of its best-scored photos (:func:`tag_sections`, :func:`render_tag_page`).

The pages are ``index.html`` (and ``tags.html``) with inline CSS and no script, and the thumbnails are
JPEG files in ``thumbs/`` beside them, so they open from disk and inside ``snakemake --report``.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from s3a.config import Gallery
from s3a.io import new_file_mode
from s3a.metrics import gt_vocab_index

__all__ = [
    "GalleryParams",
    "Card",
    "TagSection",
    "representative_images",
    "gallery_cards",
    "tag_sections",
    "tags_caption",
    "render_html",
    "render_tag_page",
    "write_gallery",
]

log = logging.getLogger(__name__)


class GalleryParams(Gallery):
    """How many images a card shows and how large (the config block :class:`s3a.config.Gallery`).

    Attributes:
        typical: images nearest the cluster mean, per card.
        random: further images drawn at random from the rest of the cluster, per card.
        thumbnail_px: longest side of a thumbnail.
        seed: seed of the random draw.
    """


@dataclasses.dataclass(frozen=True)
class Card:
    """One discovered class as the gallery shows it."""

    cluster: int
    name: str
    definitions: tuple[str, ...]
    phrases: tuple[tuple[str, int], ...]  # (phrase, count), most frequent first
    size: int
    final_agreement: float  # share of the cluster's images the final model names ``name``
    typical: tuple[int, ...]  # image ids
    random: tuple[int, ...]
    true_class: str | None = None  # majority true class (labelled datasets)
    match: bool | None = None  # whether ``name`` is that class's vocabulary name
    phrase_source: str = "llm"  # where the phrases come from: ``llm`` or ``wordnet`` (definitions)


@dataclasses.dataclass(frozen=True)
class TagSection:
    """One tag as the tag page shows it: its photos, and the best-scored ones to show."""

    name: str
    size: int  # photos holding the tag
    shown: tuple[int, ...]  # image ids, best score first


def tag_sections(names: pd.DataFrame, per_tag: int) -> list[TagSection]:
    """Every tag of the names table's ``tags`` column (lists of ``{name, score}``) with its photo count
    and its ``per_tag`` best-scored photos (ties by image id), largest tag first (ties by name). One pass
    over the tags; memory: the (photo, tag) pairs, at most ``max_tags`` per photo."""
    pairs = [
        (str(t["name"]), float(t["score"]), int(i))
        for i, ts in zip(names.image_id, names.tags, strict=True)
        for t in ts
    ]
    if not pairs:
        return []
    long = pd.DataFrame(pairs, columns=["name", "score", "image_id"])
    long = long.sort_values(["name", "score", "image_id"], ascending=[True, False, True], kind="stable")
    sections = [
        TagSection(str(name), len(group), tuple(int(i) for i in group.image_id.head(per_tag)))
        for name, group in long.groupby("name", sort=False)
    ]
    return sorted(sections, key=lambda t: (-t.size, t.name))


def tags_caption(tags) -> str:
    """One photo's tags as the gallery writes them under a thumbnail: ``name 0.81 · name 0.50``."""
    return " · ".join(f"{t['name']} {float(t['score']):.2f}" for t in tags)


def representative_images(
    image_ids: np.ndarray, embeddings: np.ndarray, clusters: np.ndarray, params: GalleryParams
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The typical and random images of every cluster.

    Typical: the ``params.typical`` members with the highest cosine to the normalised mean of the
    cluster's embeddings. Random: ``params.random`` of the remaining members, drawn with
    ``np.random.default_rng([seed, cluster])``. One pass over the clusters, O(N D) time and memory.

    Args:
        image_ids: ``(N,)`` ids.
        embeddings: ``(N, D)`` unit-norm image embeddings aligned with ``image_ids``.
        clusters: ``(N,)`` cluster of each image.

    Returns:
        cluster -> ``(typical ids, random ids)``, typical ones most typical first.
    """
    if not len(image_ids) == len(embeddings) == len(clusters):
        raise ValueError("image_ids, embeddings and clusters must have the same length")
    order = np.argsort(clusters, kind="stable")
    bounds = np.flatnonzero(np.diff(clusters[order])) + 1
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for members in np.split(order, bounds) if len(order) else []:
        c = int(clusters[members[0]])
        x = embeddings[members]
        mean = x.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        ranked = members[np.argsort(-(x @ mean), kind="stable")]
        typical, rest = ranked[: params.typical], ranked[params.typical :]
        rng = np.random.default_rng([params.seed, c])
        drawn = rng.choice(rest, size=min(params.random, len(rest)), replace=False) if len(rest) else rest
        out[c] = (image_ids[typical], image_ids[np.sort(drawn)])
    return out


def gallery_cards(
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    structural: pd.DataFrame,
    descriptions: pd.DataFrame,
    names: pd.DataFrame,
    embeddings: tuple[np.ndarray, np.ndarray],
    params: GalleryParams,
    labelled: bool,
) -> list[Card]:
    """The cards of the discovered classes, largest cluster first.

    Args:
        manifest: ``image_id``, ``class_name``, ``wnid``.
        vocabulary: ``vocab_index``, ``name``, ``synset_ids``, ``definitions``.
        structural: ``image_id``, ``vocab_index``, ``cluster`` (the structural labels).
        descriptions: ``cluster``, ``name``, ``phrase``, ``count`` (the LLM phrases) and ``source``
            (``llm``, or ``wordnet`` for the offline backend and the clusters that fell back).
        names: the names table of :func:`s3a.names.names_table` (``image_id``, ``name``).
        embeddings: ``(ids (M,), embeddings (M, D))`` of the train split.
        labelled: whether the manifest's classes are ground truth (not an unlabeled folder).
    """
    ids, emb = embeddings
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    keep = structural.image_id.isin(row_of.index)
    structural = structural[keep].reset_index(drop=True)
    rows = row_of.loc[structural.image_id].to_numpy()
    picks = representative_images(
        structural.image_id.to_numpy(np.int64), emb[rows], structural.cluster.to_numpy(), params
    )
    vocab = vocabulary.set_index("vocab_index")
    final = names.set_index("image_id")["name"]
    info = manifest.set_index("image_id")
    cards = []
    for cluster, group in structural.groupby("cluster", sort=True):
        vocab_index = int(group.vocab_index.mode().iloc[0])
        name = str(vocab.at[vocab_index, "name"])
        rows = descriptions[(descriptions.cluster == cluster) & (descriptions.name == name)]
        said = rows.groupby("phrase", sort=False)["count"].sum().sort_values(ascending=False, kind="stable")
        sources = set(rows["source"]) if "source" in rows else {"llm"}
        agree = final.reindex(group.image_id).eq(name).mean()
        true_class = match = None
        if labelled:
            classes = info.loc[group.image_id, ["class_name", "wnid"]]
            top = classes.groupby(["class_name"], sort=True).size().idxmax()
            true_class = str(top)
            wnid = classes.loc[classes.class_name == top, "wnid"].iloc[0]
            match = bool(gt_vocab_index([wnid], [true_class], vocabulary)[0] == vocab_index)
        typical, drawn = picks[int(cluster)]
        cards.append(
            Card(
                cluster=int(cluster),
                name=name,
                definitions=tuple(str(d) for d in vocab.at[vocab_index, "definitions"]),
                phrases=tuple((str(p), int(n)) for p, n in said.items()),
                size=len(group),
                final_agreement=float(agree),
                typical=tuple(int(i) for i in typical),
                random=tuple(int(i) for i in drawn),
                true_class=true_class,
                match=match,
                phrase_source="llm" if sources <= {"llm"} else "wordnet",
            )
        )
    return sorted(cards, key=lambda c: (-c.size, c.cluster))


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin:0 0 1.2em}
.card h2{margin:0 0 .3em;font-size:1.3em}.meta{color:#555;font-size:.9em}
.ok{color:#176317}.no{color:#a31515}ul{margin:.3em 0}
.grid{display:flex;flex-wrap:wrap;gap:6px;margin-top:.6em}
.grid figure{margin:0}.grid img{display:block;border-radius:4px;background:#eee}
.grid figcaption{font-size:.7em;color:#777;text-align:center;max-width:160px}
.grid .tags{color:#264f78}nav{margin:.3em 0 1em}
"""


def _figure(image_id: int, thumbs, originals, tags, caption: str) -> str:
    """A thumbnail linked to its photo, its file name (and tags) as tooltip, the caption and tags under it."""
    esc = html.escape
    img = f'<img src="{esc(thumbs[image_id])}" alt="image {image_id}" loading="eager">'
    said = tags.get(image_id, "") if tags else ""
    original = (originals or {}).get(image_id)
    if original is not None:
        tip = esc(Path(original).name + (f" \u2014 tags: {said}" if said else ""))
        img = f'<a href="{esc(Path(original).absolute().as_uri())}" title="{tip}">{img}</a>'
    under = f'{"<br>" if caption else ""}<span class="tags">{esc(said)}</span>' if tags is not None else ""
    return f"<figure>{img}<figcaption>{esc(caption)}{under}</figcaption></figure>"


def _head(title: str) -> list[str]:
    """A page's opening lines up to its heading (the title escaped)."""
    esc = html.escape
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]


def render_html(
    cards: Sequence[Card],
    thumbs: dict[int, str],
    title: str,
    note: str = "",
    originals: dict[int, str] | None = None,
    tags: dict[int, str] | None = None,
    n_tags: int | None = None,
) -> str:
    """The gallery page: ``thumbs`` maps an image id to its thumbnail's path relative to the page;
    ``originals`` (image id -> the photo's file) gives each thumbnail its file name as a tooltip and a
    link to the photo; ``tags`` (image id -> :func:`tags_caption`) writes each photo's tags under its
    thumbnail and in its tooltip, and ``n_tags`` (the tag page's tags) links the tag page. Every text
    from a file name, the vocabulary or an LLM is HTML-escaped, and a link is a ``file:`` URI with its
    bytes percent-encoded, so a name such as ``<script>`` or ``"$(...)"`` is shown, never run."""
    esc = html.escape
    parts = [
        *_head(title),
        f'<p class="meta">{len(cards)} discovered classes, {sum(c.size for c in cards)} images.',
        f"{esc(note)}</p>",
        '<p class="meta">Each card is a discovered class under the name its cluster was given (as '
        "names.csv writes names, with WordNet's underscores). names.csv gives every photo the final "
        "model's own name, which is the card's name for the share the card states.</p>",
    ]
    if n_tags is not None:
        parts.append(
            f'<nav><a href="tags.html">Tags: the {n_tags} names found in the photos, each with its photos</a>'
            " (under each thumbnail: its photo's tags and their scores)</nav>"
        )
    for card in cards:
        parts.append(f'<section class="card" id="cluster-{card.cluster}">')
        # the vocabulary name as names.csv writes it (WordNet's underscores kept)
        parts.append(f"<h2>{esc(card.name)}</h2>")
        meta = (
            f"cluster {card.cluster} &middot; {card.size} images &middot; "
            f"the final model names {100 * card.final_agreement:.0f}% of them so"
        )
        parts.append(f'<p class="meta">{meta}</p>')
        if card.true_class is not None:
            verdict = '<span class="ok">match</span>' if card.match else '<span class="no">no match</span>'
            parts.append(f'<p class="meta">majority true class: {esc(card.true_class)} ({verdict})</p>')
        parts.append("<ul>" + "".join(f"<li>{esc(d)}</li>" for d in card.definitions) + "</ul>")
        if card.phrases:
            said = ", ".join(f"&ldquo;{esc(p)}&rdquo; &times;{n}" for p, n in card.phrases)
            label = "LLM phrases" if card.phrase_source == "llm" else "WordNet phrases (no LLM answer)"
            parts.append(f'<p class="meta">{label}: {said}</p>')
        parts.append('<div class="grid">')
        for kind, chosen in (("typical", card.typical), ("random", card.random)):
            parts += [_figure(i, thumbs, originals, tags, kind) for i in chosen if i in thumbs]
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_tag_page(
    sections: Sequence[TagSection],
    thumbs: dict[int, str],
    title: str,
    originals: dict[int, str] | None = None,
    tags: dict[int, str] | None = None,
    note: str = "",
) -> str:
    """The tag page ``tags.html``: one section per tag (largest first) with its photo count and the
    thumbnails of its best-scored photos, each with its tags; escaped as :func:`render_html`."""
    esc = html.escape
    n_photos = len({i for s in sections for i in s.shown})
    parts = [
        *_head(f"{title}: tags"),
        '<nav><a href="index.html">back to the discovered classes</a></nav>',
        f'<p class="meta">{len(sections)} tags, largest first. A tag is a name found in a photo (its '
        "score: the mean of the whole photo's and its best tile's probability over the names found in "
        f"the folder); each tag shows its best-scored photos ({n_photos} here), names.csv lists them all. "
        f"{esc(note)}</p>",
    ]
    for k, section in enumerate(sections):
        parts.append(f'<section class="card tag" id="tag-{k}"><h2>{esc(section.name)}</h2>')
        parts.append(f'<p class="meta">{section.size} photos</p><div class="grid">')
        parts += [_figure(i, thumbs, originals, tags, "") for i in section.shown if i in thumbs]
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_gallery(
    cards: Sequence[Card],
    paths: dict[int, str],
    out_dir: str | os.PathLike[str],
    params: GalleryParams,
    sections: Sequence[TagSection] | None = None,
    tags: dict[int, str] | None = None,
    **page,
) -> int:
    """Write ``index.html`` and ``thumbs/<image_id>.jpg`` into ``out_dir`` (replaced as a whole), and
    with tag ``sections`` (:func:`tag_sections`) ``tags.html``; ``tags`` (image id -> its caption) puts
    each photo's tags under its thumbnail on both pages.

    The folder is built beside ``out_dir`` and renamed onto it, so a failure leaves nothing
    half-written. An image that cannot be read gets no thumbnail (logged). ``page`` goes to
    :func:`render_html` (``title``, ``note``).

    Returns:
        the number of thumbnails written.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(new_file_mode(directory=True))  # mkdtemp's 0o700 would hide it from a shared tree
        (tmp / "thumbs").mkdir()
        thumbs: dict[int, str] = {}
        shown = {i for c in cards for i in (*c.typical, *c.random)} | {
            i for t in sections or () for i in t.shown
        }
        for image_id in sorted(shown):
            try:
                with Image.open(paths[image_id]) as im:
                    im = im.convert("RGB")
                    im.thumbnail((params.thumbnail_px, params.thumbnail_px))
                    im.save(tmp / "thumbs" / f"{image_id}.jpg", quality=85)
            except OSError as exc:
                log.warning("gallery: no thumbnail for %s: %s", paths[image_id], exc)
                continue
            thumbs[image_id] = f"thumbs/{image_id}.jpg"
        originals = {i: str(paths[i]) for i in thumbs}
        n_tags = None if sections is None else len(sections)
        (tmp / "index.html").write_text(
            render_html(cards, thumbs, originals=originals, tags=tags, n_tags=n_tags, **page),
            encoding="utf-8",
        )
        if sections is not None:
            tag_page = render_tag_page(
                sections, thumbs, page.get("title", ""), originals, tags, page.get("note", "")
            )
            (tmp / "tags.html").write_text(tag_page, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(thumbs)
