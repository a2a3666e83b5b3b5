# Deployment: every evaluated model as ONNX files (one step, streaming start and step) with its model card, in its
# run folder: results/<dataset>/seed<seed>/<model>/{model.onnx, start.onnx, stream.onnx, model_card.json}.


rule export:
    input:
        values=layout.clean_path("{dataset}", "values.parquet"),
        fill_report=layout.clean_path("{dataset}", "fill_report.csv"),
        model=layout.run_file("{dataset}", "{seed}", "{model}", "model.pt"),
        metrics=layout.run_file("{dataset}", "{seed}", "{model}", "metrics.csv"),
    output:
        **layout.deploy_files("{dataset}", "{seed}", "{model}"),
    log:
        layout.job_log("export", "{dataset}", "seed{seed}", "{model}"),
    benchmark:
        layout.job_benchmark("export", "{dataset}", "seed{seed}", "{model}")
    params:
        data=lambda w: datasets.data_spec(config, w.dataset),
        units=lambda w: datasets.quantity(config, w.dataset),
        description=lambda w: config["datasets"][w.dataset]["description"],
        fill=lambda w: datasets.gap_fill(config["datasets"][w.dataset]),
        horizons=config["model"]["horizons"],
        step_minutes=config["model"]["step_minutes"],
    threads: 1
    resources:
        mem_mb=export_mem_mb,
        runtime=20,
    conda:
        CONDA_ENV
    script:
        "../../scripts/export.py"
