"""Rule init_pseudolabels: CDUL global-local pseudo-label scores of one split."""

from s3a.io import read_embeddings, write_table
from s3a.logs import log_to
from s3a.multilabel.aggregate import PseudoParams
from s3a.multilabel.cdul.pseudolabels import init_pseudolabels
from s3a.multilabel.classifier import read_classifier
from s3a.multilabel.views.tables import read_tiles


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        image_ids, global_emb = read_embeddings(smk.input.embeddings)
        tile_ids, tile_emb = read_tiles(smk.input.tiles)
        classifier = read_classifier(smk.input.classifier)
        table = init_pseudolabels(
            image_ids, global_emb, tile_ids, tile_emb, classifier, PseudoParams(**smk.params.pseudo)
        )
        log.info("pseudo-labels: %d images x %d labels", table.num_rows, len(classifier))
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
