# Validation, dataset and model tables, wildcard constraints, and the named functions that give
# each rule its inputs and the config slice it uses (so a config change reruns exactly what it touches).
import json
import os
import re
import shlex

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

from s3a.config import MULTILABEL_KINDS, resolved
from s3a.configcheck import load_problems, missing_roots
from s3a.data import UNLABELED_KINDS
from s3a.models import ModelSpec, activation_problem
from s3a.startup import folder_problem, scan_folder, start_problems


def blame(line, files, given):
    """A problem line of load_problems with its source: `--config <block>` when the command line set
    the block the problem is in, else the config files."""
    rest = line.removeprefix("<config>: ")
    top = rest.split(":", 1)[0].split(".", 1)[0]
    return f"{'--config ' + top if top in given else files}: {rest}"


def check_config(config):
    """Prepare the config (folder=, typed command-line values) and stop before any job with one line
    per problem: file, key path, what is allowed. Returns the dataset name of `--config folder=`."""
    files = " + ".join(map(str, workflow.overwrite_configfiles or CONFIGFILES))
    with open(workflow.source_path("../../config/config.schema.json")) as f:
        problems = load_problems(config, json.load(f), "<config>", workflow.config_settings.overwrite_config)
    if problems:
        given = set(workflow.config_settings.config)  # the blocks set with --config
        raise SystemExit("\n".join(f"Configuration error: {blame(p, files, given)}" for p in problems))
    folder = config["run"]["datasets"][0] if config.get("folder") else None
    # `--config folder=`: a folder that is missing, empty or unreadable stops even a dry run
    if folder and (problem := folder_problem(config["datasets"][folder]["params"]["root"])):
        raise SystemExit(f"Error: {problem}")
    names = [
        n for n in (config.get("run", {}).get("datasets") or config["datasets"]) if n in config["datasets"]
    ]
    if not workflow.dryrun:
        for line in missing_roots(config["datasets"], names):
            logger.warning(f"Warning: {line} (jobs that need this dataset will stop)")
    return folder


# also turns `--config folder=` into a dataset (s3a.configcheck.load_problems): FOLDER names it
FOLDER = check_config(config)
# the schema is generated from s3a.config, whose models fill the defaults (a dataset's own k_search,
# llm and train entries keep only the keys they override)
validate(config, "../../config/config.schema.json", set_default=False)
config.update(resolved(config))

SELECTED = list(config["run"]["datasets"] or config["datasets"])
# the S3A datasets (discovery, self-training, names) and the multi-label ones (workflow/rules/multilabel.smk)
DATASETS = [d for d in SELECTED if config["datasets"].get(d, {}).get("kind") not in MULTILABEL_KINDS]
MLDATASETS = [d for d in SELECTED if d not in DATASETS]
MODELS = list(config["run"]["models"] or config["models"])
SPLITS = list(config["splits"])
# datasets with ground truth (evaluated); an unlabeled folder only gets names and a gallery
LABELLED = [d for d in DATASETS if config["datasets"].get(d, {}).get("kind") not in UNLABELED_KINDS]
# stage name -> its prediction file per split, the column holding vocabulary indices, and its splits
# (discovery only sees the unlabeled train split)
STAGES = {
    "zeroshot": ("results/{dataset}/{model}/zeroshot/{split}.parquet", "pred_vocab_index", SPLITS),
    "structural": ("results/{dataset}/{model}/discover/structural_labels.parquet", "vocab_index", ["train"]),
    "student": ("results/{dataset}/{model}/train/{split}.parquet", "student_vocab_index", SPLITS),
    "teacher": ("results/{dataset}/{model}/train/{split}.parquet", "teacher_vocab_index", SPLITS),
}

for _name in SELECTED:
    if _name not in config["datasets"]:
        raise ValueError(f"run.datasets names {_name!r}, which is not under `datasets:` in the config")
# the checkpoints that create_random_model makes (random weights); "None": no weights at all
RANDOM_CHECKPOINT = r"resources/models/random-[\w.-]+-seed\d+\.pt|None"
for _name in MODELS:
    if _name not in config["models"]:
        raise ValueError(f"run.models names {_name!r}, which is not under `models:` in the config")
    _spec = ModelSpec(**config["models"][_name])
    if (
        _spec.is_local_file
        and not os.path.isfile(_spec.pretrained)
        and not re.fullmatch(RANDOM_CHECKPOINT, _spec.pretrained)
    ):  # a random checkpoint of that name is made by the rule create_random_model
        raise SystemExit(
            f"Error: models.{_name}.pretrained: no checkpoint file {os.path.abspath(_spec.pretrained)}; "
            "give the path of an existing .pt/.bin/.safetensors file, or an open_clip tag such as 'openai'"
        )
    if _problem := activation_problem(_spec):  # a local file that does not say QuickGELU or GELU
        raise SystemExit(f"Error: models.{_name}.quick_gelu: {_problem}")


