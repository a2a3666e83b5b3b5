"""Training and inference throughput of the teacher and the student STGCN, plus parameters, FLOPs and the
graph product (sparse against dense) on the real networks.

    python bench/throughput.py --threads 2           # N=228 on CPU (~2-4 min on an idle machine)
    python bench/throughput.py --device cuda         # on a GPU, timed with torch.cuda.synchronize
    python bench/throughput.py --quick               # smoke test: 5 steps, rollout of 285 windows

Training: windows/s of full optimisation steps (forward, task loss, backward, RMSprop step) at batch 50, and
the epoch of 13,400 windows they imply (`--epoch` also times one real epoch of that many windows).
Inference: the 9-step rollout (kdstgcn.evaluation.rollout.rollout) of one batch of 1140 windows, full recompute (what
the paper timed) and streaming (what evaluation runs), and streaming with every graph product dense; on a CPU also
the same streaming rollout of the model's ONNX files on ONNX Runtime (kdstgcn.deploy.session, same threads).
FLOPs: torch FlopCounterMode of one forward pass of the 1140-window batch (kdstgcn.evaluation.cost.count_flops).
Graph product: one Chebyshev term times a [N, M] block, dense against sparse (CSR), per term of the real
PeMSD7(M) and PEMS08 graphs and over a sweep of densities: the data behind
kdstgcn.model.graph_products.SPARSE_MAX_DENSITY.
Precision: every model is measured in each of --precisions (fp32, and bf16: bfloat16 mixed precision as
training.precision runs it, kdstgcn.runtime.precision), with the bf16 / fp32 speed-up of training and rollout.
All models are measured in one run, interleaved step by step, so machine load hits them alike.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import SHAPES, graph, load_now, machine, network_graphs, random_windows
from kdstgcn.evaluation import rollout as rollout_module
from kdstgcn.evaluation.cost import count_flops, time_rollout
from kdstgcn.model import graph_products
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.graph_products import ChebyshevTerms, csr_matmul
from kdstgcn.model.notation import format_blocks
from kdstgcn.model.persist import count_parameters
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime import sizes
from kdstgcn.runtime.io import write_json
from kdstgcn.runtime.precision import BF16_MIN_WIDTH, PRECISIONS, in_precision, resolve_precision

EPOCH_WINDOWS = 13_400


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def forced_products(device: torch.device, sparse: bool):
    """Every non-identity Chebyshev term multiplied sparsely or densely while inside (the device's thresholds
    set to take all or nothing)."""
    tables = (graph_products.SPARSE_MAX_DENSITY, graph_products.SPARSE_MAX_BLOCK_BYTES)
    before = [table.get(device.type, 0) for table in tables]
    graph_products.SPARSE_MAX_DENSITY[device.type] = 1.0 if sparse else 0.0
    graph_products.SPARSE_MAX_BLOCK_BYTES[device.type] = 2**62
    try:
        yield
    finally:
        for table, value in zip(tables, before):
            table[device.type] = value


def seconds(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls after one untimed call, synchronised on a GPU."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def product_times(term: torch.Tensor, columns: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Seconds of term @ x for x [N, columns]: dense matmul, and the CSR product the model would use."""
    term = term.to(device)
    x = torch.randn(term.shape[0], columns, device=device)
    sparse = term.to_sparse_csr()
    crow, col, values = sparse.crow_indices(), sparse.col_indices(), sparse.values()
    return (seconds(lambda: term @ x, device, repeats),
            seconds(lambda: csr_matmul(crow, col, values, x), device, repeats))


