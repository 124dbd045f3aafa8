# S3A: realistic zero-shot classification as a Snakemake workflow.
# Entry point only: configuration, rule files, and the named targets.
from snakemake.utils import min_version

min_version("9.19")


# every rule's software with `--software-deployment-method conda` (Python and this package at the
# tested versions of constraints.txt); without it, rules run `python` and `torchrun` from PATH (the venv)
conda: "workflow/envs/s3a.yaml"


# a `--configfile` given on the command line replaces the default config (no merge); `--config` updates it
CONFIGFILES = ["config/config.yaml"]
if not workflow.overwrite_configfiles:
    from s3a.configcheck import yaml_problem

    if problem := yaml_problem(CONFIGFILES[0]):  # file, line and column, not Snakemake's generic message
        raise SystemExit(f"Configuration error: {problem}")

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/discover.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tags.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/multilabel_common.smk"
include: "workflow/rules/multilabel.smk"
include: "workflow/rules/multilabel_cdul.smk"
include: "workflow/rules/multilabel_decoder.smk"
include: "workflow/rules/multilabel_openvocab.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        summary_targets(),
        report_targets(),
        names_targets(),
        gallery_targets(),
        ml_targets(),


rule all_names:
    input:
        names_targets(),
        gallery_targets(),


rule all_zero_shot:
    input:
        zero_shot_targets(),


rule all_multilabel:
    input:
        ml_targets(),


rule all_embeddings:
    input:
        embedding_targets(),


onstart:
    # what would fail a job later (folder, LLM key, torchrun, weights), one line each, before the first job
    check_jobs()


onsuccess:
    # where the names are, as the run's last lines (after Snakemake's own closing log line)
    import atexit

    atexit.register(print_names_paths)