def check_jobs():
    """Snakemake's onstart (a real run with jobs to do, before the first one): what would fail a job
    later, found now, one line each (s3a.startup): folders, the LLM key, torchrun, uncached weights."""
    jobs = [(j.rule.name, dict(j.wildcards), j.rule.shellcmd or "") for j in workflow.dag.needrun_jobs()]
    by_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    if problems := start_problems(config, jobs, conda=by_conda):
        raise SystemExit("\n".join(f"Error: {p}" for p in problems))


def dataset_splits(dataset):
    """The splits of a dataset: an unlabeled folder has only `train` (every image is named there)."""
    if dataset in LABELLED:
        return SPLITS
    return [s for s in SPLITS if s == "train"]


def per_dataset(path, datasets=DATASETS):
    """`path` expanded over datasets, models and each dataset's own splits."""
    paths = [p for d in datasets for p in expand(path, dataset=d, model=MODELS, split=dataset_splits(d))]
    return list(dict.fromkeys(paths))


def one_of(names):
    """A wildcard constraint matching exactly these names (an empty list matches nothing, where "" would
    mean no constraint)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    dataset=one_of(SELECTED),
    model="|".join(MODELS),
    split="|".join(SPLITS),
    seed=r"\d+",
    stage="|".join(STAGES),


def dataset_entry(wildcards):
    """The dataset's own config entry: kind, params, k."""
    return config["datasets"][wildcards.dataset]


def manifest_params(wildcards):
    """Kind and builder params; a photo folder's also its listing's fingerprint (names, sizes, times),
    so adding or removing photos reruns the manifest and what depends on it."""
    entry = dataset_entry(wildcards)
    params = {"kind": entry["kind"], "params": entry.get("params", {})}
    if entry["kind"] == "folder":
        params["listing"] = scan_folder(entry["params"]["root"]).fingerprint
    return params


def model_spec(wildcards):
    """The model entry (arch, pretrained, cache_dir) as a plain dict for s3a.models.ModelSpec."""
    return dict(config["models"][wildcards.model])


def random_weight_models():
    """Models with random weights: no pretrained weights, or a checkpoint made by create_random_model."""
    return [m for m in MODELS if re.fullmatch(RANDOM_CHECKPOINT, str(config["models"][m].get("pretrained")))]


def model_checkpoint(wildcards):
    """The model's checkpoint as an input when it is a local file (so it is built or tracked)."""
    spec = ModelSpec(**model_spec(wildcards))
    return [spec.pretrained] if spec.is_local_file else []


def gpu_mem_mb(wildcards, attempt):
    """Memory of a GPU step: config `compute.mem_mb`, times the attempt number on retries."""
    return config["compute"]["mem_mb"] * attempt


def evaluate_mem_mb(wildcards, attempt):
    """Memory of an evaluation (the sentence-embedding model and one split's predictions)."""
    return 8000 * attempt


def gpu_resources():
    """Standard resources of a GPU step, from config `compute`."""
    c = config["compute"]
    return {"gpu": c["gpu"], "cpus_per_gpu": c["cpus_per_gpu"], "mem_mb": gpu_mem_mb}


def embedding_targets():
    return per_dataset("results/{dataset}/{model}/embed/{split}.parquet")


def zero_shot_targets():
    return per_dataset("results/{dataset}/{model}/zeroshot/{split}.parquet")


def names_targets():
    return per_dataset("results/{dataset}/{model}/names.parquet")


def gallery_targets():
    return per_dataset("results/{dataset}/{model}/gallery")


def print_names_paths():
    """The run's closing lines: the names table and the gallery (and its tag page) of each dataset and
    model, and how many image files could not be read (listed in the manifest, so not named)."""
    import pyarrow.parquet as pq

    for path in names_targets():
        folder = os.path.dirname(path)
        dataset, model = path.split("/")[1:3]
        skipped = ""
        manifest = f"results/{dataset}/manifest.parquet"
        if os.path.isfile(path) and os.path.isfile(manifest):
            listed, named = (pq.ParquetFile(f).metadata.num_rows for f in (manifest, path))
            if listed > named:
                log = f"logs/embed_images/{dataset}/{model}-*.log"
                skipped = f" ({listed - named} of {listed} image files could not be read: see {log})"
        gallery = f"{folder}/gallery/index.html"
        if tagged(dataset):  # workflow/rules/tags.smk
            gallery += f", tags: {folder}/gallery/tags.html"
        print(f"Names of every image{skipped}: {folder}/names.csv; gallery: {gallery}")


def names_inputs(wildcards):
    """The final model's (student's) predictions and the zero-shot names of every split, and clusters;
    a photo folder's tags too (tag_inputs, workflow/rules/tags.smk)."""
    splits = dataset_splits(wildcards.dataset)
    prefix = f"results/{wildcards.dataset}/{wildcards.model}"
    return {
        "manifest": f"results/{wildcards.dataset}/manifest.parquet",
        "vocabulary": "results/vocabulary/vocabulary.parquet",
        "final": [f"{prefix}/train/{s}.parquet" for s in splits],
        "zeroshot": [f"{prefix}/zeroshot/{s}.parquet" for s in splits],
        "structural": f"{prefix}/discover/structural_labels.parquet",
        **tag_inputs(wildcards),
    }


