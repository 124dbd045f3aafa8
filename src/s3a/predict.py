"""Predictions of a CLIP model over the vocabulary: the zero-shot baselines (rule zero_shot) and the
self-trained student and teacher (rule predict).

Both are argmaxes over a fixed text classifier, computed in chunks (:func:`s3a.classify.zero_shot`),
so memory is linear in the number of images: at ImageNet-1K (1.28M images, 20,071 names, D = 512)
the inputs are 2.6 GB of image embeddings and 41 MB of classifier, the outputs a few columns per image.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from s3a.classify import zero_shot
from s3a.embed import EmbedParams, encode_images, text_classifier
from s3a.models import ModelSpec, load_clip, load_trained
from s3a.names import top_names
from s3a.vocab import TEMPLATES

log = logging.getLogger(__name__)

#: the models of a self-training run that rule predict scores, in column order
ROLES = ("student", "teacher")


def zero_shot_predictions(
    image_ids: np.ndarray,
    images: np.ndarray,
    vocab_ids: np.ndarray,
    vocabulary: np.ndarray,
    manifest: pd.DataFrame,
    model: ModelSpec,
    templates: str,
) -> pd.DataFrame:
    """The two zero-shot baselines of one split: over the whole vocabulary (RZSC) and over the
    dataset's own class names (classic zero-shot, the upper reference).

    Args:
        image_ids: ``(N,)`` image ids of ``images``.
        images: ``(N, D)`` unit-norm image embeddings.
        vocab_ids: ``(V,)`` vocabulary index of each row of ``vocabulary``.
        vocabulary: ``(V, D)`` unit-norm text classifier of the vocabulary.
        manifest: the dataset manifest; its ``class_index`` and ``class_name`` give the own names.
        model: the CLIP model that embeds the own class names (the one that embedded ``images``).
        templates: prompt template set of :data:`s3a.vocab.TEMPLATES`.

    Returns:
        image_id, pred_vocab_index, score (its probability), pred_class_index, class_score; one row
        per image, in the order of ``image_ids``. Cost: two chunked argmaxes, ``N x (V + K)`` dot
        products (26 TFLOP at ImageNet-1K's train split), and K class names through the text tower.
    """
    classes = manifest.drop_duplicates("class_index").sort_values("class_index")
    clip = load_clip(model)
    own = text_classifier(clip.model, clip.tokenizer, list(classes.class_name), TEMPLATES[templates])
    pred, score = zero_shot(images, vocabulary)
    pred_class, class_score = zero_shot(images, own)
    table = pd.DataFrame(
        {"image_id": np.asarray(image_ids), "pred_vocab_index": np.asarray(vocab_ids)[pred], "score": score}
    )
    table["pred_class_index"] = classes.class_index.to_numpy()[pred_class]
    table["class_score"] = class_score
    log.info(
        "%d images: %d distinct vocabulary names predicted", len(table), table.pred_vocab_index.nunique()
    )
    return table


def trained_predictions(
    manifest: pd.DataFrame,
    split: str,
    vocab_ids: np.ndarray,
    classifier: np.ndarray,
    model: ModelSpec,
    checkpoints: dict[str, str | os.PathLike[str]],
    params: EmbedParams = EmbedParams(),
    runner_ups: int = 5,
) -> pd.DataFrame:
    """Names of the self-trained student and teacher for every readable image of ``split``.

    Args:
        manifest: image_id, path, split.
        vocab_ids: ``(V,)`` vocabulary index of each row of ``classifier``.
        classifier: ``(V, D)`` unit-norm text classifier of the vocabulary.
        model: the config's model entry the training started from.
        checkpoints: ``{"student": path, "teacher": path}``, the image-encoder weights of self_train.
        params: image loading and batching.
        runner_ups: the student's next best names kept per image (for the names table).

    Returns:
        image_id, student_vocab_index, student_score, student_runner_ups (list of vocabulary indices,
        best first), teacher_vocab_index, teacher_score; one row per image that decoded. Cost: each
        image through both image encoders, and ``N x V`` dot products per model, in chunks.
    """
    missing = [role for role in ROLES if role not in checkpoints]
    if missing:
        raise ValueError(f"trained_predictions needs the checkpoints of {', '.join(missing)}")
    rows = manifest[manifest.split == split]
    vocab_ids = np.asarray(vocab_ids)
    table = pd.DataFrame()
    for role in ROLES:
        clip = load_trained(model, checkpoints[role])
        result = encode_images(clip.model, clip.preprocess, list(rows.path), params)
        pred, score = zero_shot(result.embeddings, classifier)
        table["image_id"] = rows.image_id.to_numpy()[result.index]
        table[f"{role}_vocab_index"], table[f"{role}_score"] = vocab_ids[pred], score
        if role == "student":  # the final model's next best names, for the names table
            top, _ = top_names(result.embeddings, classifier, min(runner_ups + 1, len(vocab_ids)))
            table["student_runner_ups"] = list(vocab_ids[top[:, 1:]])
    log.info("%s: %d images, student names %d", split, len(table), table.student_vocab_index.nunique())
    return table
