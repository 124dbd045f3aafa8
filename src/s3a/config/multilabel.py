"""The ``multilabel`` config block: the multi-label task (CDUL pseudo-labels, gradient alignment, the
CLIP-Decoder head, open-vocabulary multi-label), one typed model per sub-block.

The library's parameter objects (:class:`s3a.multilabel.views.tiles.TileParams`,
:class:`~s3a.multilabel.aggregate.PseudoParams`, :class:`~s3a.multilabel.cdul.align.LabelUpdateParams`,
:class:`~s3a.multilabel.cdul.linear.LinearParams`, :class:`~s3a.multilabel.imagetrain.network.ImageTrainParams`,
:class:`~s3a.multilabel.decoder.head.MLDecoderParams`, :class:`~s3a.multilabel.decoder.train.HeadTrainParams`,
:class:`~s3a.multilabel.losses.AslParams`, :class:`~s3a.multilabel.metrics.EvalParams`) are built from
these blocks by :mod:`s3a.multilabel.learners`; a test keeps the defaults of both equal.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge
from pydantic import Field

from s3a.config.base import Block, Int

__all__ = [
    "MULTILABEL_KINDS",
    "LEARNERS",
    "Asl",
    "FinetuneLearner",
    "LabelUpdate",
    "LinearLearner",
    "MLDecoderLearner",
    "MultiLabel",
    "MultiLabelEvaluate",
    "MultiLabelTrain",
    "OpenVocab",
    "Pseudo",
    "Tiles",
]

#: the builders of s3a.multilabel.data.registry.BUILDERS (a test keeps the two in step)
MULTILABEL_KINDS = ("voc2007", "voc2012", "coco2014", "nuswide", "mosaic", "generated_multilabel")
LEARNERS = ("linear", "finetune", "mldecoder")
_POSITIVE_INT = Annotated[int, Ge(1)]


class Tiles(Block):
    """The g x g grid of crops per image (rule embed_tiles; one decode per image)."""

    grid: Int = Field(3, ge=1, le=8, description="Tiles per side (3 = the 3x3 grid of CDUL).")
    fit: Literal["center_crop", "squash"] = Field("center_crop", description="How a tile becomes the model's input: center_crop (shorter side to the input size, centre crop: the model's evaluation transform, as CDUL) or squash (the whole tile resized to the input square).")  # fmt: skip
    dtype: Literal["float32", "float16"] = Field("float32", description="Storage type of the tile embeddings (float16 halves the file; 9 x N x D values).")  # fmt: skip
    batch_size: Int = Field(256, ge=1, description="Crops per forward pass.")
    num_workers: Int = Field(4, ge=0, description="Image-decoding workers.")


class Pseudo(Block):
    """CDUL's global-local aggregation into initial pseudo-labels (rule init_pseudolabels)."""

    temperature: float | Literal["repro"] = Field(100.0, description="Softmax scale over the labels (the CLIP logit scale 100), or repro: the public reimplementation's behaviour (kept to reproduce its numbers; it scores lower).")  # fmt: skip
    zeta: float = Field(0.0, ge=0, le=1, description="Threshold zeta of CDUL: a label's local score is its max over the tiles where that max reaches zeta, else its min (0 = always the max).")  # fmt: skip
    lam: float = Field(0.0, ge=-1, le=1, description="lambda of CDUL's final score (S_g + S_local + lambda |S_g - S_local|) / 2: 0 = mean of the global and local scores, 1 = their max, -1 = their min.")  # fmt: skip
    local_reduce: Literal["cdul", "max", "mean"] = Field("cdul", description="Local score of a label from its tile scores: cdul (max or min by zeta, as the paper), max, or mean.")  # fmt: skip


class LabelUpdate(Block):
    """Latent-label updates of gradient alignment (spec 6); no ground truth in any decision."""

    enabled: bool = Field(True, description="Update the latent labels (false = train on the initial pseudo-labels).")  # fmt: skip
    loss: Literal["bernoulli_kl", "categorical_kl"] = Field("bernoulli_kl", description="Label loss: bernoulli_kl (per label) or categorical_kl (the reimplementation's).")  # fmt: skip
    every: Int = Field(10, ge=1, description="Update epochs are e > warmup with e % every == 0 (the finetune learner uses finetune.label_every).")  # fmt: skip
    warmup: Int = Field(0, ge=0, description="Epochs before the first update.")
    sigma: float = Field(1.0, gt=0, description="Width of the update weight psi(y).")
    step: float = Field(1.0, gt=0, description="Step size eta of the update.")
    max_updates: _POSITIVE_INT | None = Field(None, description="Stop updating after this many update epochs; null = no cap.")  # fmt: skip
    min_label_change: float = Field(0.0, ge=0, description="Stop updating when the mean |change of y| of an update epoch falls below this.")  # fmt: skip
    reduction: Literal["per_image", "repro"] = Field("per_image", description="How the label loss reduces over a batch: per_image (each image's labels take the gradient of its own loss) or repro (the CDUL reimplementation's batch-mean KL: each image's gradient divided by the batch's image count B, i.e. B times smaller steps).")  # fmt: skip


