"""A model as a file (architecture, graph, weights and masks together), its content digest and parameter count."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from kdstgcn.model.architecture import Architecture
from kdstgcn.model.graph_products import stack_for_model
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


@dataclass(frozen=True, eq=False)
class SavedModel:
    """A file `save_model` wrote, read (`read_model`): the model's architecture, its Chebyshev stack in the form the
    model holds it (`stack_for_model`: a file that holds a dense stack of more than `DENSE_MAX_NODES` stations,
    written before the model held it sparse, gives it sparse), weights, masks and `extra` dict. The model is built
    from them apart (`build`) since building draws initial weights from torch's generator: a job reads its saved
    models first (its memory check reads their architecture and graph) and builds them after it seeds the
    generator, where they have always drawn."""

    arch: Architecture
    cheb: torch.Tensor
    state_dict: dict
    masks: dict
    extra: dict

    def build(self) -> STGCN:
        """The model, with its weights and masks set."""
        model = STGCN(self.arch, self.cheb)
        model.load_state_dict(self.state_dict | {"cheb": model.cheb})
        if self.masks:
            model.set_masks(self.masks)
        return model


def read_model(path, map_location="cpu") -> SavedModel:
    """The model file at `path` (`save_model`), read."""
    blob = torch.load(path, map_location=map_location, weights_only=False)
    return SavedModel(Architecture.from_dict(blob["arch"]), stack_for_model(blob["cheb"]), blob["state_dict"],
                      blob.get("masks") or {}, blob.get("extra", {}))


def load_model(path, map_location="cpu") -> tuple[STGCN, dict]:
    """A model saved by `save_model`, built with its masks set, and the `extra` dict saved with it."""
    saved = read_model(path, map_location)
    return saved.build(), saved.extra
