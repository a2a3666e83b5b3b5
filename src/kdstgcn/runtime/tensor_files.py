"""Torch objects written so that any machine loads them: every tensor on the CPU, the file written atomically."""
from __future__ import annotations

import os

import torch

from kdstgcn.runtime.io import atomic_path


def to_cpu(obj):
    """`obj` with every tensor in it (nested in dicts, lists and tuples) on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_torch(obj, path: str | os.PathLike) -> None:
    """torch.save with every tensor moved to the CPU first: what a GPU job writes loads on any machine."""
    with atomic_path(path) as tmp:
        torch.save(to_cpu(obj), tmp)
