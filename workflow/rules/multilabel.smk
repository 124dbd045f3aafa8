# The multi-label task (datasets whose kind is a multi-label builder): CDUL pseudo-labels from global
# and tile views, gradient-alignment learners, the CLIP-Decoder head, open-vocabulary multi-label,
# multi-label metrics. Each rule's params carry only its slice of `multilabel`, so changing
# `multilabel.pseudo.zeta` reruns init_pseudolabels onward and never embed_tiles.


localrules:
    summarize_multilabel,


rule prepare_multilabel:
    output:
        manifest="results/{mldataset}/manifest.parquet",
        labels="results/{mldataset}/labels.parquet",
        label_set="results/{mldataset}/label_set.parquet",
    log:
        "logs/prepare_multilabel/{mldataset}.log",
    benchmark:
        "benchmarks/prepare_multilabel/{mldataset}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=16000,
    params:
        kind=lambda w: ml_builder(w)["kind"],
        params=lambda w: ml_builder(w)["params"],
    script:
        "../scripts/prepare_multilabel.py"


rule embed_label_set:
    input:
        label_set=rules.prepare_multilabel.output.label_set,
        checkpoint=model_checkpoint,
    output:
        "results/{mldataset}/{model}/ml/label_classifier.parquet",
    log:
        "logs/embed_label_set/{mldataset}/{model}.log",
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        templates=ML["templates"],
        batch_size=config["embed"]["text_batch_size"],
    script:
        "../scripts/embed_label_set.py"


rule embed_tiles:
    input:
        manifest=rules.prepare_multilabel.output.manifest,
        checkpoint=model_checkpoint,
    output:
        "results/{mldataset}/{model}/ml/tiles/{split}.parquet",
    log:
        "logs/embed_tiles/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/embed_tiles/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        tiles=ML["tiles"],
    script:
        "../scripts/embed_tiles.py"


rule init_pseudolabels:
    input:
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles=rules.embed_tiles.output[0],
        classifier=rules.embed_label_set.output[0],
    output:
        "results/{mldataset}/{model}/ml/pseudo/{split}.parquet",
    log:
        "logs/init_pseudolabels/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/init_pseudolabels/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        pseudo=ML["pseudo"],
    script:
        "../scripts/init_pseudolabels.py"


rule train_linear:
    input:
        pseudo="results/{mldataset}/{model}/ml/pseudo/train.parquet",
        embeddings="results/{mldataset}/{model}/embed/train.parquet",
        tiles="results/{mldataset}/{model}/ml/tiles/train.parquet",
        classifier=rules.embed_label_set.output[0],
        labels=rules.prepare_multilabel.output.labels,
        manifest=rules.prepare_multilabel.output.manifest,
    output:
        model="results/{mldataset}/{model}/ml/linear/model.pt",
        history="results/{mldataset}/{model}/ml/linear/history.parquet",
        labels="results/{mldataset}/{model}/ml/linear/labels_refined.parquet",
    log:
        "logs/train_linear/{mldataset}/{model}.log",
    benchmark:
        "benchmarks/train_linear/{mldataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        mem_mb=16000,
    params:
        train=learner_train("linear"),
        pseudo=ML["pseudo"],
        state="resources/ml_train/{mldataset}/{model}/linear/state.pt",
    script:
        "../scripts/train_linear.py"


rule predict_linear:
    input:
        model=rules.train_linear.output.model,
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles="results/{mldataset}/{model}/ml/tiles/{split}.parquet",
    output:
        "results/{mldataset}/{model}/ml/linear/{split}.parquet",
    log:
        "logs/predict_linear/{mldataset}/{model}-{split}.log",
    conda:
        "../envs/s3a.yaml"
    threads: 2
    params:
        train=learner_train("linear"),
    script:
        "../scripts/predict_linear.py"


