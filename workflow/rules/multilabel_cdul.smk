# CDUL (MULTILABEL_SPEC 5-6; src/s3a/multilabel/cdul/): pseudo-labels from the global and tile views,
# then the gradient-alignment learners: `linear` on cached embeddings, and the image learners
# (`finetune`, and `mldecoder` with a fine-tuned tower; src/s3a/multilabel/imagetrain/) on images.


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
        # not read by the script: a change of the learner's settings reruns the predictions too
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
        " -m s3a.multilabel.imagetrain --learner {wildcards.image_learner} --manifest {input.manifest}"
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
