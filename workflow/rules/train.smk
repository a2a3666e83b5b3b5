rule train_teacher:
    input:
        unpack(prepared_inputs),
    output:
        model="results/{dataset}/seed{seed}/teacher/model.pt",
        history="results/{dataset}/seed{seed}/teacher/history.parquet",
        info="results/{dataset}/seed{seed}/teacher/info.json",
    log:
        "logs/train_teacher/{dataset}/seed{seed}.log",
    benchmark:
        "benchmarks/train_teacher/{dataset}/seed{seed}.tsv"
    params:
        run=lambda w: cfg.reference_run(config, w.dataset, "teacher", w.seed),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, 'teacher')}/checkpoint.pt",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/train.py"


use rule train_teacher as train_pruning_base with:
    output:
        model="results/{dataset}/seed{seed}/pruning_base/model.pt",
        history="results/{dataset}/seed{seed}/pruning_base/history.parquet",
        info="results/{dataset}/seed{seed}/pruning_base/info.json",
    log:
        "logs/train_pruning_base/{dataset}/seed{seed}.log",
    benchmark:
        "benchmarks/train_pruning_base/{dataset}/seed{seed}.tsv"
    params:
        run=lambda w: cfg.reference_run(config, w.dataset, "pruning_base", w.seed),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, 'pruning_base')}/checkpoint.pt",


use rule train_teacher as train_student with:
    input:
        unpack(student_inputs),
    output:
        model="results/{dataset}/seed{seed}/student_{loss}/model.pt",
        history="results/{dataset}/seed{seed}/student_{loss}/history.parquet",
        info="results/{dataset}/seed{seed}/student_{loss}/info.json",
    log:
        "logs/train_student/{dataset}/seed{seed}/{loss}.log",
    benchmark:
        "benchmarks/train_student/{dataset}/seed{seed}/{loss}.tsv"
    params:
        run=lambda w: cfg.student_run(config, w.dataset, w.loss, w.seed),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, f'student_{w.loss}')}/checkpoint.pt",


use rule train_teacher as train_sourced_student with:
    input:
        unpack(student_inputs),
    output:
        model="results/{dataset}/seed{seed}/student_{loss}_{source}/model.pt",
        history="results/{dataset}/seed{seed}/student_{loss}_{source}/history.parquet",
        info="results/{dataset}/seed{seed}/student_{loss}_{source}/info.json",
    log:
        "logs/train_student/{dataset}/seed{seed}/{loss}_{source}.log",
    benchmark:
        "benchmarks/train_student/{dataset}/seed{seed}/{loss}_{source}.tsv"
    params:
        run=lambda w: cfg.student_run(config, w.dataset, w.loss, w.seed, role=f"student_{w.loss}_{w.source}"),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, f'student_{w.loss}_{w.source}')}/checkpoint.pt",


rule evaluate:
    input:
        unpack(prepared_inputs),
        model="results/{dataset}/seed{seed}/{model}/model.pt",
    output:
        metrics="results/{dataset}/seed{seed}/{model}/metrics.csv",
        metrics_parquet="results/{dataset}/seed{seed}/{model}/metrics.parquet",
        predictions="results/{dataset}/seed{seed}/{model}/predictions.npz",
    log:
        "logs/evaluate/{dataset}/seed{seed}/{model}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/seed{seed}/{model}.tsv"
    params:
        data=lambda w: cfg.data_spec(config, w.dataset),
        horizons=config["model"]["horizons"],
        step_minutes=config["model"]["step_minutes"],
        device=config["device"],
        eval_batch_size=config["training"]["eval_batch_size"],
        paper_name=lambda w: config["datasets"][w.dataset]["paper_name"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/evaluate.py"


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}/model.pt",
        masked="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}/masked_model.pt",
        steps="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}/pruning_steps.parquet",
        history="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}/history.parquet",
        info="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}/info.json",
    log:
        "logs/prune/{dataset}/seed{seed}/{method}_{base}_{ratio}.log",
    benchmark:
        "benchmarks/prune/{dataset}/seed{seed}/{method}_{base}_{ratio}.tsv"
    params:
        run=lambda w: cfg.prune_run(config, w.dataset, w.method, w.base, int(w.ratio), w.seed),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, cfg.pruned_name(w.method, w.base, w.ratio))}/checkpoint.pt",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/prune.py"


use rule prune as prune_sourced with:
    output:
        model="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}_{source}/model.pt",
        masked="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}_{source}/masked_model.pt",
        steps="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}_{source}/pruning_steps.parquet",
        history="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}_{source}/history.parquet",
        info="results/{dataset}/seed{seed}/pruned_{method}_{base}_{ratio}_{source}/info.json",
    log:
        "logs/prune/{dataset}/seed{seed}/{method}_{base}_{ratio}_{source}.log",
    benchmark:
        "benchmarks/prune/{dataset}/seed{seed}/{method}_{base}_{ratio}_{source}.tsv"
    params:
        run=lambda w: cfg.prune_run(config, w.dataset, w.method, w.base, int(w.ratio), w.seed,
                                    role=f"{cfg.pruned_name(w.method, w.base, w.ratio)}_{w.source}"),
        checkpoint=lambda w: f"{cfg.run_dir(w.dataset, w.seed, cfg.pruned_name(w.method, w.base, w.ratio))}_{w.source}/checkpoint.pt",