rule train_images:
    # finetune, and mldecoder with backbone finetune: the CLIP visual encoder trained on images,
    # one process per GPU the job was given (`--set-resources train_images:gpu=4` trains on 4)
    input:
        manifest=rules.prepare_multilabel.output.manifest,
        classifier=rules.embed_label_set.output[0],
        pseudo="results/{mldataset}/{model}/ml/pseudo/train.parquet",
        labels=rules.prepare_multilabel.output.labels,
        label_set=rules.prepare_multilabel.output.label_set,
        checkpoint=model_checkpoint,
    output:
        model="results/{mldataset}/{model}/ml/{image_learner}/model.pt",
        history="results/{mldataset}/{model}/ml/{image_learner}/history.parquet",
        labels="results/{mldataset}/{model}/ml/{image_learner}/labels_refined.parquet",
    log:
        "logs/train_images/{mldataset}/{model}-{image_learner}.log",
    benchmark:
        "benchmarks/train_images/{mldataset}/{model}-{image_learner}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
        runtime=config["compute"]["train_runtime"],
    params:
        device="cpu" if config["compute"]["gpu"] == 0 else "auto",
        model=model_json,
        train=ml_train_json,
        pseudo=ml_pseudo_json,
        supervision=ml_supervision,
        state="resources/ml_train/{mldataset}/{model}/{image_learner}/state.pt",
    shell:
        "torchrun --standalone --nproc_per_node=$(( {resources.gpu} > 1 ? {resources.gpu} : 1 ))"
        " -m s3a.multilabel.train --learner {wildcards.image_learner} --manifest {input.manifest}"
        " --label-classifier {input.classifier} --pseudo {input.pseudo} --labels {input.labels}"
        " --label-set {input.label_set} --supervision {params.supervision} --model {params.model}"
        " --params {params.train} --pseudo-params {params.pseudo} --device {params.device}"
        " --out-model {output.model} --out-history {output.history} --out-labels {output.labels}"
        " --state {params.state} > {log} 2>&1"


rule predict_images:
    input:
        model=rules.train_images.output.model,
        manifest=rules.prepare_multilabel.output.manifest,
        checkpoint=model_checkpoint,
    output:
        "results/{mldataset}/{model}/ml/{image_learner}/{split}.parquet",
    log:
        "logs/predict_images/{mldataset}/{model}-{image_learner}-{split}.log",
    benchmark:
        "benchmarks/predict_images/{mldataset}/{model}-{image_learner}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        batch_size=config["embed"]["batch_size"],
        decoder=config["embed"]["decoder"],
        num_workers=lambda w: ML_TRAIN[w.image_learner]["num_workers"],
    script:
        "../scripts/predict_images.py"


if DECODER_ON_TOKENS:

    rule embed_patch_tokens:
        input:
            manifest=rules.prepare_multilabel.output.manifest,
            checkpoint=model_checkpoint,
        output:
            tokens="results/{mldataset}/{model}/ml/tokens/{split}.npy",
            ids="results/{mldataset}/{model}/ml/tokens/{split}_ids.parquet",
        log:
            "logs/embed_patch_tokens/{mldataset}/{model}-{split}.log",
        benchmark:
            "benchmarks/embed_patch_tokens/{mldataset}/{model}-{split}.tsv"
        conda:
            "../envs/s3a.yaml"
        threads: config["compute"]["cpus_per_gpu"]
        resources:
            **gpu_resources(),
        params:
            model=model_spec,
            batch_size=config["embed"]["batch_size"],
            decoder=config["embed"]["decoder"],
        script:
            "../scripts/embed_patch_tokens.py"

    rule train_mldecoder:
        input:
            tokens="results/{mldataset}/{model}/ml/tokens/train.npy",
            ids="results/{mldataset}/{model}/ml/tokens/train_ids.parquet",
            classifier=rules.embed_label_set.output[0],
            pseudo="results/{mldataset}/{model}/ml/pseudo/train.parquet",
            manifest=rules.prepare_multilabel.output.manifest,
            labels=rules.prepare_multilabel.output.labels,
            label_set=rules.prepare_multilabel.output.label_set,
        output:
            model="results/{mldataset}/{model}/ml/mldecoder/model.pt",
            history="results/{mldataset}/{model}/ml/mldecoder/history.parquet",
        log:
            "logs/train_mldecoder/{mldataset}/{model}.log",
        benchmark:
            "benchmarks/train_mldecoder/{mldataset}/{model}.tsv"
        conda:
            "../envs/s3a.yaml"
        threads: config["compute"]["cpus_per_gpu"]
        resources:
            **gpu_resources(),
            runtime=config["compute"]["train_runtime"],
        params:
            train=learner_train("mldecoder"),
            pseudo=ML["pseudo"],
            supervision=ml_supervision,
            state="resources/ml_train/{mldataset}/{model}/mldecoder/state.pt",
        script:
            "../scripts/train_mldecoder.py"

    rule predict_mldecoder:
        input:
            model=rules.train_mldecoder.output.model,
            tokens="results/{mldataset}/{model}/ml/tokens/{split}.npy",
            ids="results/{mldataset}/{model}/ml/tokens/{split}_ids.parquet",
            classifier=rules.embed_label_set.output[0],
        output:
            "results/{mldataset}/{model}/ml/mldecoder/{split}.parquet",
        log:
            "logs/predict_mldecoder/{mldataset}/{model}-{split}.log",
        conda:
            "../envs/s3a.yaml"
        threads: config["compute"]["cpus_per_gpu"]
        resources:
            **gpu_resources(),
        params:
            train=learner_train("mldecoder"),
        script:
            "../scripts/predict_mldecoder.py"


