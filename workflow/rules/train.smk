# Self-training (spec 6) and the trained models' predictions.


rule self_train:
    input:
        manifest=rules.prepare_manifest.output[0],
        vocabulary=rules.build_vocabulary.output[0],
        classifier=rules.embed_vocabulary.output[0],
        structural_labels="results/{dataset}/{model}/discover/structural_labels.parquet",
        checkpoint=model_checkpoint,
    output:
        student="results/{dataset}/{model}/train/student.pt",
        teacher="results/{dataset}/{model}/train/teacher.pt",
        history="results/{dataset}/{model}/train/history.parquet",
        test_epochs="results/{dataset}/{model}/train/test_epochs.parquet",
    log:
        "logs/self_train/{dataset}/{model}.log",
    benchmark:
        "benchmarks/self_train/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
        runtime=config["compute"]["train_runtime"],
    params:
        device="cpu" if config["compute"]["gpu"] == 0 else "auto",
        model=model_json,
        train=train_json,
        state="resources/train/{dataset}/{model}/state.pt",
    shell:
        # one process per GPU the job was given (so `--set-resources self_train:gpu=4` trains on 4)
        "torchrun --standalone --nproc_per_node=$(( {resources.gpu} > 1 ? {resources.gpu} : 1 ))"
        " -m s3a.train --manifest {input.manifest} --vocabulary {input.vocabulary}"
        " --classifier {input.classifier} --structural-labels {input.structural_labels}"
        " --student {output.student} --teacher {output.teacher} --history {output.history}"
        " --test-epochs {output.test_epochs} --state {params.state}"
        " --model {params.model} --params {params.train} --device {params.device} > {log} 2>&1"


rule predict:
    input:
        manifest=rules.prepare_manifest.output[0],
        classifier=rules.embed_vocabulary.output[0],
        student=rules.self_train.output.student,
        teacher=rules.self_train.output.teacher,
        checkpoint=model_checkpoint,
    output:
        "results/{dataset}/{model}/train/{split}.parquet",
    log:
        "logs/predict/{dataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/predict/{dataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        batch_size=config["embed"]["batch_size"],
        decoder=config["embed"]["decoder"],
        runner_ups=config["names"]["runner_ups"],
    script:
        "../scripts/predict.py"
