onstart:
    check_raw_sources()


rule download:
    output:
        "results/{dataset}/raw/{filename}",
    log:
        "logs/download/{dataset}/{filename}.log",
    benchmark:
        "benchmarks/download/{dataset}/{filename}.tsv"
    params:
        file=lambda w: cfg.raw_files(config, w.dataset)[w.filename],
        mirror=config["mirror"],
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/download.py"


rule synthesize:
    output:
        values=f"results/{{dataset}}/raw/{cfg.SYNTHETIC_VALUES}",
        distance=f"results/{{dataset}}/raw/{cfg.SYNTHETIC_DISTANCE}",
    log:
        "logs/synthesize/{dataset}.log",
    benchmark:
        "benchmarks/synthesize/{dataset}.tsv"
    params:
        dataset=lambda w: config["datasets"][w.dataset],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/synthesize.py"


rule clean:
    input:
        lambda w: raw_path(w.dataset, cfg.values_source(config, w.dataset)["name"]),
    output:
        values="results/{dataset}/clean/values.parquet",
        report="results/{dataset}/clean/fill_report.csv",
        report_parquet="results/{dataset}/clean/fill_report.parquet",
    log:
        "logs/clean/{dataset}.log",
    benchmark:
        "benchmarks/clean/{dataset}.tsv"
    params:
        source=lambda w: cfg.values_source(config, w.dataset),
        dataset=lambda w: config["datasets"][w.dataset],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/clean.py"


rule adjacency:
    input:
        lambda w: raw_path(w.dataset, cfg.distance_source(config, w.dataset)["name"]),
    output:
        adjacency="results/{dataset}/graph/adjacency.parquet",
        stats="results/{dataset}/graph/stats.json",
    log:
        "logs/adjacency/{dataset}.log",
    benchmark:
        "benchmarks/adjacency/{dataset}.tsv"
    params:
        source=lambda w: cfg.distance_source(config, w.dataset),
        dataset=lambda w: config["datasets"][w.dataset],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/adjacency.py"
