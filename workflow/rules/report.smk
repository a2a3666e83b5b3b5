# The paper's tables, figures and summary from the trained models. Each rule's params carry only the config it
# reads, so that changing anything else (tuning, timing, ...) leaves its outputs alone.


rule metric_table:
    input:
        lambda w: run_files([r["model"] for r in table_rows(int(w.number))], "metrics.csv"),
    output:
        csv=report(layout.table_path("{number}", "csv"), caption="../report/metric_table.rst",
                   category="Table downloads (CSV)"),
        parquet=layout.table_path("{number}", "parquet"),
    log:
        layout.job_log("metric_table", "table{number}"),
    benchmark:
        layout.job_benchmark("metric_table", "table{number}")
    wildcard_constraints:
        number="2|4|5|7|8",
    params:
        rows=lambda w: table_rows(int(w.number)),
        datasets=report_rows.dataset_facts(config),
        seeds=config["seeds"],
        paper_epochs=config["training"]["paper_epochs"],
        hyperparameter_sources=hyperparameter_sources("distillation", "pruning"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/metric_table.py"


rule teacher_share_table:
    input:
        run_files(report_rows.share_models(LOSSES), "info.json"),
    output:
        csv=report(layout.table_path(3, "csv"), caption="../report/table3.rst", category="Table downloads (CSV)"),
        parquet=layout.table_path(3, "parquet"),
    log:
        layout.job_log("teacher_share_table", "table3"),
    benchmark:
        layout.job_benchmark("teacher_share_table", "table3")
    params:
        models=report_rows.share_models(LOSSES),
        datasets=report_rows.dataset_facts(config),
        seeds=config["seeds"],
        paper_epochs=config["training"]["paper_epochs"],
        hyperparameter_sources=hyperparameter_sources("distillation"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/teacher_share_table.py"


rule hyperparameter_table:
    output:
        csv=report(layout.table_path(6, "csv"), caption="../report/table6.rst", category="Table downloads (CSV)"),
        parquet=layout.table_path(6, "parquet"),
    log:
        layout.job_log("hyperparameter_table", "table6"),
    benchmark:
        layout.job_benchmark("hyperparameter_table", "table6")
    params:
        hyperparameters=config["distillation"]["hyperparameters"],
        datasets=report_rows.dataset_facts(config),
        seeds=config["seeds"],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/hyperparameter_table.py"


rule pruning_hyperparameter_table:
    output:
        csv=report(layout.table_path(9, "csv"), caption="../report/table9.rst", category="Table downloads (CSV)"),
        parquet=layout.table_path(9, "parquet"),
    log:
        layout.job_log("pruning_hyperparameter_table", "table9"),
    benchmark:
        layout.job_benchmark("pruning_hyperparameter_table", "table9")
    params:
        hyperparameters=config["pruning"]["hyperparameters"],
        datasets=report_rows.dataset_facts(config),
        seeds=config["seeds"],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/pruning_hyperparameter_table.py"


rule measure_cost:
    input:
        unpack(prepared_inputs),
        models=lambda w: [layout.run_file(w.dataset, seeds()[0], m, "model.pt") for m in cost_models()],
        starts=lambda w: [layout.deploy_files(w.dataset, seeds()[0], m)["start"] for m in cost_models()],
        streams=lambda w: [layout.deploy_files(w.dataset, seeds()[0], m)["stream"] for m in cost_models()],
    output:
        layout.costs_path("{dataset}"),
    log:
        layout.job_log("measure_cost", "{dataset}"),
    benchmark:
        layout.job_benchmark("measure_cost", "{dataset}")
    params:
        models=cost_models(),
        data=lambda w: datasets.data_spec(config, w.dataset),
        timing=config["timing"],
        device=config["device"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../../scripts/measure_cost.py"


rule cost_table:
    input:
        [layout.costs_path(d) for d in config["run_datasets"]],
    output:
        csv=report(layout.table_path(1, "csv"), caption="../report/table1.rst", category="Table downloads (CSV)"),
        parquet=layout.table_path(1, "parquet"),
    log:
        layout.job_log("cost_table", "table1"),
    benchmark:
        layout.job_benchmark("cost_table", "table1")
    params:
        datasets=report_rows.dataset_facts(config),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/cost_table.py"


rule table_page:
    input:
        layout.table_path("{number}", "parquet"),
    output:
        report(layout.table_path("{number}", "html"), caption="../report/table_page.rst", category="Tables"),
    log:
        layout.job_log("table_page", "table{number}"),
    benchmark:
        layout.job_benchmark("table_page", "table{number}")
    wildcard_constraints:
        number="[1-9]",
    params:
        datasets=report_rows.dataset_facts(config),
        budget=report_rows.budget(config),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/table_page.py"


# --- figures


rule figure3:
    input:
        predictions(figure3_models()),
    output:
        report(layout.figure_path("figure3_{dataset}"), caption="../report/figure3.rst", category="Figures"),
    log:
        layout.job_log("figure3", "{dataset}"),
    benchmark:
        layout.job_benchmark("figure3", "{dataset}")
    params:
        figures=config["figures"],
        step_minutes=config["model"]["step_minutes"],
        quantity=lambda w: datasets.quantity(config, w.dataset),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/figure.py"


use rule figure3 as figure4 with:
    input:
        predictions(figure4_models()),
    output:
        report(layout.figure_path("figure4_{dataset}"), caption="../report/figure4.rst", category="Figures"),
    log:
        layout.job_log("figure4", "{dataset}"),
    benchmark:
        layout.job_benchmark("figure4", "{dataset}")


use rule figure3 as figure5 with:
    input:
        predictions(figure5_models()),
    output:
        report(layout.figure_path("figure5_{dataset}"), caption="../report/figure5.rst", category="Figures"),
    log:
        layout.job_log("figure5", "{dataset}"),
    benchmark:
        layout.job_benchmark("figure5", "{dataset}")


rule tsne:
    input:
        unpack(prepared_inputs),
        student=lambda w: layout.run_file(w.dataset, seeds()[0], w.student, "model.pt"),
        reference=lambda w: layout.run_file(w.dataset, seeds()[0], w.reference, "model.pt"),
    output:
        report(layout.figure_path("tsne_{dataset}_{student}_vs_{reference}"), caption="../report/tsne.rst",
               category="Figures"),
    log:
        layout.job_log("tsne", "{dataset}_{student}_vs_{reference}"),
    benchmark:
        layout.job_benchmark("tsne", "{dataset}_{student}_vs_{reference}")
    wildcard_constraints:
        student=r"student_[a-z0-9_]+|pruned_[a-z0-9_]+",
        reference="|".join(layout.REFERENCE_MODELS),
    params:
        data=lambda w: datasets.data_spec(config, w.dataset),
        figures=config["figures"],
        seed=seeds()[0],
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../../scripts/tsne.py"


rule loss_anatomy:
    input:
        anatomy_inputs,
    output:
        png=report(layout.figure_path("anatomy_{dataset}"), caption="../report/anatomy.rst", category="Figures"),
        csv=layout.anatomy_path("{dataset}"),
    log:
        layout.job_log("loss_anatomy", "{dataset}"),
    benchmark:
        layout.job_benchmark("loss_anatomy", "{dataset}")
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/anatomy.py"


# --- the deployable models (beyond the paper), the verdict and the summary


rule deployable_table:
    input:
        unpack(deployable_inputs),
    output:
        csv=report(layout.deployable_path("csv"), caption="../report/deployable.rst",
                   category="Table downloads (CSV)"),
        parquet=layout.deployable_path("parquet"),
    log:
        layout.job_log("deployable_table", "deployable"),
    benchmark:
        layout.job_benchmark("deployable_table", "deployable")
    params:
        models=deployable_models(),
        datasets=config["run_datasets"],
        deployable=config["deployable"],
        test_days={d: config["datasets"][d]["split"][2] for d in config["run_datasets"]},
        horizons=config["model"]["horizons"],
        step_minutes=config["model"]["step_minutes"],
        seeds=config["seeds"],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/deployable_table.py"


rule deployable_figure:
    input:
        layout.deployable_path("parquet"),
    output:
        report(layout.deployable_path("png"), caption="../report/deployable.rst", category="Figures"),
    log:
        layout.job_log("deployable_figure", "deployable"),
    benchmark:
        layout.job_benchmark("deployable_figure", "deployable")
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/deployable_figure.py"


rule verdict_table:
    input:
        unpack(verdict_inputs),
    output:
        csv=report(layout.verdict_path("csv"), caption="../report/verdict.rst", category="Table downloads (CSV)"),
        parquet=layout.verdict_path("parquet"),
    log:
        layout.job_log("verdict_table", "verdict"),
    benchmark:
        layout.job_benchmark("verdict_table", "verdict")
    params:
        verdict=config["verdict"],
        runs=report_rows.verdict_runs(config),
        datasets=report_rows.dataset_facts(config),
        test_days={d: config["datasets"][d]["split"][2] for d in config["run_datasets"]},
        horizons=config["model"]["horizons"],
        step_minutes=config["model"]["step_minutes"],
        seeds=config["seeds"],
        paper_epochs=config["training"]["paper_epochs"],
        pruning=config["pruning"],
        deployable=config["deployable"],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/verdict_table.py"


rule verdict_figure:
    input:
        layout.verdict_path("parquet"),
    output:
        report(layout.verdict_figure_path(), caption="../report/verdict_figure.rst", category="Figures"),
    log:
        layout.job_log("verdict_figure", "verdict"),
    benchmark:
        layout.job_benchmark("verdict_figure", "verdict")
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/verdict_figure.py"


rule summary:
    input:
        unpack(lambda w: {f"table{n}": layout.table_path(n, "parquet") for n in report_rows.SUMMARY_TABLES}),
        verdict=layout.verdict_path("parquet"),
    output:
        markdown=report(layout.summary_path("md"), caption="../report/summary.rst", category="Summary"),
        html=report(layout.summary_path("html"), caption="../report/summary.rst", category="Summary"),
    log:
        layout.job_log("summary", "summary"),
    benchmark:
        layout.job_benchmark("summary", "summary")
    params:
        pruning=config["pruning"],
        datasets=report_rows.dataset_facts(config),
        budget=report_rows.budget(config),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../../scripts/summary.py"