def gallery_note(wildcards):
    """The gallery's note: plain words when the model has random weights (the demo's)."""
    if wildcards.model in random_weight_models():
        return f"Model {wildcards.model} has random weights: these names are meaningless."
    return "Names from the self-trained student; cards are the discovered classes."


def is_labelled(wildcards):
    return wildcards.dataset in LABELLED


def k_search_params(wildcards):
    """K-search settings: `discover.k_search` updated by the dataset's own `k_search` entry."""
    own = dataset_entry(wildcards).get("k_search", {})
    search = config["discover"]["k_search"]
    return {**search, **own, "kmeans": {**search["kmeans"], **own.get("kmeans", {})}}


def stage_predictions(wildcards):
    """The prediction files of one stage, one per split of the stage."""
    path, _, splits = STAGES[wildcards.stage]
    return expand(path, split=splits, **wildcards)


def discovery_inputs(wildcards):
    """Vote partition, candidates and descriptions: candidate recall and LLM fallbacks of the structural stage."""
    if wildcards.stage != "structural":
        return []
    prefix = f"results/{wildcards.dataset}/{wildcards.model}/discover"
    return [
        f"{prefix}/vote_partition.parquet",
        f"{prefix}/candidates.parquet",
        f"{prefix}/descriptions.parquet",
    ]


def stage_params(wildcards):
    _, column, splits = STAGES[wildcards.stage]
    return {"column": column, "splits": splits}


def dataset_k(wildcards):
    """The dataset's class count for discovery: an integer, or "auto" (read from the K search)."""
    return dataset_entry(wildcards)["k"]


def cluster_inputs(wildcards):
    inputs = {"embeddings": f"results/{wildcards.dataset}/{wildcards.model}/embed/train.parquet"}
    if dataset_k(wildcards) == "auto":
        inputs["k_search"] = f"results/{wildcards.dataset}/{wildcards.model}/discover/k_search.parquet"
    return inputs


def train_settings(wildcards):
    """Training hyperparameters: the `train` defaults updated by the dataset's own `train` entry, and
    the image decoder of `embed` (teacher features are read like the offline embeddings)."""
    return {
        **config["train"],
        **dataset_entry(wildcards).get("train", {}),
        "decoder": config["embed"]["decoder"],
    }


def train_json(wildcards):
    return shlex.quote(json.dumps(train_settings(wildcards), sort_keys=True))


def model_json(wildcards):
    return shlex.quote(json.dumps(model_spec(wildcards), sort_keys=True))


def llm_settings(wildcards):
    """LLM settings: the top-level `llm` block updated by the dataset's own `llm` entry (on_failure)."""
    return {**config["llm"], **dataset_entry(wildcards).get("llm", {})}


def realign_params(wildcards):
    """Realign settings, with the dataset's own description templates."""
    return {**config["discover"]["realign"], "templates": dataset_entry(wildcards)["description_templates"]}


def report_targets():
    return expand(
        "results/{dataset}/{model}/report/{figure}.png",
        dataset=DATASETS,
        model=MODELS,
        figure=["training", "clusters"],
    )


def dataset_oov(wildcards):
    """Whether the dataset is an out-of-vocabulary benchmark (its headline is the soft score)."""
    return bool(dataset_entry(wildcards).get("oov", False))


def evaluation_targets():
    """Every stage's metric rows, and the student's best epoch on test when there is a test split."""
    stages = list(STAGES) + (["student_best"] if "test" in SPLITS else [])
    return expand(
        "results/{dataset}/{model}/eval/{stage}.parquet", dataset=LABELLED, model=MODELS, stage=stages
    )


def summary_targets():
    """The cross-dataset summary, when some dataset has ground truth to evaluate."""
    return ["results/summary.parquet"] if LABELLED else []


# the tags of a photo folder (workflow/rules/tags.smk)
def tagged(dataset):
    """Whether a dataset gets tags: a photo folder (no ground truth) while `names.tags.enabled`."""
    return config["names"]["tags"]["enabled"] and dataset in DATASETS and dataset not in LABELLED


def tag_inputs(wildcards):
    """The tags of a tagged dataset (an input of name_images), else none."""
    if not tagged(wildcards.dataset):
        return {}
    return {"tags": f"results/{wildcards.dataset}/{wildcards.model}/tags/tags.parquet"}


def tag_settings(wildcards):
    """What tag_images reads of `names.tags` (not the tag page's `page_images`, which only the gallery
    reads)."""
    return {k: v for k, v in config["names"]["tags"].items() if k not in ("enabled", "page_images")}


def tag_page(wildcards):
    """Thumbnails per tag of the gallery's tag page; None: no tags, no tag page."""
    return config["names"]["tags"]["page_images"] if tagged(wildcards.dataset) else None
