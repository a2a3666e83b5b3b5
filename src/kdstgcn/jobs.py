"""What the training and evaluation entry points do, as plain functions of paths and specs (unit-testable)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdstgcn.data.prepare import PreparedData, prepare
from kdstgcn.evaluation.rollout import evaluate
from kdstgcn.data.graph import chebyshev_polynomials
from kdstgcn.runtime.io import atomic_path, write_json, write_table, write_tables
from kdstgcn.losses.core import Loss, build_loss
from kdstgcn.model.core import STGCN, Architecture, count_parameters, load_model, save_model, weights_digest
from kdstgcn.training.optim import make_optimizer
from kdstgcn.paper import beside_paper
from kdstgcn.training.teacher_cache import STORE_FOLDER, TeacherFeatureStore, cached_teacher_predictions
from kdstgcn.training.loop import TrainSettings, loss_step, pick_device, train

log = logging.getLogger(__name__)


def load_data(values: str, fill_report: str, data: dict) -> PreparedData:
    return prepare(values, fill_report, data["steps_per_day"], tuple(data["split"]), data["n_his"], data["n_pred"])


def load_cheb(adjacency: str, ks: int) -> torch.Tensor:
    return chebyshev_polynomials(pd.read_parquet(adjacency).to_numpy(), ks)


def run_loss(run: dict):
    """The loss a run spec names: build_loss's arguments (name, params and, for distillation, the kernel)."""
    return build_loss(**run["loss"])


def resume_identity(run: dict, keys: tuple[str, ...], teacher: STGCN | None, **depends_on: str) -> dict:
    """What a run's checkpoint must match to be resumed: its spec's `keys`, plus a digest of the teacher it
    distils from and of any other model it starts from (`depends_on`)."""
    identity = {k: run[k] for k in keys} | depends_on
    if teacher is not None:
        identity["teacher"] = weights_digest(teacher)
    return identity


def run_summary(run: dict, history: pd.DataFrame, loss, model: STGCN) -> dict:
    """What every trained model records beside its weights: spec, best epoch, budget, teacher share, size."""
    best = history.loc[history["val_mae"].idxmin()]
    return {"run": run, "best_epoch": int(best["epoch"]), "best_val_mae": float(best["val_mae"]),
            "epochs_run": int(history["epoch"].max()), "teacher_share_pct": loss.share_pct(),
            "parameters": count_parameters(model), "seconds_per_epoch": float(history["epoch_seconds"].mean())}


def fit_run(run: dict, values: str, fill_report: str, adjacency: str, checkpoint: str,
            teacher_path: str | None = None, on_epoch=None) -> tuple[STGCN, pd.DataFrame, Loss]:
    """Train one model from its run spec, writing only its checkpoint: the best model, its per-epoch history
    and the loss object (`on_epoch` as in `train`)."""
    data = load_data(values, fill_report, run["data"])
    arch = Architecture.from_dict(run["arch"])
    torch.manual_seed(run["train"]["seed"])
    model = STGCN(arch, load_cheb(adjacency, arch.ks))
    settings = TrainSettings(**{**run["train"], "horizons": tuple(run["train"]["horizons"])})
    loss = run_loss(run)
    teacher = load_model(teacher_path)[0] if teacher_path else None
    device = pick_device(run["device"])
    log.info("%s on %s: %s, %d parameters, loss %s, %d training windows, device %s", run["role"], run["dataset"],
             run["arch"]["blocks"], count_parameters(model), run["loss"], data.inputs("train").shape[0], device)
    model, history = train(model, data, loss, settings, checkpoint, teacher, device,
                           run_config=resume_identity(run, ("dataset", "role", "data", "loss"), teacher),
                           **precomputed_teacher(loss, settings, teacher, teacher_path, data, checkpoint, device),
                           on_epoch=on_epoch)
    return model, history, loss


def precomputed_teacher(loss: Loss, settings: TrainSettings, teacher: STGCN | None, teacher_path: str | None,
                        data: PreparedData, checkpoint: str, device: torch.device) -> dict:
    """`train`'s teacher_predictions or teacher_store, where the loss lets the teacher's outputs be computed once
    instead of a teacher forward per batch: a response-only loss caches the predictions beside the run's
    checkpoint; a feature loss reads the teacher's store (beside the teacher, shared by all who distil from it)
    when `settings.teacher_features` is not live."""
    if loss.uses_teacher and not loss.uses_features:
        return {"teacher_predictions": cached_teacher_predictions(teacher, data.inputs("train"),
                                                                  Path(checkpoint).parent, settings.batch_size,
                                                                  device)}
    if loss.uses_features and settings.teacher_features != "live":
        return {"teacher_store": TeacherFeatureStore.open(teacher, data.inputs("train"),
                                                          Path(teacher_path).parent / STORE_FOLDER,
                                                          settings.teacher_features, loss.feature_groups,
                                                          settings.batch_size, device)}
    return {}


