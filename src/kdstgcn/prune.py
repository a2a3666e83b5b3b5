"""Filter pruning of an STGCN (Algorithm 1 and the Molchanov et al. 2019 baseline) and compaction of the result.

A filter is one output channel of a prunable layer (both temporal convs and the graph conv of each block).
Masks are dicts layer name -> bool tensor [layer width] (True = kept). The parameter count of a masked model is
that of its compact twin, so removing a filter also removes the parameters coupled to it (the next layer's input
weights, LayerNorm entries, residual 1x1 conv entries and, for the last block, the output layer's channels).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .model import LAYER_KINDS, ChebGraphConv, STGCN, TemporalConv, count_parameters, format_blocks


def _filter_parameters(layer: TemporalConv | ChebGraphConv) -> list[tuple[torch.Tensor, int, int]]:
    """(parameter, output-channel dim, copies) for every parameter producing the layer's filters (GLU: 2 copies)."""
    if isinstance(layer, ChebGraphConv):
        return [(layer.theta, 2, 1), (layer.bias, 0, 1)]
    copies = 2 if layer.act == "glu" else 1
    params = [(layer.conv.weight, 0, copies), (layer.conv.bias, 0, copies)]
    if isinstance(layer.residual, nn.Conv2d):
        params.append((layer.residual.weight, 0, 1))
    return params


def filter_importance(model: STGCN) -> dict[str, torch.Tensor]:
    """Per-filter importance sum over the filter's weights of (g*w)^2 from the current gradients (Eq. 13-14)."""
    importance = {}
    for name, layer in model.prunable_layers().items():
        score = torch.zeros(layer.width, device=next(layer.parameters()).device)
        for param, dim, copies in _filter_parameters(layer):
            if param.grad is None:
                continue
            per_row = (param.grad * param).detach().pow(2).movedim(dim, 0).reshape(copies * layer.width, -1).sum(1)
            score += per_row.view(copies, layer.width).sum(0)
        importance[name] = score
    return importance


class ImportanceAccumulator:
    """Sums Eq. 14 filter importance over minibatches and averages it (Algorithm 1, lines 12 and 15)."""

    def __init__(self):
        self.total: dict[str, torch.Tensor] = {}
        self.minibatches = 0

    def add(self, model: STGCN) -> None:
        """Add the importance of the current gradients (call after backward)."""
        for name, score in filter_importance(model).items():
            self.total[name] = self.total[name] + score if name in self.total else score
        self.minibatches += 1

    def average(self) -> dict[str, torch.Tensor]:
        """Importance summed so far divided by the number of minibatches (Algorithm 1, line 15)."""
        if self.minibatches == 0:
            raise RuntimeError("no minibatch has been accumulated")
        return {name: total / self.minibatches for name, total in self.total.items()}

    def reset(self) -> None:
        """Forget everything accumulated (Algorithm 1, after each pruning step)."""
        self.total, self.minibatches = {}, 0


def current_masks(model: STGCN) -> dict[str, torch.Tensor]:
    """The model's masks as bool tensors, all True for an unmasked layer."""
    return {name: (layer.mask.flatten().bool() if layer.mask is not None
                   else torch.ones(layer.width, dtype=torch.bool, device=next(layer.parameters()).device))
            for name, layer in model.prunable_layers().items()}


def kept_channels(model: STGCN, masks: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[int, ...]]:
    """Original ids of the channels each prunable layer keeps under `masks` (default: the model's own)."""
    masks = current_masks(model) if masks is None else masks
    return {name: tuple(model.arch.channel_ids(name)[i] for i in masks[name].nonzero().flatten().tolist())
            for name in model.prunable_layers()}


def masked_parameter_count(model: STGCN, masks: dict[str, torch.Tensor] | None = None) -> int:
    """Parameters of the compact model that `masks` (default: the model's own) leave, built on the meta device."""
    arch = model.arch.with_kept(kept_channels(model, masks))
    with torch.device("meta"):
        return count_parameters(STGCN(arch, torch.empty(arch.ks, arch.n_nodes, arch.n_nodes)))


def removed_share(model: STGCN, masks: dict[str, torch.Tensor] | None = None) -> float:
    """Share of the model's dense parameters that `masks` (default: the model's own) remove."""
    return 1.0 - masked_parameter_count(model, masks) / count_parameters(model)


def max_removable_share(model: STGCN) -> float:
    """Removed share when every prunable layer keeps a single filter (pruning never empties a layer)."""
    single = {name: torch.arange(layer.width) == 0 for name, layer in model.prunable_layers().items()}
    return removed_share(model, single)


def select_masks(model: STGCN, importance: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                 target_ratio: float, step_fraction: float) -> dict[str, torch.Tensor]:
    """One pruning step (Algorithm 1, lines 16-19): mask each layer's lowest-importance surviving filters.

    Each layer loses at most max(1, round(step_fraction * surviving)) filters and never its last one. Filters go
    round robin over layers (each round in ascending importance) and the step stops as soon as `target_ratio` of
    the dense parameters is gone, so the share overshoots the target by at most one filter.
    """
    masks = {name: mask.clone() for name, mask in masks.items()}
    queues = {}
    for name, mask in masks.items():
        alive = mask.nonzero().flatten()
        quota = min(max(1, round(step_fraction * len(alive))), len(alive) - 1)
        order = torch.argsort(importance[name][alive], stable=True)
        queues[name] = alive[order[:quota]].tolist()
    for rank in range(max(len(queue) for queue in queues.values())):
        candidates = sorted((importance[name][queue[rank]].item(), position, name, queue[rank])
                            for position, (name, queue) in enumerate(queues.items()) if rank < len(queue))
        for _, _, name, channel in candidates:
            if removed_share(model, masks) >= target_ratio:
                return masks
            masks[name][channel] = False
    return masks


