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
        switches=config["tuning"]["switches"],
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
