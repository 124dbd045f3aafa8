# The multi-label task's tables, wildcard constraints and the named functions that give its rules
# (workflow/rules/multilabel.smk) their inputs and config slices.

ML = config["multilabel"]
ML_TRAIN = ML["train"]
ML_LEARNERS = list(ML_TRAIN["learners"])
# the CLIP-Decoder head on cached patch tokens (backbone frozen), or on images with the encoder
DECODER_ON_TOKENS = "mldecoder" in ML_LEARNERS and ML_TRAIN["mldecoder"]["backbone"] == "frozen"
IMAGE_LEARNERS = [l for l in ML_LEARNERS if l == "finetune" or (l == "mldecoder" and not DECODER_ON_TOKENS)]
# zero-shot stages (CLIP alone, from the test split's pseudo-label table), the train split's initial
# pseudo-labels, each learner's test predictions and its refined latent labels (train split)
ML_STAGES = ["zs_global", "zs_local", "zs_final", "pseudo_train"]
ML_STAGES += ML_LEARNERS + [f"refined_{l}" for l in ML_LEARNERS if l != "mldecoder"]
OPENVOCAB_TABLES = ["ov_exact", "ov_hier"] if ML["openvocab"]["enabled"] else []


wildcard_constraints:
    mldataset=one_of(MLDATASETS),
    mlstage=one_of(ML_STAGES),
    image_learner=one_of(IMAGE_LEARNERS),


def ml_entry(wildcards):
    return config["datasets"][wildcards.mldataset]


def ml_builder(wildcards):
    """The builder's kind and keyword arguments (with `multilabel.prompt_style` where it takes one)."""
    from s3a.multilabel.data.registry import builder_params

    entry = ml_entry(wildcards)
    params = dict(entry.get("params") or {})
    if "prompt_style" in builder_params(entry["kind"]):
        params.setdefault("prompt_style", ML["prompt_style"])
    return {"kind": entry["kind"], "params": params}


def ml_setting(wildcards):
    return ml_entry(wildcards)["setting"]


def ml_supervision(wildcards):
    """The mldecoder learner's supervision: the dataset's own, else `multilabel.train.supervision`."""
    return ml_entry(wildcards).get("supervision") or ML_TRAIN["supervision"]


def ml_path(wildcards, path):
    return f"results/{wildcards.mldataset}/{wildcards.model}/ml/{path}"


def ml_stage_input(wildcards):
    """The table one evaluation stage scores."""
    stage = wildcards.mlstage
    if stage.startswith("zs_"):
        return ml_path(wildcards, "pseudo/test.parquet")
    if stage == "pseudo_train":
        return ml_path(wildcards, "pseudo/train.parquet")
    if stage.startswith("refined_"):
        return ml_path(wildcards, f"{stage.removeprefix('refined_')}/labels_refined.parquet")
    return ml_path(wildcards, f"{stage}/test.parquet")


def ml_stage_split(wildcards):
    stage = wildcards.mlstage
    return "train" if stage == "pseudo_train" or stage.startswith("refined_") else "test"


def learner_train(learner):
    """The `multilabel.train` slice of one learner: its own block and the shared keys it reads (not
    `learners` or the other learners' blocks, so adding a learner or changing another one's settings
    does not rerun it; `supervision` is the mldecoder learner's)."""
    shared = ["label_update", "asl", "seed"] + (["supervision"] if learner == "mldecoder" else [])
    return {**{k: ML_TRAIN[k] for k in shared}, learner: ML_TRAIN[learner]}


def ml_train_json(wildcards):
    return shlex.quote(json.dumps(learner_train(wildcards.image_learner), sort_keys=True))


def ml_pseudo_json(wildcards):
    return shlex.quote(json.dumps(ML["pseudo"], sort_keys=True))


def ml_eval_targets():
    return expand(
        "results/{mldataset}/{model}/ml/eval/{stage}.parquet",
        mldataset=MLDATASETS,
        model=MODELS,
        stage=ML_STAGES + OPENVOCAB_TABLES,
    )


def ml_targets():
    """The multi-label summary, when a multi-label dataset is selected."""
    return ["results/summary_multilabel.parquet"] if MLDATASETS else []