def graph_product_table(device: torch.device, columns: int, repeats: int) -> None:
    print(f"\ngraph product: one Chebyshev term [N, N] times [N, {columns}] (a 1140-window batch x 32 channels x "
          f"1 position, one streaming step of the teacher's graph conv), median of {repeats}")
    print(f"{'graph':28} {'term':>4} {'density':>8} {'dense ms':>9} {'sparse ms':>10} {'sparse/dense':>13} "
          f"{'model uses':>11}")
    for name, n_nodes, cheb in network_graphs():
        terms = ChebyshevTerms(cheb)
        for k, mode in enumerate(terms.modes(device.type, 4 * n_nodes * columns)):
            if terms.identity[k]:
                print(f"{name + f' (N={n_nodes})':28} {'T' + str(k):>4} {terms.density[k]:>8.4f} {'identity: no product':>34}")
                continue
            dense_s, sparse_s = product_times(cheb[k], columns, device, repeats)
            print(f"{name + f' (N={n_nodes})':28} {'T' + str(k):>4} {terms.density[k]:>8.4f} {1e3 * dense_s:>9.2f} "
                  f"{1e3 * sparse_s:>10.2f} {sparse_s / dense_s:>13.2f} {mode:>11}")
    rng = np.random.default_rng(0)
    n = 228
    crossover = None
    for density in (0.01, 0.02, 0.04, 0.06, 0.08, 0.10, 0.15, 0.20, 0.30):
        mask = rng.uniform(size=(n, n)) < density
        term = torch.tensor(np.where(mask, rng.normal(size=(n, n)), 0.0), dtype=torch.float32)
        dense_s, sparse_s = product_times(term, columns, device, repeats)
        if sparse_s < dense_s:
            crossover = density
        print(f"{'random (N=228)':28} {'':>4} {density:>8.4f} {1e3 * dense_s:>9.2f} {1e3 * sparse_s:>10.2f} "
              f"{sparse_s / dense_s:>13.2f} {'':>11}")
    print(f"sparse faster up to density {crossover} here; "
          f"kdstgcn.model.graph_products.SPARSE_MAX_DENSITY[{device.type!r}] = "
          f"{graph_products.SPARSE_MAX_DENSITY.get(device.type, 0.0)}")


def graph_block_table(device: torch.device, repeats: int) -> None:
    """All three Chebyshev terms of the real graphs applied as the model applies them (`ChebyshevTerms`, the
    node-major copies of the sparse product included), dense against sparse, over operand sizes: streaming chunks
    (teacher, student), training batches (student, teacher blocks 1 and 0) and a 1140-window streaming pass."""
    shapes = [(38, 32), (613, 2), (50, 20), (50, 192), (50, 320), (1140, 32)]
    print(f"\ngraph product by block: sum_k T_k z_k for z [B, 3, R, N] as ChebyshevTerms runs it, median of {repeats}")
    print(f"{'graph':16} {'B x R':>10} {'operand MiB':>12} {'dense ms':>9} {'sparse ms':>10} {'sparse/dense':>13} "
          f"{'model uses':>11}")
    for name, n_nodes, cheb in network_graphs():
        terms = ChebyshevTerms(cheb).to(device)
        for b, r in shapes:
            z = torch.randn(b, 3, r, n_nodes, device=device)
            block = z[:, 0].numel() * z.element_size()
            timed = {}
            for sparse in (False, True):
                with forced_products(device, sparse):
                    timed[sparse] = seconds(lambda: terms(z), device, repeats)
            uses = "sparse" if "sparse" in terms.modes(device.type, block) else "dense"
            print(f"{name:16} {f'{b} x {r}':>10} {block / 2**20:>12.2f} {1e3 * timed[False]:>9.2f} "
                  f"{1e3 * timed[True]:>10.2f} {timed[True] / timed[False]:>13.2f} {uses:>11}")
    print(f"kdstgcn.model.graph_products.SPARSE_MAX_BLOCK_BYTES[{device.type!r}] = "
          f"{graph_products.SPARSE_MAX_BLOCK_BYTES.get(device.type, 0) / 2**20:g} MiB")


def temporal_conv_table(models: dict, batch: int, device: torch.device, repeats: int) -> None:
    """Forward + backward of each temporal conv of the models at the training batch: conv2d against the batched
    matrix product `TemporalConv._as_matmul` (the data behind which one a layer runs on a CPU)."""
    print(f"\ntemporal convs: forward + backward at batch {batch}, median of {repeats} (input gradient on all but the "
          f"one-channel input layer)")
    print(f"{'model':8} {'layer':18} {'input':>20} {'conv2d ms':>10} {'matmul ms':>10} {'matmul/conv2d':>14}")
    for name, m in models.items():
        t = m.arch.n_his
        layers = [(f"block{b}.{kind}", getattr(block, kind)) for b, block in enumerate(m.blocks)
                  for kind in ("temporal1", "temporal2")] + [("output.temporal", m.output.temporal)]
        for label, layer in layers:
            shape = (batch, layer.conv.in_channels, t, m.arch.n_nodes)
            x = torch.randn(shape, device=device, requires_grad=shape[1] > 1)
            conv_s = seconds(lambda: F.conv2d(x, layer.folded_weight(), layer.conv.bias).sum().backward(), device,
                             repeats)
            matmul_s = seconds(lambda: layer._as_matmul(x, layer.folded_weight()).sum().backward(), device, repeats)
            print(f"{name:8} {label:18} {str(list(shape)):>20} {1e3 * conv_s:>10.2f} {1e3 * matmul_s:>10.2f} "
                  f"{matmul_s / conv_s:>14.2f}")
            t -= layer.kt - 1


