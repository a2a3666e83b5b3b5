"""A model as a file (architecture, graph, weights and masks together), its content digest and parameter count."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.tensor_files import save_torch


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (entries, not tensors): the parameter count of Table 1."""
    return sum(p.numel() for p in model.parameters())


def weights_digest(model: nn.Module) -> str:
    """Short content hash of a model's weights and buffers: which teacher or base a run depends on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if tensor.is_sparse:  # a sparse Chebyshev stack: its entries, by their indices
            tensor = tensor.coalesce()
            digest.update(tensor.indices().cpu().contiguous().numpy().tobytes())
            tensor = tensor.values()
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(model: STGCN, path, extra: dict | None = None) -> None:
    """Save a model whole: architecture, graph and weights (masks included), loadable without other files. The
    graph is the model's Chebyshev stack as it holds it: dense up to `DENSE_MAX_NODES` stations, sparse above, so
    that the file grows with the graph's edges there."""
    masks = {name: layer.mask.flatten().bool() for name, layer in model.prunable_layers().items()
             if layer.mask is not None}
    save_torch({"arch": model.arch.to_dict(), "cheb": model.cheb, "state_dict": model.state_dict(),
                "masks": masks, "extra": extra or {}}, path)


def load_model(path, map_location="cpu") -> tuple[STGCN, dict]:
    """A model saved by `save_model`, with its masks set, and the `extra` dict saved with it. A file that holds a
    dense stack of more than `DENSE_MAX_NODES` stations (written before the model held it sparse) loads with the
    stack turned sparse."""
    blob = torch.load(path, map_location=map_location, weights_only=False)
    model = STGCN(Architecture.from_dict(blob["arch"]), blob["cheb"])
    model.load_state_dict(blob["state_dict"] | {"cheb": model.cheb})
    if blob.get("masks"):
        model.set_masks(blob["masks"])
    return model, blob.get("extra", {})
