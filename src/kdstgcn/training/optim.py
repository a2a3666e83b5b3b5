"""Optimisers selectable by `training.optimizer`: PyTorch's RMSprop and Adam, and RMSprop as in the original
STGCN TensorFlow code (tf.train.RMSPropOptimizer with its TF1 defaults)."""
from __future__ import annotations

import torch


class TFRMSprop(torch.optim.Optimizer):
    """TF1 RMSPropOptimizer without momentum: ms <- decay * ms + (1 - decay) * g^2 with ms started at ones,
    w <- w - lr * g / sqrt(ms + epsilon) (epsilon inside the square root; PyTorch's RMSprop starts ms at zero
    and adds its eps outside the root)."""

    def __init__(self, params, lr: float = 1e-3, decay: float = 0.9, epsilon: float = 1e-10):
        if lr <= 0 or not 0 <= decay < 1 or epsilon < 0:
            raise ValueError(f"TFRMSprop needs lr > 0, 0 <= decay < 1, epsilon >= 0; got {lr}, {decay}, {epsilon}")
        super().__init__(params, {"lr": lr, "decay": decay, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p, memory_format=torch.preserve_format)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1 - group["decay"])
                p.addcdiv_(p.grad, (ms + group["epsilon"]).sqrt_(), value=-group["lr"])
        return loss


OPTIMIZERS = {
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "rmsprop_tf": lambda params, lr: TFRMSprop(params, lr=lr),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}


def make_optimizer(params, settings) -> torch.optim.Optimizer:
    """The optimiser `settings.optimizer` names (see OPTIMIZERS) at `settings.learning_rate` (a TrainSettings)."""
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {settings.optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[settings.optimizer](params, settings.learning_rate)
