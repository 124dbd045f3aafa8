"""Rule build_gallery: the page of the discovered classes and a folder's tag page (see s3a.gallery)."""

import pyarrow.parquet as pq

from s3a.gallery import GalleryParams, gallery_cards, tag_sections, tags_caption, write_gallery
from s3a.io import read_embeddings, read_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        manifest = read_table(smk.input.manifest)
        params = GalleryParams(**smk.params.gallery)
        tagged = (
            getattr(smk.params, "tag_page", None) is not None
            and "tags" in pq.read_schema(smk.input.names).names
        )
        names = read_table(smk.input.names, columns=["image_id", "name", *(["tags"] if tagged else [])])
        cards = gallery_cards(
            manifest,
            read_table(smk.input.vocabulary),
            read_table(smk.input.structural),
            read_table(smk.input.descriptions),
            names,
            read_embeddings(smk.input.embeddings),
            params,
            labelled=bool(smk.params.labelled),
        )
        sections = tag_sections(names, int(smk.params.tag_page)) if tagged else None
        tags = dict(zip(names.image_id, map(tags_caption, names.tags), strict=True)) if tagged else None
        title = f"{smk.wildcards.dataset}: classes discovered with {smk.wildcards.model}"
        paths = dict(zip(manifest.image_id, manifest.path, strict=True))
        n = write_gallery(
            cards, paths, smk.output[0], params, sections, tags, title=title, note=smk.params.note
        )
        log.info("%d cards, %d thumbnails in %s", len(cards), n, smk.output[0])
        if sections is not None:
            log.info("tag page: %d tags", len(sections))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
