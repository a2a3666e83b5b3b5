# Models: the teacher, the pruning base and the students (train), their pruned models (prune), and the test
# metrics of each (evaluate). One folder per model: results/<dataset>/seed<seed>/<model>/.


rule train:
    input:
        unpack(train_inputs),
    output:
        model=layout.run_file("{dataset}", "{seed}", "{model}", "model.pt"),
        history=layout.run_file("{dataset}", "{seed}", "{model}", "history.parquet"),
        info=layout.run_file("{dataset}", "{seed}", "{model}", "info.json"),
    log:
        layout.job_log("train", "{dataset}", "seed{seed}", "{model}"),
    benchmark:
        layout.job_benchmark("train", "{dataset}", "seed{seed}", "{model}")
    wildcard_constraints:
        model=layout.TRAINED_PATTERN,
    params:
        run=lambda w: train_run(w).to_dict(),
        checkpoint=lambda w: layout.run_file(w.dataset, w.seed, w.model, "checkpoint.pt"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../../scripts/train.py"


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model=layout.run_file("{dataset}", "{seed}", "{model}", "model.pt"),
        masked=layout.run_file("{dataset}", "{seed}", "{model}", "masked_model.pt"),
        steps=layout.run_file("{dataset}", "{seed}", "{model}", "pruning_steps.parquet"),
        history=layout.run_file("{dataset}", "{seed}", "{model}", "history.parquet"),
        info=layout.run_file("{dataset}", "{seed}", "{model}", "info.json"),
    log:
        layout.job_log("prune", "{dataset}", "seed{seed}", "{model}"),
    benchmark:
        layout.job_benchmark("prune", "{dataset}", "seed{seed}", "{model}")
    wildcard_constraints:
        model=layout.PRUNED_MODEL_PATTERN,
    params:
        run=lambda w: prune_run(w).to_dict(),
        checkpoint=lambda w: layout.run_file(w.dataset, w.seed, w.model, "checkpoint.pt"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=prune_mem_mb,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../../scripts/prune.py"


rule evaluate:
    input:
        unpack(prepared_inputs),
        model=layout.run_file("{dataset}", "{seed}", "{model}", "model.pt"),
    output:
        metrics=layout.run_file("{dataset}", "{seed}", "{model}", "metrics.csv"),
        metrics_parquet=layout.run_file("{dataset}", "{seed}", "{model}", "metrics.parquet"),
        predictions=layout.run_file("{dataset}", "{seed}", "{model}", "predictions.npz"),
    log:
        layout.job_log("evaluate", "{dataset}", "seed{seed}", "{model}"),
    benchmark:
        layout.job_benchmark("evaluate", "{dataset}", "seed{seed}", "{model}")
    params:
        data=lambda w: datasets.data_spec(config, w.dataset),
        horizons=config["model"]["horizons"],
        step_minutes=config["model"]["step_minutes"],
        device=config["device"],
        eval_batch_size=config["training"]["eval_batch_size"],
        paper_name=lambda w: config["datasets"][w.dataset]["paper_name"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=evaluate_mem_mb,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../../scripts/evaluate.py"
