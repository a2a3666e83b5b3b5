"""Entry point of the tune_worker rules: run trials of one study until it holds tuning.trials finished ones."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import time

from kdstgcn.runtime.io import write_json
from kdstgcn.model.core import load_model, weights_digest
from kdstgcn.runtime.runner import logged
from kdstgcn.tuning import enqueue_paper_values, objective, open_study, trainer, work

p, inputs = snakemake.params, dict(snakemake.input)
with logged(snakemake.log[0], snakemake.threads) as log:
    tic = time.perf_counter()
    worker = int(snakemake.wildcards.worker)
    identity = {"run": p.run, "space": p.space, "switches": p.switches}
    identity |= {role: weights_digest(load_model(inputs[role])[0]) for role in ("teacher", "base") if role in inputs}
    study = open_study(p.study, identity, p.tuning, worker)
    if worker == 0:
        enqueue_paper_values(study, p.run, p.space, p.switches)
    run_trial = objective(p.run, p.space, p.switches, trainer(inputs), p.tuning["trials"], worker)
    ran = work(study, run_trial, p.tuning["trials"], p.tuning["heartbeat_s"])
    log.info("worker %d started %d trials; the study %s holds %d", worker, ran, p.study, len(study.trials))
    write_json({"worker": worker, "trials_started": ran, "seconds": time.perf_counter() - tic}, snakemake.output[0])
