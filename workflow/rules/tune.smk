rule tune_worker:
    input:
        unpack(tune_inputs),
    output:
        "results/{dataset}/tuned/workers/{loss}_{worker}.json",
    log:
        "logs/tune_worker/{dataset}/{loss}_{worker}.log",
    benchmark:
        "benchmarks/tune_worker/{dataset}/{loss}_{worker}.tsv"
    wildcard_constraints:
        worker=r"\d+",
    params:
        run=lambda w: cfg.tuning_run(config, w.dataset, w.loss),
        space=lambda w: cfg.tuning_space(config, w.loss),
        switches=lambda w: cfg.tuning_switches(config, w.loss),
        tuning=config["tuning"],
        study=lambda w: cfg.tuning_study_path(w.dataset, w.loss),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=1440,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/tune_worker.py"


rule tune:
    input:
        lambda w: tune_worker_outputs(w.dataset, w.loss),
    output:
        values="results/{dataset}/tuned/{loss}.yaml",
        trials="results/{dataset}/tuned/{loss}_trials.parquet",
    log:
        "logs/tune/{dataset}/{loss}.log",
    benchmark:
        "benchmarks/tune/{dataset}/{loss}.tsv"
    params:
        name=lambda w: w.loss,
        space=lambda w: cfg.tuning_space(config, w.loss),
        tuning=config["tuning"],
        study=lambda w: cfg.tuning_study_path(w.dataset, w.loss),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/tune.py"


use rule tune_worker as tune_prune_worker with:
    input:
        unpack(tune_prune_inputs),
    output:
        "results/{dataset}/tuned/workers/pruned_{method}_{base}_{ratio}_{worker}.json",
    log:
        "logs/tune_prune_worker/{dataset}/{method}_{base}_{ratio}_{worker}.log",
    benchmark:
        "benchmarks/tune_prune_worker/{dataset}/{method}_{base}_{ratio}_{worker}.tsv"
    params:
        run=lambda w: cfg.prune_tuning_run(config, w.dataset, w.method, w.base, int(w.ratio)),
        space=lambda w: cfg.tuning_space(config, prune_loss(w)),
        switches=lambda w: cfg.tuning_switches(config, prune_loss(w)),
        tuning=config["tuning"],
        study=lambda w: cfg.tuning_study_path(w.dataset, cfg.pruned_name(w.method, w.base, w.ratio)),


use rule tune as tune_prune with:
    input:
        lambda w: tune_worker_outputs(w.dataset, cfg.pruned_name(w.method, w.base, w.ratio)),
    output:
        values="results/{dataset}/tuned/pruned_{method}_{base}_{ratio}.yaml",
        trials="results/{dataset}/tuned/pruned_{method}_{base}_{ratio}_trials.parquet",
    log:
        "logs/tune_prune/{dataset}/{method}_{base}_{ratio}.log",
    benchmark:
        "benchmarks/tune_prune/{dataset}/{method}_{base}_{ratio}.tsv"
    params:
        name=lambda w: cfg.pruned_name(w.method, w.base, w.ratio),
        space=lambda w: cfg.tuning_space(config, prune_loss(w)),
        tuning=config["tuning"],
        study=lambda w: cfg.tuning_study_path(w.dataset, cfg.pruned_name(w.method, w.base, w.ratio)),