class Asl(Block):
    """Asymmetric loss (ML-Decoder's defaults)."""

    gamma_neg: float = Field(4.0, ge=0, description="Focusing exponent of the negatives.")
    gamma_pos: float = Field(0.0, ge=0, description="Focusing exponent of the positives.")
    clip: float = Field(0.05, ge=0, lt=1, description="Probability margin shifted off the negatives.")
    eps: float = Field(1e-8, gt=0, description="Floor of the probabilities inside the logarithms.")


class LinearLearner(Block):
    """The linear learner: a logistic head on cached embeddings (CPU, fast)."""

    epochs: Int = Field(100, ge=1, description="Training epochs.")
    batch_size: Int = Field(256, ge=1, description="Images per step.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="Optimiser.")
    net_loss: Literal["bce", "asl", "kl_softmax"] = Field("bce", description="Network loss: bce (soft targets), asl (multilabel.train.asl) or kl_softmax (the reimplementation's).")  # fmt: skip
    init_scale: float = Field(50.0, gt=0, description="Scale s0 of the start W*s0 from the label classifier.")
    tiles: bool = Field(False, description="Features: false = the global embedding; true = it and the unit max over the tile embeddings.")  # fmt: skip


class FinetuneLearner(Block):
    """The finetune learner: the CLIP visual encoder and a linear head, trained on images (GPU, torchrun)."""

    epochs: Int = Field(30, ge=1, description="Training epochs.")
    batch_size: Int = Field(64, ge=1, description="Global batch over all GPUs.")
    lr: float = Field(1e-5, gt=0, description="Learning rate of the head and the encoder's top (cosine to 0).")  # fmt: skip
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (none on 1-D parameters).")
    layer_decay: float = Field(0.65, gt=0, le=1, description="Layer-wise learning-rate decay of the encoder.")  # fmt: skip
    net_loss: Literal["bce", "asl", "kl_softmax"] = Field("bce", description="Network loss.")
    init_scale: float = Field(50.0, gt=0, description="Scale s0 of the head's start from the label classifier.")  # fmt: skip
    augment: Literal["weak", "none", "strong"] = Field("weak", description="Training view: weak (resize + random crop), none (the evaluation transform), strong (RandAugment).")  # fmt: skip
    num_workers: Int = Field(4, ge=0, description="Data-loading workers per GPU process.")
    label_every: Int = Field(5, ge=1, description="Epochs between label updates for this learner (its label_update.every).")  # fmt: skip


class MLDecoderLearner(Block):
    """The CLIP-Decoder head: ML-Decoder cross-attention with one query per label from its CLIP text
    embedding; on cached patch tokens (backbone frozen) or on images (backbone finetune, torchrun)."""

    embed_dim: Int = Field(768, ge=1, description="Decoder width.")
    heads: Int = Field(8, ge=1, description="Attention heads (must divide embed_dim).")
    ff_dim: Int = Field(2048, ge=1, description="Feed-forward width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the decoder.")
    query_chunk: Int = Field(2048, ge=1, description="Label queries per chunk (bounds memory; identical results), so all 20K vocabulary names can be scored.")  # fmt: skip
    clip_loss_weight: float = Field(1.0, ge=0, description="Weight of the alignment term that trains both projections.")  # fmt: skip
    cls_loss_weight: float = Field(1.0, ge=0, description="Weight of the asymmetric loss.")
    backbone: Literal["frozen", "finetune"] = Field("frozen", description="frozen: train on cached patch tokens (fast); finetune: train the visual encoder too, on images (torchrun).")  # fmt: skip
    backbone_lr: float = Field(1e-5, gt=0, description="Learning rate of the encoder's top with backbone finetune.")  # fmt: skip
    epochs: Int = Field(10, ge=1, description="Training epochs.")
    batch_size: Int = Field(64, ge=1, description="Images per step (global batch).")
    lr: float = Field(1e-4, gt=0, description="Learning rate of the head.")
    weight_decay: float = Field(1e-4, ge=0, description="Weight decay (matrices only).")
    layer_decay: float = Field(0.65, gt=0, le=1, description="Layer-wise learning-rate decay with backbone finetune.")  # fmt: skip
    augment: Literal["weak", "none", "strong"] = Field("weak", description="Training view with backbone finetune.")  # fmt: skip
    num_workers: Int = Field(4, ge=0, description="Data-loading workers per GPU process with backbone finetune.")  # fmt: skip


class MultiLabelTrain(Block):
    """Training of the multi-label learners (spec 6-7); one output folder per learner."""

    learners: list[Literal[LEARNERS]] = Field(["linear"], min_length=1, json_schema_extra={"uniqueItems": True}, description="Learners to train: linear (CPU, cached embeddings), finetune (visual encoder, GPU), mldecoder (CLIP-Decoder head).")  # type: ignore[valid-type]  # fmt: skip
    supervision: Literal["pseudo", "gt_seen"] = Field("pseudo", description="Supervision of the mldecoder learner: pseudo (CDUL pseudo-labels: no labels used) or gt_seen (the ZSL benchmark protocol: ground truth of the seen labels; datasets with setting zsl); a dataset's own supervision key overrides it. linear and finetune always learn from the pseudo-labels.")  # fmt: skip
    label_update: LabelUpdate = Field(LabelUpdate(), description="Latent-label updates of gradient alignment.")  # fmt: skip
    asl: Asl = Field(Asl(), description="Asymmetric loss (net_loss asl and the mldecoder head).")
    seed: Int = Field(0, ge=0, description="Seed of initialisation, shuffling and augmentation.")
    checkpoint_signals: list[Literal["SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP", "SIGXCPU"]] = Field(["SIGTERM", "SIGUSR1"], description="Signals on which the image learners (finetune, mldecoder with backbone finetune) finish their step, save a mid-epoch resume state and exit with status 75, so the retried job goes on from that step (as train.checkpoint_signals).")  # fmt: skip
    linear: LinearLearner = Field(LinearLearner(), description="The linear learner.")
    finetune: FinetuneLearner = Field(FinetuneLearner(), description="The finetune learner.")
    mldecoder: MLDecoderLearner = Field(MLDecoderLearner(), description="The CLIP-Decoder head.")


class MultiLabelEvaluate(Block):
    """Multi-label metrics (spec 9)."""

    threshold: float = Field(0.5, gt=0, lt=1, description="Score threshold of CP/CR/CF1 and OP/OR/OF1.")
    topk: list[_POSITIVE_INT] = Field([3, 5], min_length=1, description="K of the P/R/F1 at top-K rows.")
    small_area_px: float = Field(1024.0, gt=0, description="A label is small in an image when its largest instance is under this many pixels (the small subset).")  # fmt: skip


class OpenVocab(Block):
    """Open-vocabulary multi-label over the whole vocabulary (spec 8)."""

    enabled: bool = Field(False, description="Score every vocabulary name per image and evaluate against the dataset's labels.")  # fmt: skip
    topk_per_view: Int = Field(20, ge=1, description="Names kept per view (global and tiles) before aggregation.")  # fmt: skip
    temperature: float = Field(100.0, gt=0, description="Softmax scale over the vocabulary.")
    discovery: Literal["none", "frequency", "cluster_vote"] = Field("none", description="Label discovery: none, frequency (names held by most images) or cluster_vote (k-means of the views and the S3A vote, discover.kmeans and discover.vote).")  # fmt: skip
    n_labels: _POSITIVE_INT | None = Field(None, description="Names to discover; null = the dataset's number of labels.")  # fmt: skip
    views: Literal["tiles", "all"] = Field("tiles", description="Views clustered by cluster_vote: the tiles, or the tiles and the global embedding.")  # fmt: skip
    max_points: _POSITIVE_INT | None = Field(None, description="Views sampled for cluster_vote's k-means (seeded); null = all.")  # fmt: skip
    hierarchy: bool = Field(True, description="Also evaluate hierarchically (a hyponym counts for its label: golden retriever for dog), from WordNet 3.0 files.")  # fmt: skip
    wordnet_dir: str = Field("/usr/share/wordnet", description="Folder of WordNet 3.0's data.noun (Debian/Ubuntu package wordnet-base).")  # fmt: skip


class MultiLabel(Block):
    """The multi-label task: datasets whose kind is a multi-label builder run these steps."""

    templates: str = Field("cdul", description="Template set of the label text classifier (cdul = 'a photo of a {}.', or a set of s3a.vocab.TEMPLATES such as imagenet7).")  # fmt: skip
    prompt_style: Literal["readable", "raw"] = Field("readable", description="Label names in prompts: readable (underscores to spaces, joined names split: diningtable -> dining table) or raw (as the dataset spells them, as the CDUL reimplementation).")  # fmt: skip
    tiles: Tiles = Field(Tiles(), description="The grid of crops per image.")
    pseudo: Pseudo = Field(Pseudo(), description="Global-local aggregation into pseudo-labels.")
    train: MultiLabelTrain = Field(MultiLabelTrain(), description="Training of the learners.")
    evaluate: MultiLabelEvaluate = Field(MultiLabelEvaluate(), description="Metrics.")
    openvocab: OpenVocab = Field(OpenVocab(), description="Open-vocabulary multi-label over the whole vocabulary.")  # fmt: skip