def onnx_streams(models: dict) -> dict:
    """name -> kdstgcn.deploy.session.OnnxStream of the model's exported files, as many chunks at once as torch
    has threads. Imported here: the ONNX column is CPU only, and a GPU machine need not have onnx installed."""
    from kdstgcn.deploy.export import export_bytes
    from kdstgcn.deploy.session import OnnxStream
    return {name: OnnxStream(*(export_bytes(m)[part] for part in ("start", "stream")), torch.get_num_threads())
            for name, m in models.items()}


def onnx_time(stream, windows: np.ndarray, steps: int, chunk: int | None = None) -> float:
    """Seconds of one ONNX Runtime rollout of `windows` (kdstgcn.deploy.session.time_onnx_rollout)."""
    from kdstgcn.deploy.session import time_onnx_rollout
    return time_onnx_rollout(stream, windows, steps, 1, 0, chunk=chunk)["mean_s"]


def chunk_table(models: dict, x: torch.Tensor, steps: int, onnx: dict) -> None:
    """Streaming rollout of the batch on a CPU for several chunk limits (`kdstgcn.runtime.sizes.CPU_CHUNK_BYTES` and
    `CPU_CHUNK_WINDOWS`): byte budgets with no window cap, then the package's byte budget under window caps; on
    ONNX Runtime (`onnx`: name -> OnnxStream) chunks of 16 to 256 windows and the whole batch."""
    chosen = sizes.CPU_CHUNK_BYTES, sizes.CPU_CHUNK_WINDOWS
    limits = [(8 * 2**20, None), (32 * 2**20, None), (128 * 2**20, None), (None, None),
              (chosen[0], 64), (chosen[0], 128), (chosen[0], 256)]
    print(f"\nCPU chunks: {steps}-step streaming rollout of {x.shape[0]} windows by chunk limits (MiB of "
          f"activations / windows; 'whole' = the batch in one pass); the package uses {chosen[0] // 2**20} MiB / "
          f"{chosen[1]} windows")
    labels = ["whole" if b is None else f"{b // 2**20} MiB" + ("" if w is None else f" / {w}") for b, w in limits]
    print(f"{'model':8} " + " ".join(f"{label:>16}" for label in labels))
    for name, m in models.items():
        cells = []
        for budget, windows_cap in limits:
            sizes.CPU_CHUNK_BYTES, sizes.CPU_CHUNK_WINDOWS = budget or 2**62, windows_cap or 2**62
            try:
                windows = rollout_module.cpu_chunk(m, x.shape[0])
                cells.append(f"{time_rollout(m, x, steps=steps, runs=1, warmup=0)['mean_s']:.3f} s ({windows:>4})")
            finally:
                sizes.CPU_CHUNK_BYTES, sizes.CPU_CHUNK_WINDOWS = chosen
        print(f"{name:8} " + " ".join(f"{c:>16}" for c in cells))
    for name, stream in onnx.items():
        cells = [f"{w} windows {onnx_time(stream, x.numpy(), steps, chunk=w):.3f} s"
                 for w in (16, 32, 64, 128, 256, x.shape[0])]
        print(f"{name:8} ONNX Runtime: " + ", ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=228)
    ap.add_argument("--models", default="teacher,student", help="comma list of teacher, base, student")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--train-batch", type=int, default=50)
    ap.add_argument("--train-steps", type=int, default=15, help="timed training steps per model")
    ap.add_argument("--epoch", action="store_true", help=f"also time one real epoch of {EPOCH_WINDOWS} windows")
    ap.add_argument("--infer-batch", type=int, default=1140)
    ap.add_argument("--infer-runs", type=int, default=1, help="timed rollouts per model and mode")
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps per model")
    ap.add_argument("--warmup-batch", type=int, default=50, help="windows of the untimed warm-up rollout")
    ap.add_argument("--steps", type=int, default=9, help="rollout steps")
    ap.add_argument("--graph", choices=("auto", "pemsd7", "pems08", "random"), default="auto")
    ap.add_argument("--product-repeats", type=int, default=5, help="timed calls per graph product")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16, auto (training.precision)")
    ap.add_argument("--chunks", action="store_true", help="also time the CPU rollout at several chunk budgets")
    ap.add_argument("--quick", action="store_true", help="small run: 5 train steps, 1 rollout of 285 windows")
    ap.add_argument("--json", default=None, help="also write the main table's figures (seconds) to this file")
    args = ap.parse_args()
    if args.quick:
        args.train_steps, args.infer_runs, args.infer_batch, args.warmup = 5, 1, 285, 1
    device = torch.device(args.device)

    print(machine(args.threads))
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    cheb, source = graph(args.nodes, args.graph)
    print(f"graph: N={args.nodes}, {source}")
    names = [m.strip() for m in args.models.split(",")]
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = STGCN(Architecture(args.nodes, SHAPES[name]), cheb).to(device)
    print(f"graph products on {device.type} (operands up to "
          f"{graph_products.SPARSE_MAX_BLOCK_BYTES.get(device.type, 0) / 2**20:g} MiB; dense above): "
          f"{models[names[0]].cheb_terms.modes(device.type)} "
          f"(densities {[round(d, 4) for d in models[names[0]].cheb_terms.density]})")

    precisions = list(dict.fromkeys(resolve_precision(p.strip(), device) for p in args.precisions.split(",")))
    if unknown := set(p.strip() for p in args.precisions.split(",")) - set(PRECISIONS):
        raise SystemExit(f"--precisions: {sorted(unknown)}; choose from {list(PRECISIONS)}")
    print(f"precisions: {precisions}; training.precision auto picks "
          + ", ".join(f"{name} {resolve_precision('auto', device, m.arch.widest_layer)}" for name, m in models.items())
          + f" here (bf16 where native and the widest layer has >= {BF16_MIN_WIDTH} channels)")
    variants = [(name, p) for name in models for p in precisions]
    rows = {(name, p): {"blocks": format_blocks(SHAPES[name]), "params": count_parameters(models[name]),
                        "precision": p} for name, p in variants}
    x_infer = random_windows(args.nodes, batch=args.infer_batch).to(device)
    for name, p in variants:
        rows[name, p]["flops"] = count_flops(models[name], x_infer)

    # training: interleave the models step by step
    gen = torch.Generator().manual_seed(1)
    x_train = torch.randn(args.train_batch, 12, args.nodes, generator=gen).to(device)
    y_train = torch.randn(args.train_batch, args.nodes, generator=gen).to(device)
    optims = {name: torch.optim.RMSprop(m.parameters(), lr=1e-3) for name, m in models.items()}

    forwards = {(name, p): in_precision(models[name], p, device) for name, p in variants}

    def train_step(name: str, precision: str) -> None:
        loss = F.mse_loss(forwards[name, precision](x_train), y_train)
        optims[name].zero_grad(set_to_none=True)
        loss.backward()
        optims[name].step()

    times = {variant: [] for variant in variants}
    for step in range(args.warmup + args.train_steps):
        for name, p in variants:
            models[name].train()
            sync(device)
            tic = time.perf_counter()
            train_step(name, p)
            sync(device)
            if step >= args.warmup:
                times[name, p].append(time.perf_counter() - tic)
    for variant in variants:
        row = rows[variant]
        row["train_step_s"] = statistics.median(times[variant])
        row["train_wps"] = args.train_batch / row["train_step_s"]
        row["epoch_s"] = EPOCH_WINDOWS / row["train_wps"]
        if args.epoch:
            sync(device)
            tic = time.perf_counter()
            for _ in range(-(-EPOCH_WINDOWS // args.train_batch)):
                train_step(*variant)
            sync(device)
            row["epoch_s"] = time.perf_counter() - tic

    # inference: one batch, models, precisions and modes alternated run by run (ONNX files: float32 only)
    modes = {"full": ("full", False), "streaming": ("streaming", False), "streaming_dense": ("streaming", True)}
    for name, p in variants:  # warm-up on a small batch
        for mode, dense in modes.values():
            with forced_products(device, sparse=False) if dense else contextlib.nullcontext():
                time_rollout(models[name], x_infer[:args.warmup_batch], steps=args.steps, runs=1, warmup=0, mode=mode,
                             precision=p)
    onnx = onnx_streams(models) if device.type == "cpu" and "fp32" in precisions else {}
    for name, stream in onnx.items():
        stream.rollout(x_infer[:args.warmup_batch].numpy(), args.steps)
    roll = {(variant, m): [] for variant in variants for m in [*modes, "onnx"]}
    for _ in range(args.infer_runs):
        for name, p in variants:
            for label, (mode, dense) in modes.items():
                with forced_products(device, sparse=False) if dense else contextlib.nullcontext():
                    roll[(name, p), label].append(time_rollout(models[name], x_infer, steps=args.steps, runs=1,
                                                               warmup=0, mode=mode, precision=p)["mean_s"])
            if name in onnx and p == "fp32":
                roll[(name, p), "onnx"].append(onnx_time(onnx[name], x_infer.numpy(), args.steps))
    for variant in variants:
        for label in [*modes, "onnx"]:
            runs = roll[variant, label]
            rows[variant][label] = statistics.median(runs) if runs else float("nan")

    print(f"\ntraining: batch {args.train_batch}, median of {args.train_steps} steps (task loss, RMSprop); epoch = "
          f"{EPOCH_WINDOWS} windows ({'timed' if args.epoch else 'from the median step'}) | inference: "
          f"{args.steps}-step rollout of one batch of {args.infer_batch} on {device}, median of {args.infer_runs} "
          f"runs | FLOPs: one forward of the {args.infer_batch}-window batch")
    head = (f"{'model':8} {'prec':4} {'blocks':22} {'params':>9} {'GFLOP/fwd':>10} {'train ms/step':>14} {'train win/s':>12} "
            f"{'epoch s':>8} {'full s':>9} {'stream s':>9} {'full/strm':>9} {'strm dense s':>12} "
            f"{'ORT strm s':>10} {'infer win/s':>12}")
    print(head)
    print("-" * len(head))
    for (name, p), r in rows.items():
        print(f"{name:8} {p:4} {r['blocks']:22} {r['params']:>9,} {r['flops'] / 1e9:>10.2f} "
              f"{1e3 * r['train_step_s']:>14.1f} {r['train_wps']:>12.0f} {r['epoch_s']:>8.1f} {r['full']:>9.3f} "
              f"{r['streaming']:>9.3f} {r['full'] / r['streaming']:>9.1f} {r['streaming_dense']:>12.3f} "
              f"{r['onnx']:>10.3f} {args.infer_batch / r['streaming']:>12.0f}")
    if {"fp32", "bf16"} <= set(precisions):
        print("\nbf16 / fp32 speed-up (fp32 time over bf16 time): "
              + "; ".join(f"{name}: training {rows[name, 'fp32']['train_step_s'] / rows[name, 'bf16']['train_step_s']:.2f}x, "
                          f"streaming rollout {rows[name, 'fp32']['streaming'] / rows[name, 'bf16']['streaming']:.2f}x, "
                          f"full recompute {rows[name, 'fp32']['full'] / rows[name, 'bf16']['full']:.2f}x"
                          for name in models))
    first = precisions[0]
    if "teacher" in models and "student" in models:
        s, t = rows["student", first], rows["teacher", first]
        print(f"\nstudent / teacher ({first}): params {s['params'] / t['params']:.4f}, FLOPs {s['flops'] / t['flops']:.4f}, "
              f"training throughput {s['train_wps'] / t['train_wps']:.1f}x, streaming rollout time "
              f"{s['streaming'] / t['streaming']:.3f} (full recompute {s['full'] / t['full']:.3f})")
    if args.json:
        write_json({"device": str(device), "nodes": args.nodes, "infer_batch": args.infer_batch, "steps": args.steps,
                    "epoch_windows": EPOCH_WINDOWS, "epoch_timed": args.epoch,
                    "models": {name if p == first else f"{name}_{p}": r for (name, p), r in rows.items()}}, args.json)
    if device.type == "cpu":
        temporal_conv_table(models, args.train_batch, device, args.product_repeats)
        if args.chunks:
            chunk_table(models, x_infer, args.steps, onnx)
    graph_product_table(device, columns=args.infer_batch * 32, repeats=args.product_repeats)
    graph_block_table(device, repeats=args.product_repeats)
    print(f"load average at the end: {load_now()}")


if __name__ == "__main__":
    main()
