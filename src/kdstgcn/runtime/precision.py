"""The arithmetic a model trains and evaluates in (config key training.precision): float32 throughout (`fp32`),
bfloat16 mixed precision (`bf16`: torch.autocast around the model's forward pass), or `auto` (bf16 where the
device computes bfloat16 natively and the model is wide enough to gain from it, else fp32).

Under bf16 only the model's forward pass runs in autocast. Weights, optimiser state, the losses (and their
distance matrices), the metrics, checkpoints and exported ONNX files stay float32: every output of a forward
pass is cast to float32 before a loss or a metric reads it."""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("fp32", "bf16", "auto")
CUDA_NATIVE_BF16 = (8, 0)  # compute capability from which CUDA GPUs have bfloat16 tensor cores (Ampere)
# `auto` runs a model in bf16 only if its widest layer has at least this many channels. On a CPU with AVX-512
# BF16, bench/throughput.py (N = 228) trained the teacher (widest 128) and the pruning base (32) faster in bf16,
# and the student (8) slower: its products are too small to pay for the casts (figures: docs/performance.md).
BF16_MIN_WIDTH = 32


def cpu_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), which oneDNN's bf16 kernels use."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU of compute capability >= 8.0, a CPU with
    AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= CUDA_NATIVE_BF16
    return device.type == "cpu" and cpu_native_bf16()


def choose_precision(setting: str, native: bool, wide: bool = True) -> str:
    """The precision a model runs in for config value `setting` on a device that has (`native`) or lacks native
    bfloat16, for a model that is `wide` enough to gain from it or not: `auto` picks bf16 only where both hold."""
    if setting not in PRECISIONS:
        raise ValueError(f"training.precision: {setting!r}; choose one of {list(PRECISIONS)}")
    if setting == "auto":
        return "bf16" if native and wide else "fp32"
    return setting


def resolve_precision(setting: str, device: torch.device, widest_layer: int | None = None) -> str:
    """`choose_precision` on `device` for a model whose widest layer has `widest_layer` channels (None: any model
    wide enough); the device is asked only for `auto`."""
    wide = widest_layer is None or widest_layer >= BF16_MIN_WIDTH
    return choose_precision(setting, setting == "auto" and native_bf16(device), wide)


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The context a forward pass runs in: bfloat16 autocast for bf16, nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def as_float32(value):
    """`value` (a tensor, or lists and dicts of tensors) with every floating tensor cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: as_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_float32(v) for v in value)
    return value


def in_precision(model: torch.nn.Module | None, precision: str, device: torch.device) -> Callable | None:
    """`model`'s forward (same arguments) run in `precision`, its outputs float32: the model itself for fp32."""
    if model is None or precision == "fp32":
        return model

    def forward(*args, **kwargs):
        with autocast(precision, device):
            out = model(*args, **kwargs)
        return as_float32(out)

    return forward
