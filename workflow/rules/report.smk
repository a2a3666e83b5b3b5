rule metric_table:
    input:
        lambda w: metric_table_inputs(paper_report.table_rows(int(w.number), config)),
    output:
        csv=report("results/table{number}.csv", caption="../report/metric_table.rst", category="Table downloads (CSV)"),
        parquet="results/table{number}.parquet",
    log:
        "logs/metric_table/table{number}.log",
    benchmark:
        "benchmarks/metric_table/table{number}.tsv"
    wildcard_constraints:
        number="2|4|5|7|8",
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/metric_table.py"


rule teacher_share_table:
    input:
        lambda w: student_info_inputs(
            [m for m in paper_report.SHARE_MODELS if m[len("student_"):] in config["distillation"]["losses"]]
        ),
    output:
        csv=report("results/table3.csv", caption="../report/table3.rst", category="Table downloads (CSV)"),
        parquet="results/table3.parquet",
    log:
        "logs/teacher_share_table/table3.log",
    benchmark:
        "benchmarks/teacher_share_table/table3.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/teacher_share_table.py"


rule hyperparameter_table:
    output:
        csv=report("results/table6.csv", caption="../report/table6.rst", category="Table downloads (CSV)"),
        parquet="results/table6.parquet",
    log:
        "logs/hyperparameter_table/table6.log",
    benchmark:
        "benchmarks/hyperparameter_table/table6.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/hyperparameter_table.py"


rule pruning_hyperparameter_table:
    output:
        csv=report("results/table9.csv", caption="../report/table9.rst", category="Table downloads (CSV)"),
        parquet="results/table9.parquet",
    log:
        "logs/pruning_hyperparameter_table/table9.log",
    benchmark:
        "benchmarks/pruning_hyperparameter_table/table9.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/pruning_hyperparameter_table.py"


rule figure3:
    input:
        lambda w: [f"{cfg.run_dir(w.dataset, seeds()[0], m)}/predictions.npz" for m in figure3_models()],
    output:
        report("results/figures/figure3_{dataset}.png", caption="../report/figure3.rst", category="Figures"),
    log:
        "logs/figure3/{dataset}.log",
    benchmark:
        "benchmarks/figure3/{dataset}.tsv"
    params:
        models=figure3_models(),
        seed=seeds()[0],
        figures=config["figures"],
        step_minutes=config["model"]["step_minutes"],
        quantity=lambda w: cfg.quantity(config, w.dataset),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/figure.py"


rule tsne:
    input:
        unpack(prepared_inputs),
        student=lambda w: f"{cfg.run_dir(w.dataset, seeds()[0], w.student)}/model.pt",
        reference=lambda w: f"{cfg.run_dir(w.dataset, seeds()[0], w.reference)}/model.pt",
    output:
        report(
            "results/figures/tsne_{dataset}_{student}_vs_{reference}.png",
            caption="../report/tsne.rst",
            category="Figures",
        ),
    log:
        "logs/tsne/{dataset}_{student}_vs_{reference}.log",
    benchmark:
        "benchmarks/tsne/{dataset}_{student}_vs_{reference}.tsv"
    wildcard_constraints:
        student=r"student_[a-z0-9_]+|pruned_[a-z0-9_]+",
        reference="teacher|pruning_base",
    params:
        data=lambda w: cfg.data_spec(config, w.dataset),
        figures=config["figures"],
        seed=seeds()[0],
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/tsne.py"


use rule figure3 as figure4 with:
    input:
        lambda w: [f"{cfg.run_dir(w.dataset, seeds()[0], m)}/predictions.npz" for m in figure4_models()],
    output:
        report("results/figures/figure4_{dataset}.png", caption="../report/figure4.rst", category="Figures"),
    log:
        "logs/figure4/{dataset}.log",
    benchmark:
        "benchmarks/figure4/{dataset}.tsv"
    params:
        models=figure4_models(),
        seed=seeds()[0],
        figures=config["figures"],
        step_minutes=config["model"]["step_minutes"],
        quantity=lambda w: cfg.quantity(config, w.dataset),


use rule figure3 as figure5 with:
    input:
        lambda w: [f"{cfg.run_dir(w.dataset, seeds()[0], m)}/predictions.npz" for m in figure5_models()],
    output:
        report("results/figures/figure5_{dataset}.png", caption="../report/figure5.rst", category="Figures"),
    log:
        "logs/figure5/{dataset}.log",
    benchmark:
        "benchmarks/figure5/{dataset}.tsv"
    params:
        models=figure5_models(),
        seed=seeds()[0],
        figures=config["figures"],
        step_minutes=config["model"]["step_minutes"],
        quantity=lambda w: cfg.quantity(config, w.dataset),


rule loss_anatomy:
    input:
        lambda w: [f"{cfg.run_dir(w.dataset, s, 'student_' + loss)}/history.parquet" for loss, s in anatomy_runs()],
    output:
        png=report("results/figures/anatomy_{dataset}.png", caption="../report/anatomy.rst", category="Figures"),
        csv="results/anatomy_{dataset}.csv",
    log:
        "logs/loss_anatomy/{dataset}.log",
    benchmark:
        "benchmarks/loss_anatomy/{dataset}.tsv"
    params:
        losses=[loss for loss, _ in anatomy_runs()],
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/anatomy.py"


rule measure_cost:
    input:
        unpack(prepared_inputs),
        models=lambda w: [f"{cfg.run_dir(w.dataset, seeds()[0], m)}/model.pt" for m in cost_models()],
    output:
        "results/{dataset}/costs.parquet",
    log:
        "logs/measure_cost/{dataset}.log",
    benchmark:
        "benchmarks/measure_cost/{dataset}.tsv"
    params:
        models=cost_models(),
        data=lambda w: cfg.data_spec(config, w.dataset),
        timing=config["timing"],
        device=config["device"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/measure_cost.py"


rule cost_table:
    input:
        expand("results/{dataset}/costs.parquet", dataset=config["run_datasets"]),
    output:
        csv=report("results/table1.csv", caption="../report/table1.rst", category="Table downloads (CSV)"),
        parquet="results/table1.parquet",
    log:
        "logs/cost_table/table1.log",
    benchmark:
        "benchmarks/cost_table/table1.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/cost_table.py"


rule table_page:
    input:
        "results/table{number}.parquet",
    output:
        report("results/table{number}.html", caption="../report/table_page.rst", category="Tables"),
    log:
        "logs/table_page/table{number}.log",
    benchmark:
        "benchmarks/table_page/table{number}.tsv"
    wildcard_constraints:
        number="[1-9]",
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/table_page.py"


rule verdict_table:
    input:
        unpack(verdict_inputs),
    output:
        csv=report("results/verdict.csv", caption="../report/verdict.rst", category="Table downloads (CSV)"),
        parquet="results/verdict.parquet",
    log:
        "logs/verdict_table/verdict.log",
    benchmark:
        "benchmarks/verdict_table/verdict.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/verdict_table.py"


rule summary:
    input:
        tables=[f"results/table{n}.parquet" for n in (1, 2, 4, 5, 7, 8)],
        verdict="results/verdict.parquet",
    output:
        markdown=report("results/summary.md", caption="../report/summary.rst", category="Summary"),
        html=report("results/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary/summary.log",
    benchmark:
        "benchmarks/summary/summary.tsv"
    params:
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/kdstgcn.yaml"
    script:
        "../../scripts/summary.py"
