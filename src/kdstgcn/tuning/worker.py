"""One tuning worker's job: join (or create) the study of its inputs and run trials until it holds `tuning.trials`
finished ones; the first worker queues the paper's values as a trial."""
from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from kdstgcn.config.runspec import RunSpec
from kdstgcn.data.samples import load_data
from kdstgcn.model.persist import load_model, weights_digest
from kdstgcn.runtime.io import write_json
from kdstgcn.training.teacher_cache import CODE_DIGEST, tensor_digest
from kdstgcn.tuning.storage import open_study
from kdstgcn.tuning.trials import enqueue_paper_values, objective, trainer, work

log = logging.getLogger(__name__)


def study_sources(run: RunSpec, inputs: dict) -> dict:
    """Digests of what every trial of a study reads, which name its study (`study_name`): the training and
    validation windows with their scaler and the stations the metrics score, the road graph (adjacency table),
    the teacher and base models (where the study has them) and the model code this process runs (`CODE_DIGEST`)."""
    data = load_data(inputs["values"], inputs["fill_report"], run.data)
    sources = {"train": tensor_digest(data.windows["train"]), "validation": tensor_digest(data.windows["val"]),
               "scaler": [data.scaler.mean, data.scaler.std], "stations": tensor_digest(data.station_mask),
               "graph": tensor_digest(torch.tensor(pd.read_parquet(inputs["adjacency"]).to_numpy())),
               "code": CODE_DIGEST}
    return sources | {role: weights_digest(load_model(inputs[role])[0]) for role in ("teacher", "base")
                      if role in inputs}


def run_worker(run: dict, space: dict, switches: dict, study_path: str, tuning: dict, inputs: dict, worker: int,
               out: str) -> None:
    """Run trials of the study of `inputs` (`study_sources`) in the journal `study_path` as worker number `worker`;
    `run` is the study's run spec in its dict form, `inputs` the rule's input files by name. The study's identity
    holds the run spec, the space and switches. Writes a summary of this worker, with the study's name, to `out`."""
    tic = time.perf_counter()
    spec = RunSpec.from_dict(run)
    study = open_study(study_path, {"run": run, "space": space, "switches": switches}, study_sources(spec, inputs),
                       tuning, worker)
    if worker == 0:
        enqueue_paper_values(study, spec, space, switches)
    run_trial = objective(spec, space, switches, trainer(inputs), tuning["trials"], worker)
    ran = work(study, run_trial, tuning["trials"], tuning["heartbeat_s"])
    log.info("worker %d started %d trials; the study %s in %s holds %d", worker, ran, study.study_name, study_path,
             len(study.trials))
    write_json({"worker": worker, "study": study.study_name, "trials_started": ran,
                "seconds": time.perf_counter() - tic}, out)
