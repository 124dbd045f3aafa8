# The CLIP-Decoder head on cached patch tokens (MULTILABEL_SPEC 7; src/s3a/multilabel/decoder/), when
# `multilabel.train.mldecoder.backbone` is frozen (a fine-tuned tower trains in train_images).


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
            # not read by the script: a change of the learner's settings reruns the predictions too
            train=learner_train("mldecoder"),
        script:
            "../scripts/predict_mldecoder.py"
