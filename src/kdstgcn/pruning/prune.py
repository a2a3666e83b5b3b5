"""Filter pruning of an STGCN (Algorithm 1 and the Molchanov et al. 2019 baseline) and compaction of the result.

A filter is one output channel of a prunable layer (both temporal convs and the graph conv of each block).
Masks are dicts layer name -> bool tensor [layer width] (True = kept). The parameter count of a masked model is
that of its compact twin, so removing a filter also removes the parameters coupled to it (the next layer's input
weights, LayerNorm entries, residual 1x1 conv entries and, for the last block, the output layer's channels).

Devices: masks may live on any device, whatever device the model is on (`prune` on a GPU, `train` handing the
model back on the CPU). Every function here moves a mask to the device of the tensor it indexes, and the masks
it returns (`current_masks`, `select_masks`, `prune`) are on the CPU.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from kdstgcn.model.architecture import LAYER_KINDS
from kdstgcn.model.graph_conv import ChebGraphConv
from kdstgcn.model.persist import count_parameters
from kdstgcn.model.stgcn import STGCN
from kdstgcn.model.temporal import TemporalConv
from kdstgcn.model.notation import format_blocks


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


IMPORTANCE_MEMORIES = ("carry", "reset")


class ImportanceAccumulator:
    """KDIS of Algorithm 1: Eq. 14 filter importance summed over minibatches (line 12) and divided by their number
    at each pruning decision (lines 14-15). `memory` says what the next interval starts from: "carry" keeps the
    divided KDIS, as the algorithm is written (no line zeroes it); "reset" starts again from zero."""

    def __init__(self, memory: str = "carry"):
        if memory not in IMPORTANCE_MEMORIES:
            raise ValueError(f"unknown importance memory {memory!r}; allowed: {', '.join(IMPORTANCE_MEMORIES)}")
        self.memory = memory
        self.total: dict[str, torch.Tensor] = {}
        self.minibatches = 0

    def add(self, model: STGCN) -> None:
        """Add the importance of the current gradients (call after backward)."""
        for name, score in filter_importance(model).items():
            self.total[name] = self.total[name] + score if name in self.total else score
        self.minibatches += 1

    def average(self) -> dict[str, torch.Tensor]:
        """KDIS divided by the minibatches added since the last decision (Algorithm 1, line 15)."""
        if self.minibatches == 0:
            raise RuntimeError("no minibatch has been accumulated")
        return {name: total / self.minibatches for name, total in self.total.items()}

    def decide(self) -> dict[str, torch.Tensor]:
        """The importance a pruning step ranks by (`average`); the minibatch counter starts again (line 14) and
        KDIS becomes that average ("carry") or zero ("reset")."""
        averaged = self.average()
        self.total = dict(averaged) if self.memory == "carry" else {}
        self.minibatches = 0
        return averaged


def current_masks(model: STGCN) -> dict[str, torch.Tensor]:
    """The model's masks as bool tensors on the CPU, all True for an unmasked layer."""
    return {name: (layer.mask.flatten().bool().cpu() if layer.mask is not None
                   else torch.ones(layer.width, dtype=torch.bool))
            for name, layer in model.prunable_layers().items()}