def train_run(run: dict, values: str, fill_report: str, adjacency: str, model_out: str, history_out: str,
              info_out: str, checkpoint: str, teacher_path: str | None = None) -> STGCN:
    """Train one model from its run spec; write the whole model, its per-epoch history and a summary."""
    model, history, loss = fit_run(run, values, fill_report, adjacency, checkpoint, teacher_path)
    extra = run_summary(run, history, loss, model)
    write_table(history, history_out)
    write_json(extra, info_out)
    save_model(model, model_out, extra)
    log.info("best epoch %d (val MAE %.4f); model written to %s", extra["best_epoch"], extra["best_val_mae"], model_out)
    return model


def evaluate_run(model_path: str, values: str, fill_report: str, data: dict, horizons, step_minutes: int,
                 device: str, eval_batch_size: int, paper_name: str, model_name: str,
                 metrics_csv: str, metrics_parquet: str, predictions_out: str) -> pd.DataFrame:
    """Roll the model over the test days; write metrics beside the paper's and the de-normalised predictions."""
    prepared = load_data(values, fill_report, data)
    model, extra = load_model(model_path)
    model.to(pick_device(device))
    table, pred, truth = evaluate(model, prepared, "test", horizons, step_minutes, eval_batch_size)
    table = beside_paper(table, paper_name, model_name)
    table.insert(0, "model", model_name)
    table["parameters"] = count_parameters(model)
    table["epochs_run"] = extra.get("epochs_run")
    table["best_epoch"] = extra.get("best_epoch")
    for _, row in table.iterrows():
        log.info("%s %2d min %-4s ours %.4f paper %s", model_name, row["horizon_min"], row["metric"], row["ours"],
                 "-" if pd.isna(row["paper"]) else f"{row['paper']:.3f}")
    write_tables(table, metrics_csv, metrics_parquet)
    with atomic_path(predictions_out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, prediction=pred.astype(np.float32), truth=truth.astype(np.float32),
                                extra=json.dumps({k: v for k, v in extra.items() if k != "run"}))
    return table


@torch.no_grad()
def hidden_maps(model_path: str, values: str, fill_report: str, data: dict, start: int, count: int) -> np.ndarray:
    """Channel-mean hidden representation (input of the output layer) of `count` test windows: [count, T * N]."""
    prepared = load_data(values, fill_report, data)
    model, _ = load_model(model_path)
    model.eval()
    x = prepared.inputs("test")[start:start + count]
    _, features = model(x, return_features=True)
    return features["hidden"].mean(dim=1).flatten(1).numpy()


def training_batches(data: PreparedData, batch_size: int, seed: int):
    """Endless one-step training batches, reshuffled on every pass with a seed-derived order."""
    x, y = data.inputs("train"), data.one_step_targets("train")
    n, epoch = x.shape[0], 0
    while True:
        epoch += 1
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


PRUNE_RESUME_KEYS = ("dataset", "role", "data", "loss", "finetune_loss", "ratio", "ranking", "step_fraction",
                     "pruning_minibatch")


