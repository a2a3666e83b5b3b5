"""The cost job: parameters, FLOPs and rollout time of each model of a dataset (Table 1)."""
from __future__ import annotations

import logging

import pandas as pd
import torch

from kdstgcn.config.datasets import DataSpec
from kdstgcn.data.samples import load_data
from kdstgcn.deploy.session import RUNTIME, OnnxStream, time_onnx_rollout
from kdstgcn.evaluation.cost import count_flops, device_name, time_rollout
from kdstgcn.model.persist import count_parameters, load_model
from kdstgcn.runtime.devices import pick_device
from kdstgcn.runtime.io import write_table
from kdstgcn.runtime.precision import resolve_precision

log = logging.getLogger(__name__)


def measure_costs(models: dict[str, str], streams: dict[str, tuple[str, str]], values: str, fill_report: str,
                  data: DataSpec, timing: dict, device: str, dataset: str, out: str) -> pd.DataFrame:
    """Table 1 measurements of each model (name -> model.pt) on a batch of test windows of `dataset`, written
    to `out`; the streaming rollout is also timed on ONNX Runtime on the CPU, with the model's start.onnx and
    stream.onnx (`streams`: name -> the two paths) and as many threads as torch. A model trained in bf16 is
    timed in bf16 where `device` computes it natively, else in fp32 (the `precision` column says which)."""
    prepared = load_data(values, fill_report, data)
    windows, batch = prepared.inputs("test"), timing["batch"]
    x = windows[:batch]
    if len(windows) < batch:
        log.warning("only %d test windows; the %d-window timing batch repeats them", len(windows), batch)
        x = x.repeat((batch + len(windows) - 1) // len(windows), 1, 1)[:batch]
    dev = pick_device(device)
    rows = []
    for name, path in models.items():
        model, extra = load_model(path)
        model.to(dev)
        precision = resolve_precision("auto" if extra.get("precision") == "bf16" else "fp32", dev,
                                      model.arch.widest_layer)
        flops = count_flops(model, x)
        t, full = (time_rollout(model, x, steps=data.n_pred, runs=timing["runs"], warmup=timing["warmup"],
                                device=dev, mode=mode, precision=precision) for mode in ("streaming", "full"))
        onnx = time_onnx_rollout(OnnxStream(*streams[name], threads=torch.get_num_threads()), x.numpy(),
                                 data.n_pred, timing["runs"], timing["warmup"])
        log.info("%s: %d parameters, %.4g FLOPs, rollout %.4f s +- %.4f (full recompute %.4f s, %s %.4f s) over %d "
                 "runs (%s, %s)", name, count_parameters(model), flops, t["mean_s"], t["std_s"], full["mean_s"],
                 RUNTIME, onnx["mean_s"], t["runs"], t["device_name"], precision)
        rows.append({"model": name, "parameters": count_parameters(model), "flops": flops, **t,
                     "full_recompute_mean_s": full["mean_s"], "full_recompute_std_s": full["std_s"],
                     "onnx_mean_s": onnx["mean_s"], "onnx_std_s": onnx["std_s"],
                     "onnx_device_name": f"{device_name('cpu')}, {RUNTIME}"})
    table = pd.DataFrame(rows).assign(dataset=dataset)
    write_table(table, out)
    return table
