# From raw files to what every model reads: download (or synthesize), clean, adjacency.


onstart:
    check_raw_sources()


rule download:
    output:
        layout.raw_path("{dataset}", "{filename}"),
    log:
        layout.job_log("download", "{dataset}", "{filename}"),
    benchmark:
        layout.job_benchmark("download", "{dataset}", "{filename}")
    params:
        file=lambda w: datasets.raw_files(config, w.dataset)[w.filename],
        mirror=config["mirror"],
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../../scripts/download.py"


rule synthesize:
    output:
        values=layout.raw_path("{dataset}", datasets.SYNTHETIC_VALUES),
        distance=layout.raw_path("{dataset}", datasets.SYNTHETIC_DISTANCE),
    log:
        layout.job_log("synthesize", "{dataset}"),
    benchmark:
        layout.job_benchmark("synthesize", "{dataset}")
    params:
        dataset=lambda w: config["datasets"][w.dataset],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../../scripts/synthesize.py"


rule clean:
    input:
        lambda w: layout.raw_path(w.dataset, datasets.values_source(config, w.dataset)["name"]),
    output:
        values=layout.clean_path("{dataset}", "values.parquet"),
        report=layout.clean_path("{dataset}", "fill_report.csv"),
        report_parquet=layout.clean_path("{dataset}", "fill_report.parquet"),
    log:
        layout.job_log("clean", "{dataset}"),
    benchmark:
        layout.job_benchmark("clean", "{dataset}")
    params:
        source=lambda w: datasets.values_source(config, w.dataset),
        dataset=lambda w: config["datasets"][w.dataset],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        CONDA_ENV
    script:
        "../../scripts/clean.py"


rule adjacency:
    input:
        lambda w: layout.raw_path(w.dataset, datasets.distance_source(config, w.dataset)["name"]),
    output:
        adjacency=layout.graph_path("{dataset}", "adjacency.parquet"),
        stats=layout.graph_path("{dataset}", "stats.json"),
    log:
        layout.job_log("adjacency", "{dataset}"),
    benchmark:
        layout.job_benchmark("adjacency", "{dataset}")
    params:
        source=lambda w: datasets.distance_source(config, w.dataset),
        dataset=lambda w: config["datasets"][w.dataset],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../../scripts/adjacency.py"