def fit_prune(run: dict, values: str, fill_report: str, base_path: str, teacher_path: str | None, checkpoint: str,
              on_epoch=None) -> tuple[STGCN, STGCN, pd.DataFrame, Loss, list[dict], int]:
    """Prune a trained model (Algorithm 1 or the baseline), compact it and fine-tune the compact model, writing
    only the checkpoint. Returns the compact and the masked model (on the CPU), the fine-tuning history and loss,
    the pruning steps and the base's parameter count (`on_epoch` as in `train`).

    Fine-tuning the compact model is fine-tuning under the mask, at the compact model's cost: the same weights
    to float rounding (tested with dropout 0 and the same seed). Under the mask every weight that feeds only
    removed channels gets a zero gradient (the channel's output is multiplied by 0), so RMSprop and Adam leave it
    where it is with a zero state: the removed filters' own weights stay zero, their coupled input weights and
    LayerNorm entries keep their values and never matter. The masked LayerNorm takes its statistics over the kept
    channels, as the compact one does, so the kept weights get the same gradients, and `train` starts the same
    fresh optimiser for both. Only dropout differs: it draws over the full width under the mask, over the kept
    channels here, so with dropout > 0 the two are different draws of the same procedure. The checkpoint holds
    the compact model; its architecture (kept channels) is part of what it must match to be resumed.
    """
    from kdstgcn.pruning.prune import compact, expand, prune

    data = load_data(values, fill_report, run["data"])
    device = pick_device(run["device"])
    settings = TrainSettings(**{**run["train"], "horizons": tuple(run["train"]["horizons"])})
    torch.manual_seed(settings.seed)
    model, _ = load_model(base_path)
    base_digest = weights_digest(model)
    base_parameters = count_parameters(model)
    teacher = load_model(teacher_path)[0].to(device).eval() if teacher_path else None
    loss = run_loss(run)
    model.to(device)
    optimizer = make_optimizer(model.parameters(), settings)

    def loss_fn(m, x, y):
        return loss_step(m, teacher, loss, x.to(device), y.to(device))

    steps: list[dict] = []
    log.info("%s: pruning %s (%d parameters) by %d %% with %s, %s ranking, a step every %d minibatches",
             run["role"], run["base"], base_parameters, run["ratio"], run["loss"]["name"], run["ranking"],
             run["pruning_minibatch"])
    prune(model, training_batches(data, settings.batch_size, settings.seed), loss_fn, optimizer,
          run["ratio"] / 100.0, run["pruning_minibatch"], run["step_fraction"], run["ranking"], log=log.info,
          history=steps)
    model.eval()
    finetune_loss = loss if run["finetune_loss"] == run["loss"] else build_loss(**run["finetune_loss"])
    log.info("fine-tuning the compact model with %s", run["finetune_loss"]["name"])
    identity = resume_identity(run, PRUNE_RESUME_KEYS, teacher, base=base_digest)
    dense, history = train(compact(model), data, finetune_loss, settings, checkpoint, teacher, device,
                           run_config=identity, on_epoch=on_epoch,
                           **precomputed_teacher(finetune_loss, settings, teacher, teacher_path, data, checkpoint,
                                                 device))
    dense = dense.cpu().eval()
    return dense, expand(dense, model).cpu(), history, finetune_loss, steps, base_parameters


def prune_run(run: dict, values: str, fill_report: str, base_path: str, teacher_path: str | None, out: dict,
              checkpoint: str) -> STGCN:
    """Prune a trained model (Algorithm 1 or the baseline) and fine-tune its compact form (`fit_prune`).

    Writes the compact model (`out["model"]`, what evaluation and timing use), the masked model (the fine-tuned
    compact model expanded back to full width), the pruning steps, the fine-tuning history and a summary with the
    kept parameter share and channels. All on the CPU, whatever `run["device"]`.
    """
    dense, masked, history, finetune_loss, steps, base_parameters = fit_prune(
        run, values, fill_report, base_path, teacher_path, checkpoint)
    kept = dense.arch.kept
    extra = {**run_summary(run, history, finetune_loss, dense), "base_parameters": base_parameters,
             "kept_pct": 100.0 * count_parameters(dense) / base_parameters, "pruning_steps": len(steps),
             "kept_channels": {k: list(v) for k, v in kept.items()}}
    write_table(pd.DataFrame(steps), out["steps"])
    write_table(history, out["history"])
    write_json(extra, out["info"])
    save_model(masked, out["masked"], extra)
    save_model(dense, out["model"], extra)
    log.info("compact model: %d of %d parameters kept (%.2f %%), widths %s", extra["parameters"],
             base_parameters, extra["kept_pct"], {k: len(v) for k, v in kept.items()})
    return dense


def measure_costs(models: dict[str, str], values: str, fill_report: str, data: dict, timing: dict,
                  device: str) -> list[dict]:
    """Table 1 measurements of each model (name -> model.pt) on a batch of test windows of the dataset."""
    from kdstgcn.evaluation.cost import count_flops, time_rollout

    prepared = load_data(values, fill_report, data)
    x = prepared.inputs("test")
    batch = timing["batch"]
    if x.shape[0] < batch:
        log.warning("only %d test windows; the %d-window timing batch repeats them", x.shape[0], batch)
        x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], 1, 1)
    x = x[:batch]
    dev = pick_device(device)
    rows = []
    for name, path in models.items():
        model, _ = load_model(path)
        model.to(dev)
        flops = count_flops(model, x)
        t, full = (time_rollout(model, x, steps=data["n_pred"], runs=timing["runs"], warmup=timing["warmup"],
                                device=dev, mode=mode) for mode in ("streaming", "full"))
        log.info("%s: %d parameters, %.4g FLOPs, rollout %.4f s +- %.4f (full recompute %.4f s) over %d runs (%s)",
                 name, count_parameters(model), flops, t["mean_s"], t["std_s"], full["mean_s"], t["runs"],
                 t["device_name"])
        rows.append({"model": name, "parameters": count_parameters(model), "flops": flops, **t,
                     "full_recompute_mean_s": full["mean_s"], "full_recompute_std_s": full["std_s"]})
    return rows
