"""What a training checkpoint holds beyond the weights, and how a run is restored from one on any device: the
optimiser, scheduler and loss states and the random number generators."""
from __future__ import annotations

from pathlib import Path

import torch

from kdstgcn.losses.base import Loss


def cpu_copy(state_dict: dict) -> dict:
    """A snapshot of a state dict on the CPU (the best epoch's weights), independent of the live tensors."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint read onto the CPU, whatever device wrote it: the RNG state must stay a CPU tensor, and the
    model, optimiser and loss states are copied to their own device when restored."""
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(device: torch.device) -> dict:
    """The random number generators a run draws from: the CPU's, and the GPU's it trains on."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def resume(checkpoint: dict, model, optimizer, scheduler, loss: Loss, device: torch.device) -> None:
    """Restore a run from `checkpoint` (as load_checkpoint returns it) onto `device`: weights and loss buffers are
    copied into the tensors there, the optimiser state follows its parameters, RNG states stay CPU tensors
    (a GPU generator is restored only on a GPU; a run moved to another kind of device draws anew there)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    loss.load_state_dict(checkpoint["loss"])
    restore_rng(checkpoint, device)


def restore_rng(state: dict, device: torch.device) -> None:
    """The generators back to `state` (as rng_state gives it); the GPU's only on a GPU."""
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
