"""Rule build_gallery: the static HTML page of the discovered classes (see s3a.gallery)."""

from s3a.gallery import GalleryParams, gallery_cards, write_gallery
from s3a.io import read_embeddings, read_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        manifest = read_table(smk.input.manifest)
        params = GalleryParams(**smk.params.gallery)
        cards = gallery_cards(
            manifest,
            read_table(smk.input.vocabulary),
            read_table(smk.input.structural),
            read_table(smk.input.descriptions),
            read_table(smk.input.names, columns=["image_id", "name"]),
            read_embeddings(smk.input.embeddings),
            params,
            labelled=bool(smk.params.labelled),
        )
        title = f"{smk.wildcards.dataset}: classes discovered with {smk.wildcards.model}"
        paths = dict(zip(manifest.image_id, manifest.path, strict=True))
        n = write_gallery(cards, paths, smk.output[0], params, title=title, note=smk.params.note)
        log.info("%d cards, %d thumbnails in %s", len(cards), n, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
