# Per-dataset tuning (Optuna, validation MAE): one study per distillation loss and per pruned model, run by
# tuning.workers parallel jobs sharing the study's journal (tune_worker), then its best values (tune).


rule tune_worker:
    input:
        unpack(tuning_inputs),
    output:
        layout.tuning_worker_file("{dataset}", "{study}", "{worker}"),
    log:
        layout.job_log("tune_worker", "{dataset}", "{study}_{worker}"),
    benchmark:
        layout.job_benchmark("tune_worker", "{dataset}", "{study}_{worker}")
    params:
        run=lambda w: tuning_run(w).to_dict(),
        space=lambda w: tuned.tuning_space(config, tuned_loss(w)),
        switches=lambda w: tuned.tuning_switches(config, tuned_loss(w), tuning_run(w).train.rollout is not None),
        tuning=config["tuning"],
        study=lambda w: layout.tuning_journal(w.dataset, w.study),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=1440,
    conda:
        CONDA_ENV
    script:
        "../../scripts/tune_worker.py"


rule tune:
    input:
        tuning_worker_files,
    output:
        values=layout.tuned_path("{dataset}", "{study}"),
        trials=layout.tuning_trials("{dataset}", "{study}"),
    log:
        layout.job_log("tune", "{dataset}", "{study}"),
    benchmark:
        layout.job_benchmark("tune", "{dataset}", "{study}")
    params:
        name=lambda w: w.study,
        space=lambda w: tuned.tuning_space(config, tuned_loss(w)),
        tuning=config["tuning"],
        study=lambda w: layout.tuning_journal(w.dataset, w.study),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../../scripts/tune.py"
