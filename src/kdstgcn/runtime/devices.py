"""The torch device a job runs on, from config key `device`: a visible GPU with the most free memory, the CPU,
or a GPU named by its index."""
from __future__ import annotations

import os

import torch


class DeviceError(ValueError):
    """The configured device does not exist on this machine; the message names the key and what is there."""


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_free_bytes(index: int) -> int:
    """Free memory of visible GPU `index`: from NVML where it is installed (no CUDA context is created on the
    GPUs that are not picked), else from cudaMemGetInfo."""
    try:
        return torch.cuda.get_device_properties(index).total_memory - torch.cuda.device_memory_used(index)
    except Exception:  # noqa: BLE001 - no NVML: ask CUDA itself
        return torch.cuda.mem_get_info(index)[0]


SAME_FREE_MEMORY = 1 << 30  # GPUs within 1 GiB of the most free memory count as equally free


def freest(free_bytes: list[int], salt: int = 0) -> int:
    """Index of a GPU with the most free memory. Those within SAME_FREE_MEMORY of the most are equal, and `salt`
    (the job's process id) picks among them, so that jobs started at the same moment spread over idle GPUs."""
    most = max(free_bytes)
    candidates = [i for i, free in enumerate(free_bytes) if free >= most - SAME_FREE_MEMORY]
    return candidates[salt % len(candidates)]


def pick_device(name: str = "auto") -> torch.device:
    """The torch device of config key `device`: `auto` is a visible GPU with the most free memory at the time
    of the call (see `freest`; the CPU when there is none), `cpu`, `cuda` (the current GPU), `cuda:N` (the
    N-th visible GPU)."""
    if name == "auto":
        n = visible_gpus()
        if n < 2:
            return torch.device("cuda", 0) if n else torch.device("cpu")
        return torch.device("cuda", freest([gpu_free_bytes(i) for i in range(n)], salt=os.getpid()))
    device = torch.device(name)
    if device.type == "cuda":
        n = visible_gpus()
        if n == 0 or (device.index is not None and device.index >= n):
            choices = f"auto, cpu or cuda:0 to cuda:{n - 1}" if n else "auto or cpu"
            raise DeviceError(f"device: {name!r}, but this machine has {n} visible GPU(s) (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Use device: {choices}.")
    return device
