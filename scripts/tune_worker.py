"""Entry point of the tune_worker rule: run trials of one study until it holds tuning.trials finished ones."""
import use_checkout  # noqa: F401  (puts src/ on sys.path)
import time

from kdstgcn.io import write_json
from kdstgcn.model import load_model, weights_digest
from kdstgcn.runner import logged
from kdstgcn.tuning import enqueue_paper_values, objective, open_study, work

p = snakemake.params
with logged(snakemake.log[0], snakemake.threads) as log:
    tic = time.perf_counter()
    worker = int(snakemake.wildcards.worker)
    identity = {"run": p.run, "space": p.space, "switches": p.switches}
    if "teacher" in snakemake.input.keys():
        identity["teacher"] = weights_digest(load_model(snakemake.input.teacher)[0])
    study = open_study(p.study, identity, p.tuning, worker)
    if worker == 0:
        enqueue_paper_values(study, p.run, p.space, p.switches)
    run_trial = objective(p.run, p.space, p.switches, dict(snakemake.input), p.tuning["trials"], worker)
    ran = work(study, run_trial, p.tuning["trials"], p.tuning["heartbeat_s"])
    log.info("worker %d ran %d trials; the study %s holds %d", worker, ran, p.study, len(study.trials))
    write_json({"worker": worker, "trials_run": ran, "seconds": time.perf_counter() - tic}, snakemake.output[0])