@torch.no_grad()
def apply_masks(model: STGCN, masks: dict[str, torch.Tensor]) -> None:
    """Set the masks on the model and zero the weights that produce removed filters (Algorithm 1, line 19)."""
    model.set_masks(masks)
    for name, layer in model.prunable_layers().items():
        for param, dim, copies in _filter_parameters(layer):
            param.movedim(dim, 0)[~masks[name].repeat(copies)] = 0


@torch.no_grad()
def _copy_temporal(dst: TemporalConv, src: TemporalConv, in_pos: torch.Tensor, out_pos: torch.Tensor) -> None:
    """Copy the kept rows (both GLU halves) and input columns of a temporal conv and its residual 1x1 conv."""
    rows = torch.cat([out_pos, out_pos + src.width]) if src.act == "glu" else out_pos
    dst.conv.weight.copy_(src.conv.weight[rows][:, in_pos])
    dst.conv.bias.copy_(src.conv.bias[rows])
    if isinstance(src.residual, nn.Conv2d):
        dst.residual.weight.copy_(src.residual.weight[out_pos][:, in_pos])


@torch.no_grad()
def compact(model: STGCN) -> STGCN:
    """Dense smaller STGCN with the masked model's outputs: drop masked filters and every parameter coupled to them."""
    masks = current_masks(model)
    small = STGCN(model.arch.with_kept(kept_channels(model, masks)), model.cheb).to(model.cheb.device)
    small.train(model.training)
    positions = {name: mask.nonzero().flatten() for name, mask in masks.items()}
    in_pos = torch.zeros(1, dtype=torch.long, device=model.cheb.device)
    for b, (src, dst) in enumerate(zip(model.blocks, small.blocks)):
        t1, g, t2 = (positions[f"block{b}.{kind}"] for kind in LAYER_KINDS)
        _copy_temporal(dst.temporal1, src.temporal1, in_pos, t1)
        dst.graph.theta.copy_(src.graph.theta[:, t1][:, :, g])
        dst.graph.bias.copy_(src.graph.bias[g])
        _copy_temporal(dst.temporal2, src.temporal2, g, t2)
        dst.norm.weight.copy_(src.norm.weight[:, t2])
        dst.norm.bias.copy_(src.norm.bias[:, t2])
        in_pos = t2
    src, dst = model.output, small.output
    _copy_temporal(dst.temporal, src.temporal, in_pos, in_pos)
    dst.norm.weight.copy_(src.norm.weight[:, in_pos])
    dst.norm.bias.copy_(src.norm.bias[:, in_pos])
    _copy_temporal(dst.gate, src.gate, in_pos, in_pos)
    dst.fc_weight.copy_(src.fc_weight[in_pos])
    dst.fc_bias.copy_(src.fc_bias)
    return small


def _widths(model: STGCN, masks: dict[str, torch.Tensor]) -> str:
    """Surviving filters per block as [temporal1,graph,temporal2][...]."""
    return format_blocks([[int(masks[f"block{b}.{kind}"].sum()) for kind in LAYER_KINDS]
                          for b in range(len(model.blocks))])


def prune(model: STGCN, batches: Iterable, loss_fn: Callable, optimizer: torch.optim.Optimizer,
          target_ratio: float, pruning_minibatch: int, step_fraction: float,
          log: Callable[[str], None] = print, history: list | None = None) -> dict[str, torch.Tensor]:
    """Algorithm 1: fine-tune with `loss_fn`, accumulate Eq. 14 importance, prune every `pruning_minibatch` minibatches.

    Stops (returning the masks, also set on the model) as soon as `target_ratio` of the model's dense parameters is
    gone. `loss_fn(model, x, y)` is L_STCD against the teacher for Algorithm 1, the task loss for the baseline.
    One row per pruning step is appended to `history` when given.
    """
    limit = max_removable_share(model)
    if not 0.0 <= target_ratio <= limit:
        raise ValueError(f"target_ratio must lie in [0, {limit:.4f}] (every layer keeps one filter), "
                         f"got {target_ratio}")
    model.train()
    masks = current_masks(model)
    accumulator = ImportanceAccumulator()
    losses: list[float] = []
    step = 0
    for minibatch, (x, y) in enumerate(batches, start=1):
        loss = loss_fn(model, x, y)
        loss.backward()
        accumulator.add(model)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if minibatch % pruning_minibatch:
            continue
        step += 1
        masks = select_masks(model, accumulator.average(), masks, target_ratio, step_fraction)
        apply_masks(model, masks)
        accumulator.reset()
        share = removed_share(model, masks)
        row = {"step": step, "minibatches": minibatch, "removed_share": share, "widths": _widths(model, masks),
               "mean_loss": sum(losses) / len(losses)}
        if history is not None:
            history.append(row)
        log(f"prune step {step}: minibatches {minibatch}, removed {share:.2%} of parameters, "
            f"widths {row['widths']}, mean loss {row['mean_loss']:.6g}")
        losses.clear()
        if share >= target_ratio:
            return masks
    raise RuntimeError(f"batches ran out after {step} pruning steps, before removing {target_ratio:.2%}")