def kept_channels(model: STGCN, masks: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[int, ...]]:
    """Original ids of the channels each prunable layer keeps under `masks` (default: the model's own)."""
    masks = current_masks(model) if masks is None else masks
    return {name: tuple(model.arch.channel_ids(name)[i] for i in masks[name].cpu().nonzero().flatten().tolist())
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


RANKINGS = ("per_layer", "global")


def _per_layer_order(importance: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                     step_fraction: float) -> list[tuple[str, int]]:
    """Filters to remove, in order: per layer its max(1, round(step_fraction * surviving)) lowest-importance
    survivors (never its last one), taken round robin over layers, each round in ascending importance."""
    queues = {}
    for name, mask in masks.items():
        alive = mask.nonzero().flatten()
        quota = min(max(1, round(step_fraction * len(alive))), len(alive) - 1)
        order = torch.argsort(importance[name][alive], stable=True)
        queues[name] = alive[order[:quota]].tolist()
    order = []
    for rank in range(max(len(queue) for queue in queues.values())):
        candidates = sorted((importance[name][queue[rank]].item(), position, name, queue[rank])
                            for position, (name, queue) in enumerate(queues.items()) if rank < len(queue))
        order += [(name, channel) for _, _, name, channel in candidates]
    return order


def normalised_importance(importance: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
                          ) -> dict[str, torch.Tensor]:
    """Each layer's importance divided by its L2 norm over the layer's surviving filters (Molchanov et al. 2017,
    layer-wise l2 normalisation), so that layers whose scores differ in scale can be ranked together; a layer
    whose survivors all score zero stays zero. Removed filters score zero."""
    normalised = {}
    for name, mask in masks.items():
        score = importance[name] * mask
        norm = score.norm()
        normalised[name] = score / norm if norm > 0 else score
    return normalised


def _global_order(importance: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                  step_fraction: float) -> list[tuple[str, int]]:
    """Filters to remove, in order: the max(1, round(step_fraction * all survivors)) lowest survivors of one
    ranking of normalised importance across layers; each layer's best survivor is never a candidate."""
    normalised = normalised_importance(importance, masks)
    candidates = []
    for position, (name, mask) in enumerate(masks.items()):
        alive = mask.nonzero().flatten()
        ranked = alive[torch.argsort(normalised[name][alive], stable=True)].tolist()
        candidates += [(normalised[name][channel].item(), position, channel, name) for channel in ranked[:-1]]
    quota = max(1, round(step_fraction * sum(int(mask.sum()) for mask in masks.values())))
    return [(name, channel) for _, _, channel, name in sorted(candidates)[:quota]]


def select_masks(model: STGCN, importance: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                 target_ratio: float, step_fraction: float, ranking: str = "per_layer") -> dict[str, torch.Tensor]:
    """One pruning step (Algorithm 1, lines 16-19): mask the lowest-importance surviving filters.

    `ranking` "per_layer": each layer loses at most max(1, round(step_fraction * its survivors)) filters, its
    lowest, so the widths follow the schedule. "global": one ranking across layers of importance normalised per
    layer (`normalised_importance`) takes at most max(1, round(step_fraction * all survivors)) filters, so the
    widths follow importance. Either way a layer never loses its last filter, and the step stops as soon as
    `target_ratio` of the dense parameters is gone (the share overshoots the target by at most one filter).
    Inputs may be on any device; the masks returned are on the CPU.
    """
    masks = {name: mask.detach().cpu().bool().clone() for name, mask in masks.items()}
    importance = {name: score.detach().cpu() for name, score in importance.items()}
    if ranking == "per_layer":
        order = _per_layer_order(importance, masks, step_fraction)
    elif ranking == "global":
        order = _global_order(importance, masks, step_fraction)
    else:
        raise ValueError(f"unknown ranking {ranking!r}; allowed: {', '.join(RANKINGS)}")
    for name, channel in order:
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
            param.movedim(dim, 0)[~masks[name].to(param.device).repeat(copies)] = 0


def _grid(*axes: torch.Tensor | None) -> tuple:
    """Index selecting the outer product of `axes` (None = the whole dimension), as numpy's ix_ does."""
    tensors = [axis for axis in axes if axis is not None]
    shaped = iter(axis.view([-1 if i == k else 1 for i in range(len(tensors))]) for k, axis in enumerate(tensors))
    return tuple(slice(None) if axis is None else next(shaped) for axis in axes)


def _temporal_entries(full: TemporalConv, small: TemporalConv, in_pos: torch.Tensor, out_pos: torch.Tensor):
    """A temporal conv's kept rows (both GLU halves), input columns and its residual 1x1 conv's entries."""
    rows = torch.cat([out_pos, out_pos + full.width]) if full.act == "glu" else out_pos
    yield full.conv.weight, small.conv.weight, _grid(rows, in_pos)
    yield full.conv.bias, small.conv.bias, _grid(rows)
    if isinstance(full.residual, nn.Conv2d):
        yield full.residual.weight, small.residual.weight, _grid(out_pos, in_pos)


def _kept_entries(full: STGCN, small: STGCN, masks: dict[str, torch.Tensor]):
    """(full-width parameter, compact parameter, index of the compact one's entries in the full one) for every
    parameter of the compact model: the correspondence that `compact` and `expand` copy along."""
    device = full.cheb.device
    positions = {name: mask.to(device).nonzero().flatten() for name, mask in masks.items()}
    in_pos = torch.zeros(1, dtype=torch.long, device=device)
    for b, (src, dst) in enumerate(zip(full.blocks, small.blocks)):
        t1, g, t2 = (positions[f"block{b}.{kind}"] for kind in LAYER_KINDS)
        yield from _temporal_entries(src.temporal1, dst.temporal1, in_pos, t1)
        yield src.graph.theta, dst.graph.theta, _grid(None, t1, g)
        yield src.graph.bias, dst.graph.bias, _grid(g)
        yield from _temporal_entries(src.temporal2, dst.temporal2, g, t2)
        yield src.norm.weight, dst.norm.weight, _grid(None, t2)
        yield src.norm.bias, dst.norm.bias, _grid(None, t2)
        in_pos = t2
    src, dst = full.output, small.output
    yield from _temporal_entries(src.temporal, dst.temporal, in_pos, in_pos)
    yield src.norm.weight, dst.norm.weight, _grid(None, in_pos)
    yield src.norm.bias, dst.norm.bias, _grid(None, in_pos)
    yield from _temporal_entries(src.gate, dst.gate, in_pos, in_pos)
    yield src.fc_weight, dst.fc_weight, _grid(in_pos)
    yield src.fc_bias, dst.fc_bias, _grid(None)


@torch.no_grad()
def compact(model: STGCN) -> STGCN:
    """Dense smaller STGCN with the masked model's outputs: drop masked filters and every parameter coupled to them.

    Built on the model's device, whatever device the model's masks were given on."""
    masks = current_masks(model)
    small = STGCN(model.arch.with_kept(kept_channels(model, masks)), model.cheb).to(model.cheb.device)
    small.train(model.training)
    for full_param, small_param, index in _kept_entries(model, small, masks):
        small_param.copy_(full_param[index])
    return small


@torch.no_grad()
def expand(small: STGCN, like: STGCN) -> STGCN:
    """The inverse of `compact`: a copy of the masked model `like` whose kept entries are `small`'s weights.

    `expand(compact(m), m)` is `m` and `compact(expand(s, m))` is `s`. Entries that `like`'s masks remove keep
    `like`'s values (zero for the removed filters' own weights, see `apply_masks`), so the result computes what
    `small` computes. On `like`'s device."""
    masks = current_masks(like)
    expected = like.arch.with_kept(kept_channels(like, masks))
    if small.arch != expected:
        raise ValueError(f"cannot expand a model with kept channels {small.arch.kept} into one whose masks keep "
                         f"{expected.kept}: it is not that masked model's compact twin")
    full = copy.deepcopy(like)
    for full_param, small_param, index in _kept_entries(full, small, masks):
        full_param[index] = small_param.to(full_param.device)
    return full


def _widths(model: STGCN, masks: dict[str, torch.Tensor]) -> str:
    """Surviving filters per block as [temporal1,graph,temporal2][...]."""
    return format_blocks([[int(masks[f"block{b}.{kind}"].sum()) for kind in LAYER_KINDS]
                          for b in range(len(model.blocks))])


def prune(model: STGCN, batches: Iterable, loss_fn: Callable, optimizer: torch.optim.Optimizer,
          target_ratio: float, pruning_minibatch: int, step_fraction: float, ranking: str = "per_layer",
          log: Callable[[str], None] = print, history: list | None = None,
          importance_memory: str = "carry") -> dict[str, torch.Tensor]:
    """Algorithm 1: fine-tune with `loss_fn`, accumulate Eq. 14 importance, prune every `pruning_minibatch` minibatches.

    Stops (returning the masks on the CPU, also set on the model) as soon as `target_ratio` of the model's dense
    parameters is gone. `loss_fn(model, x, y)` is L_STCD against the teacher for Algorithm 1, the task loss for the
    baseline. `step_fraction` and `ranking` shape each step (`select_masks`); `importance_memory` says whether the
    averaged importance is carried into the next interval, as Algorithm 1 is written, or reset to zero
    (`ImportanceAccumulator`). One row per pruning step is appended to `history` when given.
    """
    limit = max_removable_share(model)
    if not 0.0 <= target_ratio <= limit:
        raise ValueError(f"target_ratio must lie in [0, {limit:.4f}] (every layer keeps one filter), "
                         f"got {target_ratio}")
    model.train()
    masks = current_masks(model)
    accumulator = ImportanceAccumulator(importance_memory)
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
        masks = select_masks(model, accumulator.decide(), masks, target_ratio, step_fraction, ranking)
        apply_masks(model, masks)
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