rule evaluate_multilabel:
    input:
        scores=ml_stage_input,
        manifest=rules.prepare_multilabel.output.manifest,
        labels=rules.prepare_multilabel.output.labels,
        label_set=rules.prepare_multilabel.output.label_set,
    output:
        "results/{mldataset}/{model}/ml/eval/{mlstage}.parquet",
    log:
        "logs/evaluate_multilabel/{mldataset}/{model}-{mlstage}.log",
    benchmark:
        "benchmarks/evaluate_multilabel/{mldataset}/{model}-{mlstage}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        stage=lambda w: w.mlstage,
        split=ml_stage_split,
        setting=ml_setting,
        evaluate=ML["evaluate"],
        pseudo=ML["pseudo"],
    script:
        "../scripts/evaluate_multilabel.py"


rule openvocab_scores:
    input:
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles=rules.embed_tiles.output[0],
        vocabulary=rules.embed_vocabulary.output[0],
    output:
        "results/{mldataset}/{model}/ml/openvocab/{split}.parquet",
    log:
        "logs/openvocab_scores/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/openvocab_scores/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        openvocab=ML["openvocab"],
    script:
        "../scripts/openvocab_scores.py"


rule openvocab_labels:
    input:
        views=rules.openvocab_scores.output[0],
        label_set=rules.prepare_multilabel.output.label_set,
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles=rules.embed_tiles.output[0],
        vocabulary=rules.embed_vocabulary.output[0],
    output:
        scores="results/{mldataset}/{model}/ml/openvocab/scores_{split}.parquet",
        discovered="results/{mldataset}/{model}/ml/openvocab/discovered_{split}.parquet",
    log:
        "logs/openvocab_labels/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/openvocab_labels/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        openvocab=ML["openvocab"],
        pseudo=ML["pseudo"],
        kmeans=config["discover"]["kmeans"],
        vote=config["discover"]["vote"],
    script:
        "../scripts/openvocab_labels.py"


rule evaluate_openvocab:
    input:
        scores="results/{mldataset}/{model}/ml/openvocab/scores_test.parquet",
        discovered="results/{mldataset}/{model}/ml/openvocab/discovered_test.parquet",
        labels=rules.prepare_multilabel.output.labels,
        label_set=rules.prepare_multilabel.output.label_set,
        manifest=rules.prepare_multilabel.output.manifest,
        vocabulary=rules.build_vocabulary.output[0],
    output:
        exact="results/{mldataset}/{model}/ml/eval/ov_exact.parquet",
        hier="results/{mldataset}/{model}/ml/eval/ov_hier.parquet",
    log:
        "logs/evaluate_openvocab/{mldataset}/{model}.log",
    benchmark:
        "benchmarks/evaluate_openvocab/{mldataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        openvocab=ML["openvocab"],
    script:
        "../scripts/evaluate_openvocab.py"


rule summarize_multilabel:
    input:
        ml_eval_targets(),
    output:
        parquet="results/summary_multilabel.parquet",
        md="results/summary_multilabel.md",
        html=report(
            "results/report/multilabel.html",
            caption="../report/multilabel.rst",
            category="Summary",
        ),
    log:
        "logs/summarize_multilabel/summary.log",
    conda:
        "../envs/s3a.yaml"
    params:
        random_weights=random_weight_models(),
    script:
        "../scripts/summarize_multilabel.py"
