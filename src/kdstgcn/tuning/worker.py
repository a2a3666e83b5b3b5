"""One tuning worker's job: join (or create) the study and run trials until it holds `tuning.trials` finished
ones; the first worker queues the paper's values as a trial."""
from __future__ import annotations

import logging
import time

from kdstgcn.config.runspec import RunSpec
from kdstgcn.model.persist import load_model, weights_digest
from kdstgcn.runtime.io import write_json
from kdstgcn.tuning.storage import open_study
from kdstgcn.tuning.trials import enqueue_paper_values, objective, trainer, work

log = logging.getLogger(__name__)


def run_worker(run: dict, space: dict, switches: dict, study_path: str, tuning: dict, inputs: dict, worker: int,
               out: str) -> None:
    """Run trials of the study in `study_path` as worker number `worker`; `run` is the study's run spec in its
    dict form, `inputs` the rule's input files by name. The study's identity holds the run spec, the space and
    switches, and digests of the teacher and base models it reads. Writes a summary of this worker to `out`."""
    tic = time.perf_counter()
    identity = {"run": run, "space": space, "switches": switches}
    identity |= {role: weights_digest(load_model(inputs[role])[0]) for role in ("teacher", "base") if role in inputs}
    study = open_study(study_path, identity, tuning, worker)
    spec = RunSpec.from_dict(run)
    if worker == 0:
        enqueue_paper_values(study, spec, space, switches)
    run_trial = objective(spec, space, switches, trainer(inputs), tuning["trials"], worker)
    ran = work(study, run_trial, tuning["trials"], tuning["heartbeat_s"])
    log.info("worker %d started %d trials; the study %s holds %d", worker, ran, study_path, len(study.trials))
    write_json({"worker": worker, "trials_started": ran, "seconds": time.perf_counter() - tic}, out)
