"""Tests of filter importance (Eq. 13-14), mask selection (per-layer and global ranking), compaction and its
inverse, masks on another device than the model, compact fine-tuning and the pruning loop (Algorithm 1)."""
import copy
import itertools
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from torch.utils._pytree import tree_flatten

from conftest import merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.config.runspec import LossSpec, PruneSpec, RunSpec
from kdstgcn.data.graph import chebyshev_polynomials, load_cheb
from kdstgcn.data.samples import load_data
from kdstgcn.jobs.prune import fit_prune, prune_run
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import LAYER_KINDS, Architecture
from kdstgcn.model.persist import count_parameters, load_model, save_model
from kdstgcn.model.stgcn import STGCN
from kdstgcn.pruning.prune import (ImportanceAccumulator, apply_masks, compact, current_masks, expand, filter_importance,
                           kept_channels, masked_parameter_count, max_removable_share, normalised_importance, prune,
                           removed_share, select_masks)
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.training.loop import train

SMALL = ((1, 4, 8), (8, 4, 16))
TEACHER = ((1, 32, 64), (64, 32, 128))


def random_cheb(n_nodes: int, ks: int = 3, seed: int = 0) -> torch.Tensor:
    """Chebyshev stack of a random geometric graph with Gaussian weights."""
    points = np.random.default_rng(seed).uniform(size=(n_nodes, 2))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    w = np.exp(-d ** 2 / 0.1) * (d < 0.5)
    np.fill_diagonal(w, 0.0)
    return chebyshev_polynomials(w, ks)


def make_model(n_nodes: int = 12, blocks=SMALL, seed: int = 0, randomise: bool = True) -> STGCN:
    """An STGCN whose parameters (LayerNorm and biases included) are all random, so slicing errors show."""
    torch.manual_seed(seed)
    model = STGCN(Architecture(n_nodes, blocks), random_cheb(n_nodes, seed=seed))
    if randomise:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    return model


def random_masks(model: STGCN, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Each layer keeps a random non-empty subset of its filters, a proper one where it has more than one."""
    masks = {}
    for name, layer in model.prunable_layers().items():
        keep = int(torch.randint(1, max(layer.width, 2), (1,), generator=generator))
        mask = torch.zeros(layer.width, dtype=torch.bool)
        mask[torch.randperm(layer.width, generator=generator)[:keep]] = True
        masks[name] = mask
    return masks


def random_importance(model: STGCN, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(layer.width, generator=generator) for name, layer in model.prunable_layers().items()}


def mse_loss(model, x, y):
    return nn.functional.mse_loss(model(x), y)


def test_importance_equals_literal_loop_over_filters():
    model = make_model()
    x, y = torch.randn(5, 12, 12), torch.randn(5, 12)
    masks = {name: torch.arange(layer.width) % 2 == 0 for name, layer in model.prunable_layers().items()}
    apply_masks(model, masks)
    mse_loss(model, x, y).backward()
    params = dict(model.named_parameters())
    assert "blocks.1.temporal1.residual.weight" in params  # the 1x1 residual of the narrowing block is counted

    def term(name, index):
        p = params[name]
        return ((p.grad[index] * p[index]) ** 2).sum().item()

    importance = filter_importance(model)
    for b, kind in itertools.product(range(2), LAYER_KINDS):
        prefix = f"blocks.{b}.{kind}"
        width = model.prunable_layers()[f"block{b}.{kind}"].width
        expected = []
        for s in range(width):
            if kind == "graph":
                total = term(f"{prefix}.theta", (slice(None), slice(None), s)) + term(f"{prefix}.bias", s)
            else:
                rows = [s, s + width] if kind == "temporal1" else [s]
                total = sum(term(f"{prefix}.conv.weight", r) + term(f"{prefix}.conv.bias", r) for r in rows)
                if f"{prefix}.residual.weight" in params:
                    total += term(f"{prefix}.residual.weight", s)
            expected.append(total)
        torch.testing.assert_close(importance[f"block{b}.{kind}"], torch.tensor(expected), rtol=1e-5, atol=1e-12)
    assert all(importance[name][masks[name]].sum() > 0 for name in masks)
    assert all(importance[name][~masks[name]].max() == 0 for name in masks)  # removed filters score zero


def test_accumulator_averages_over_minibatches():
    model = make_model()
    accumulator = ImportanceAccumulator()
    scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        model.zero_grad()
        mse_loss(model, torch.randn(4, 12, 12), torch.randn(4, 12)).backward()
        scores.append(filter_importance(model))
        accumulator.add(model)
    for name, average in accumulator.average().items():
        torch.testing.assert_close(average, sum(s[name] for s in scores) / 3)
    accumulator.decide()
    with pytest.raises(RuntimeError):
        accumulator.average()


def set_gradients(model: STGCN, gradients: dict[str, torch.Tensor], scale: float = 1.0) -> None:
    for name, param in model.named_parameters():
        param.grad = scale * gradients[name]


@pytest.mark.parametrize("memory, expected", [("reset", [2.5, 12.5, 30.5]), ("carry", [2.5, 13.75, 37.375])])
def test_importance_memory_follows_a_hand_computed_schedule(memory, expected):
    """Minibatch k has gradients k * G, so its importance is k^2 times that of G; a decision every two minibatches.
    The intervals sum 1 + 4 = 5, 9 + 16 = 25 and 25 + 36 = 61 units. reset: 5/2, 25/2, 61/2. carry (Algorithm 1,
    lines 14-15, as written): 5/2 = 2.5, (2.5 + 25)/2 = 13.75, (13.75 + 61)/2 = 37.375."""
    model = make_model()
    generator = torch.Generator().manual_seed(0)
    gradients = {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}
    set_gradients(model, gradients)
    unit = filter_importance(model)
    accumulator = ImportanceAccumulator(memory)
    decisions = []
    for k in range(1, 7):
        set_gradients(model, gradients, scale=float(k))
        accumulator.add(model)
        if k % 2 == 0:
            decisions.append(accumulator.decide())
    for decided, factor in zip(decisions, expected):
        for name in unit:
            torch.testing.assert_close(decided[name], factor * unit[name])


def test_prune_ranks_the_second_step_by_carried_or_reset_importance():
    """Weights held still (learning rate 0), gradients G_A in the first interval and G_B in the second, two
    minibatches each: the second step ranks I_A / 2 + I_B (carry) or I_B (reset), whatever the first removed."""
    model = make_model()
    patterns = []
    for seed in (1, 2):
        generator = torch.Generator().manual_seed(seed)
        patterns.append({name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()})
    unit = []
    for gradients in patterns:
        set_gradients(model, gradients)
        unit.append(filter_importance(model))
    first = select_masks(model, unit[0], current_masks(model), 0.9, 0.25)
    expected = {}
    for memory, ranked in (("carry", {k: unit[0][k] / 2 + unit[1][k] for k in unit[0]}), ("reset", unit[1])):
        second = select_masks(model, ranked, first, 0.9, 0.25)
        target = removed_share(model, second)

        def loss_fn(m, x, y):
            return sum((p * patterns[int(x)][name]).sum() for name, p in m.named_parameters())

        pruned = copy.deepcopy(model)
        batches = [(torch.tensor(k // 2), None) for k in range(4)]
        masks = prune(pruned, iter(batches), loss_fn, torch.optim.SGD(pruned.parameters(), lr=0.0), target, 2, 0.25,
                      log=lambda line: None, importance_memory=memory)
        assert all(torch.equal(masks[k], second[k]) for k in masks), memory
        expected[memory] = second
    assert any(not torch.equal(expected["carry"][k], expected["reset"][k]) for k in expected["carry"])


def assert_compact_matches(model: STGCN, x: torch.Tensor) -> STGCN:
    """The compact model computes the masked model's outputs and features and has the masked parameter count."""
    model.eval()
    small = compact(model).eval()
    with torch.no_grad():
        y, features = model(x, return_features=True)
        y_small, features_small = small(x, return_features=True)
    torch.testing.assert_close(y_small, y, atol=1e-5, rtol=1e-5)
    masks = current_masks(model)
    layer_order = {"temporal": ["temporal1", "temporal2"], "spatial": ["graph"]}
    for key, kinds in layer_order.items():
        names = [f"block{b}.{kind}" for b in range(len(model.blocks)) for kind in kinds]
        for name, full, kept in zip(names, features[key], features_small[key]):
            torch.testing.assert_close(kept, full[:, masks[name]], atol=1e-5, rtol=1e-5)
    assert count_parameters(small) == masked_parameter_count(model)
    return small


@pytest.mark.parametrize("seed", range(4))
def test_compact_model_equals_masked_model(seed):
    model = make_model(seed=seed)
    masks = random_masks(model, torch.Generator().manual_seed(seed))
    assert all(not m.all() for m in masks.values())  # every layer, the last temporal2 included, loses filters
    model.set_masks(masks)
    x = torch.randn(3, 12, 12)
    small = assert_compact_matches(model, x)
    assert count_parameters(small) < count_parameters(model)
    # pruning the compact model again and compacting once more still matches
    small.set_masks(random_masks(small, torch.Generator().manual_seed(seed + 10)))
    assert_compact_matches(small, x)


def test_unmasked_model_compacts_to_itself():
    model = make_model()
    assert masked_parameter_count(model) == count_parameters(model)
    assert removed_share(model) == 0.0
    assert_compact_matches(model, torch.randn(2, 12, 12))


def test_teacher_pruned_to_student_widths_compacts_to_student_architecture():
    n = 20
    model = make_model(n_nodes=n, blocks=TEACHER)
    generator = torch.Generator().manual_seed(0)
    widths = {"block0.temporal1": 2, "block0.graph": 2, "block0.temporal2": 4,
              "block1.temporal1": 2, "block1.graph": 2, "block1.temporal2": 8}
    masks = {}
    for name, layer in model.prunable_layers().items():
        masks[name] = torch.zeros(layer.width, dtype=torch.bool)
        masks[name][torch.randperm(layer.width, generator=generator)[:widths[name]]] = True
    model.set_masks(masks)
    small = assert_compact_matches(model, torch.randn(2, 12, n))
    assert {name: len(ids) for name, ids in small.arch.kept.items()} == widths
    assert small.blocks[1].temporal1.conv.weight.shape == (4, 4, 3, 1)
    assert small.blocks[1].temporal1.residual.weight.shape == (2, 4, 1, 1)
    assert small.output.temporal.conv.weight.shape == (16, 8, 4, 1)
    assert small.output.fc_weight.shape == (8,)
    student = STGCN(Architecture(n, ((1, 2, 4), (4, 2, 8))), model.cheb)
    assert count_parameters(small) == count_parameters(student)
    assert removed_share(model) > 0.97


def test_pruned_channels_stay_zero_while_fine_tuning():
    model = make_model()
    masks = random_masks(model, torch.Generator().manual_seed(3))
    apply_masks(model, masks)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    x, y = torch.randn(6, 12, 12), torch.randn(6, 12)
    names = {"temporal": ["block0.temporal1", "block0.temporal2", "block1.temporal1", "block1.temporal2"],
             "spatial": ["block0.graph", "block1.graph"]}
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):
        mse_loss(model, x, y).backward()
        optimizer.step()
        optimizer.zero_grad()
        _, features = model(x, return_features=True)
        for key, layer_names in names.items():
            for name, output in zip(layer_names, features[key]):
                assert output[:, ~masks[name]].abs().max() == 0
        assert features["hidden"][:, ~masks["block1.temporal2"]].abs().max() == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it did fine-tune
    for name, layer in model.prunable_layers().items():  # removed filters' weights stay zeroed
        removed = ~masks[name]
        if name.endswith("graph"):
            weight = layer.theta[:, :, removed]
        else:
            weight = layer.conv.weight[removed.repeat(2) if layer.act == "glu" else removed]
        assert weight.abs().max() == 0
    assert_compact_matches(model, x)


def prune_in_steps(model, importance, target, step_fraction, ranking="per_layer"):
    """Apply select_masks from full masks until the target is met; return the masks before and after each step."""
    masks = current_masks(model)
    history = []
    while removed_share(model, masks) < target:
        new = select_masks(model, importance, masks, target, step_fraction, ranking)
        history.append((masks, new))
        if all(torch.equal(new[k], masks[k]) for k in masks):
            break
        masks = new
    return history


@pytest.mark.parametrize("n_nodes, blocks", [(12, SMALL), (20, TEACHER)])
def test_masks_never_empty_a_layer(n_nodes, blocks):
    model = make_model(n_nodes=n_nodes, blocks=blocks)
    history = prune_in_steps(model, random_importance(model, 0), 0.99, step_fraction=0.5)
    masks = history[-1][1]
    assert all(mask.sum() >= 1 for mask in masks.values())
    assert removed_share(model, masks) >= 0.99 or all(mask.sum() == 1 for mask in masks.values())
    if max_removable_share(model) < 0.99:
        with pytest.raises(ValueError):
            prune(model, iter([]), mse_loss, torch.optim.SGD(model.parameters(), lr=0.1), 0.99, 1, 0.5)


@pytest.mark.parametrize("n_nodes, blocks, target", [(12, SMALL, 0.3), (12, SMALL, 0.6), (20, TEACHER, 0.5),
                                                      (20, TEACHER, 0.97)])
def test_ratio_met_within_one_filter(n_nodes, blocks, target):
    model = make_model(n_nodes=n_nodes, blocks=blocks)
    importance = random_importance(model, 1)
    step_fraction = 0.2
    history = prune_in_steps(model, importance, target, step_fraction)
    for before, after in history:
        for name in before:
            surviving = int(before[name].sum())
            removed = before[name] & ~after[name]
            assert not (after[name] & ~before[name]).any()
            assert int(removed.sum()) <= max(1, round(step_fraction * surviving))
            if removed.any():  # the lowest-importance survivors go first
                assert importance[name][removed].max() <= importance[name][after[name]].min()
    assert_one_filter_overshoot_at_most(model, *history[-1], target)


def test_prune_reaches_target_on_synthetic_regression():
    def run():
        model = make_model(randomise=False)
        generator = torch.Generator().manual_seed(5)
        data = []
        for _ in range(4):
            x = torch.randn(8, 12, 12, generator=generator)
            data.append((x, x[:, -3:].mean(dim=1)))
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
        lines = []
        masks = prune(model, itertools.cycle(data), mse_loss, optimizer, target_ratio=0.5,
                      pruning_minibatch=2, step_fraction=0.2, log=lines.append)
        return model, masks, lines, data

    model, masks, lines, data = run()
    assert removed_share(model, masks) >= 0.5
    assert all(torch.equal(masks[k], v) for k, v in current_masks(model).items())
    assert all(mask.any() for mask in masks.values())
    assert lines and all(line.startswith("prune step") and "mean loss" in line for line in lines)
    assert_compact_matches(model, data[0][0])
    _, masks_again, lines_again, _ = run()  # deterministic given the seed
    assert lines_again == lines and all(torch.equal(masks[k], masks_again[k]) for k in masks)


def test_prune_raises_when_batches_run_out():
    model = make_model()
    data = [(torch.randn(2, 12, 12), torch.randn(2, 12))] * 2
    with pytest.raises(RuntimeError):
        prune(model, iter(data), mse_loss, torch.optim.SGD(model.parameters(), lr=1e-3), 0.9, 1, 0.01,
              log=lambda line: None)


def assert_one_filter_overshoot_at_most(model, before, after, target):
    """The final step met the target, and putting back any one filter it removed drops the share below it."""
    assert removed_share(model, after) >= target
    restored_shares = []
    for name in after:
        for channel in (before[name] & ~after[name]).nonzero().flatten().tolist():
            masks = {k: v.clone() for k, v in after.items()}
            masks[name][channel] = True
            restored_shares.append(removed_share(model, masks))
    assert min(restored_shares) < target


@pytest.mark.parametrize("n_nodes, blocks, target", [(12, SMALL, 0.3), (12, SMALL, 0.6), (20, TEACHER, 0.5),
                                                      (20, TEACHER, 0.97)])
def test_global_ranking_meets_the_ratio_and_never_empties_a_layer(n_nodes, blocks, target):
    model = make_model(n_nodes=n_nodes, blocks=blocks)
    importance = random_importance(model, 2)
    step_fraction = 0.2
    history = prune_in_steps(model, importance, target, step_fraction, ranking="global")
    for before, after in history:
        assert all(mask.sum() >= 1 for mask in after.values())
        assert all(not (after[name] & ~before[name]).any() for name in before)
        surviving = sum(int(mask.sum()) for mask in before.values())
        removed = sum(int((before[name] & ~after[name]).sum()) for name in before)
        assert 1 <= removed <= max(1, round(step_fraction * surviving))
        # one ranking: every filter removed scores no higher (normalised) than any candidate that survived
        normalised = normalised_importance(importance, before)
        removed_scores = torch.cat([normalised[k][before[k] & ~after[k]] for k in before])
        candidates = []
        for name in before:
            kept = normalised[name][after[name]]
            candidates.append(kept.sort().values[:-1])  # a layer's best survivor is never a candidate
        assert removed_scores.max() <= torch.cat(candidates).min()
    assert_one_filter_overshoot_at_most(model, *history[-1], target)


def test_global_ranking_widths_follow_importance():
    """A layer whose filters but one matter little loses all but one under the global ranking, more than any
    other layer; ranked per layer, it shrinks on the schedule like the others."""
    model = make_model(n_nodes=20, blocks=TEACHER)
    importance = random_importance(model, 3)
    weak = "block1.temporal1"
    importance[weak] = torch.rand(importance[weak].shape, generator=torch.Generator().manual_seed(4)) * 1e-4
    importance[weak][7] = 1.0
    masks = {ranking: prune_in_steps(model, importance, 0.5, 0.1, ranking)[-1][1]
             for ranking in ("global", "per_layer")}
    kept_share = {ranking: {name: mask.float().mean().item() for name, mask in m.items()}
                  for ranking, m in masks.items()}
    assert masks["global"][weak].nonzero().flatten().tolist() == [7]
    assert all(share > kept_share["global"][weak] for name, share in kept_share["global"].items() if name != weak)
    assert kept_share["per_layer"][weak] > kept_share["global"][weak]
    assert len(set(kept_share["global"].values())) > 2  # the widths differ with importance


def test_unknown_ranking_is_rejected():
    model = make_model()
    with pytest.raises(ValueError, match="unknown ranking 'random'"):
        select_masks(model, random_importance(model, 0), current_masks(model), 0.5, 0.1, "random")


class OnOtherDevice(torch.Tensor):
    """A CPU tensor that behaves as if it lived on a second device (cuda:0), with CUDA's rules: it cannot meet a
    CPU tensor of one or more dimensions in an op, nor index a CPU tensor; `.to(cpu)` / `.cpu()` bring it back as
    a plain tensor. Lets a test without a GPU put masks on another device than the model."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == torch.Tensor.device.__get__:
            return torch.device("cuda", 0)
        if func in (torch.Tensor.to, torch.Tensor.cpu):
            targets = [a for a in tree_flatten((args[1:], kwargs))[0] if isinstance(a, (str, torch.device))]
            if func is torch.Tensor.cpu or (targets and torch.device(targets[0]).type == "cpu"):
                with torch._C.DisableTorchFunctionSubclass():
                    plain = args[0].as_subclass(torch.Tensor)
                    dtypes = [a for a in tree_flatten((args[1:], kwargs))[0] if isinstance(a, torch.dtype)]
                    return plain.to(dtypes[0]) if dtypes else plain.clone()
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            if not isinstance(args[0], cls) and any(isinstance(t, cls) for t in tensors[1:]):
                raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
        elif any(isinstance(t, cls) for t in tensors) and any(not isinstance(t, cls) and t.dim() for t in tensors):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 and cpu! ({func.__name__})")
        return super().__torch_function__(func, types, args, kwargs)


def on_other_device(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.clone().as_subclass(OnOtherDevice) for name, tensor in tensors.items()}


def test_the_fake_second_device_enforces_cuda_rules():
    mask = on_other_device({"m": torch.tensor([True, False, True])})["m"]
    weight = torch.randn(3, 2)
    assert mask.device.type == "cuda"
    with pytest.raises(RuntimeError, match="indices should be either on cpu"):
        weight[mask.nonzero().flatten()]
    with pytest.raises(RuntimeError, match="same device"):
        weight * mask.float().view(3, 1)
    plain = mask.to(weight.device)
    assert type(plain) is torch.Tensor and torch.equal(weight[plain], weight[[0, 2]])


def test_masks_on_another_device_than_the_model():
    """Issue 10: `prune` made the masks on the GPU, `train` handed the model back on the CPU, and compaction
    failed indexing CPU weights with GPU indices. Every function that takes masks accepts them on any device."""
    model = make_model()
    masks = random_masks(model, torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model)
    apply_masks(reference, masks)
    apply_masks(model, on_other_device(masks))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert all(type(m) is torch.Tensor and torch.equal(m, masks[k]) for k, m in current_masks(model).items())
    assert kept_channels(model, on_other_device(masks)) == kept_channels(reference)
    assert removed_share(model, on_other_device(masks)) == removed_share(reference)
    model.set_masks(on_other_device(masks))
    x = torch.randn(3, 12, 12)
    small = assert_compact_matches(model, x)
    assert count_parameters(small) == count_parameters(compact(reference))
    restored = expand(small, model)
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))
    importance = on_other_device(random_importance(model, 5))
    selected = select_masks(model, importance, on_other_device(masks), 0.9, 0.3, "global")
    assert selected.keys() == masks.keys() and all(type(m) is torch.Tensor for m in selected.values())
    assert removed_share(model, selected) > removed_share(model, masks)


def test_expand_is_the_inverse_of_compact():
    model = make_model(seed=2)
    masks = random_masks(model, torch.Generator().manual_seed(2))
    apply_masks(model, masks)
    small = compact(model)
    restored = expand(small, model)
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))
    with torch.no_grad():
        for p in small.parameters():
            p.normal_(0.0, 0.3)
    restored = expand(small, model)
    assert all(torch.equal(a, b) for a, b in zip(compact(restored).state_dict().values(), small.state_dict().values()))
    x = torch.randn(3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(x), small.eval()(x), atol=1e-5, rtol=1e-5)
    other = compact(make_model(seed=2))
    with pytest.raises(ValueError, match="compact twin"):
        expand(other, model)


@pytest.fixture(scope="module")
def synthetic_data(synthetic_files):
    return load_data(str(synthetic_files.values), str(synthetic_files.fill_report), synthetic_files.data_spec())


def test_compact_fine_tuning_equals_fine_tuning_under_the_mask(synthetic_files, synthetic_data, tmp_path,
                                                               single_thread):
    """With dropout 0 and the same seed, training the compact model and expanding it gives the weights that
    training the masked full-width model gives (RMSprop: removed weights get zero gradients and stay put)."""
    cheb = load_cheb(str(synthetic_files.adjacency), 3)
    torch.manual_seed(0)
    model = STGCN(Architecture(synthetic_files.n_nodes, SMALL, dropout=0.0), cheb)
    apply_masks(model, random_masks(model, torch.Generator().manual_seed(6)))
    settings = TrainSettings(epochs=2, batch_size=50, learning_rate=3e-3, lr_step_epochs=1, seed=0,
                             eval_batch_size=200)
    masked, masked_history = train(copy.deepcopy(model), synthetic_data, TaskLoss(), settings, tmp_path / "m.pt",
                                   device=torch.device("cpu"))
    small, small_history = train(compact(model), synthetic_data, TaskLoss(), settings, tmp_path / "c.pt",
                                 device=torch.device("cpu"))
    assert count_parameters(small) < count_parameters(model) / 2
    assert not torch.equal(small.output.fc_bias, model.output.fc_bias)  # it did train
    removed = {name: ~mask for name, mask in current_masks(model).items()}
    assert all(layer.conv.weight[removed[name].repeat(2) if layer.act == "glu" else removed[name]].abs().max() == 0
               for name, layer in masked.prunable_layers().items() if not name.endswith("graph"))
    for (name, a), b in zip(expand(small, model).state_dict().items(), masked.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(small_history["val_mae"], masked_history["val_mae"], atol=1e-4, rtol=1e-4)


def prune_spec(synthetic_files, epochs: int, ranking: str = "per_layer") -> RunSpec:
    task = LossSpec("task", {}, "cdist")
    return RunSpec("synthetic", "pruned_taylor_base_50", synthetic_files.data_spec(),
                   TrainSettings(epochs=epochs, batch_size=50, eval_batch_size=200), task, "cpu",
                   prune=PruneSpec("taylor", "base", 50, task, pruning_minibatch=1, step_fraction=0.25,
                                   ranking=ranking, importance_memory="carry"))


def all_tensors(blob) -> list[torch.Tensor]:
    return [t for t in tree_flatten(blob)[0] if isinstance(t, torch.Tensor)]


ON_CUDA = pytest.param("cuda", "global", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])


@pytest.mark.parametrize("device, ranking", [("cpu", "per_layer"), ("cpu", "global"), ON_CUDA])
def test_prune_run_writes_cpu_models_and_resumes_the_compact_fine_tuning(synthetic_files, tmp_path, caplog,
                                                                         single_thread, device, ranking):
    cheb = load_cheb(str(synthetic_files.adjacency), 3)
    torch.manual_seed(0)
    save_model(STGCN(Architecture(synthetic_files.n_nodes, SMALL), cheb), tmp_path / "base.pt")
    out = {key: str(tmp_path / name) for key, name in [("model", "model.pt"), ("masked", "masked_model.pt"),
                                                       ("steps", "steps.parquet"), ("history", "history.parquet"),
                                                       ("info", "info.json")]}

    def run(epochs, ranking=ranking):
        return prune_run(replace(prune_spec(synthetic_files, epochs, ranking), device=device),
                         str(synthetic_files.values), str(synthetic_files.fill_report), str(tmp_path / "base.pt"),
                         None, out, str(tmp_path / "checkpoint.pt"))

    run(1)
    for name in ("model.pt", "masked_model.pt"):  # stored on the CPU, whatever the device
        assert all(t.device.type == "cpu" for t in all_tensors(torch.load(tmp_path / name, weights_only=False)))
    dense, extra = load_model(out["model"], map_location="cpu")
    masked, _ = load_model(out["masked"], map_location="cpu")
    assert extra["kept_pct"] <= 50.0 + 1e-9 and count_parameters(dense) == masked_parameter_count(masked)
    assert dense.arch.kept == {k: tuple(v) for k, v in extra["kept_channels"].items()}
    x = torch.randn(4, 12, synthetic_files.n_nodes)
    with torch.no_grad():
        torch.testing.assert_close(masked.eval()(x), dense.eval()(x), atol=1e-5, rtol=1e-5)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert {k: v.shape for k, v in checkpoint["model"].items()} == {k: v.shape for k, v in dense.state_dict().items()}
    with caplog.at_level(logging.INFO):
        run(2)
    assert "after epoch 1" in caplog.text
    assert pd.read_parquet(out["history"])["epoch"].tolist() == [1, 2]
    caplog.clear()
    with caplog.at_level(logging.INFO):  # another ranking is another run: its checkpoint does not resume
        run(2, ranking="per_layer" if ranking == "global" else "global")
    assert "ignoring checkpoint" in caplog.text and "resuming" not in caplog.text


def test_the_teacher_share_of_a_pruned_model_counts_its_fine_tuning_only(synthetic_files, synthetic_data, tmp_path,
                                                                        single_thread):
    """Algorithm 1 with L_ORD as importance and fine-tuning loss: the share the pruned model records (Table 3's
    quantity) counts the entries of its fine-tuning epochs, not those of the pruning phase before them."""
    cheb = load_cheb(str(synthetic_files.adjacency), 3)
    torch.manual_seed(0)
    for name in ("base.pt", "teacher.pt"):
        save_model(STGCN(Architecture(synthetic_files.n_nodes, SMALL), cheb), tmp_path / name)
    ord_loss = LossSpec("ord", {"alpha1": 0.5}, readings={})
    run = RunSpec("synthetic", "pruned_kd_taylor_base_50", synthetic_files.data_spec(),
                  TrainSettings(epochs=1, batch_size=50, eval_batch_size=200), ord_loss, "cpu",
                  prune=PruneSpec("kd_taylor", "base", 50, ord_loss, pruning_minibatch=1, step_fraction=0.25,
                                  ranking="per_layer", importance_memory="carry"))
    *_, finetune_loss, steps, _ = fit_prune(run, str(synthetic_files.values), str(synthetic_files.fill_report),
                                            str(tmp_path / "base.pt"), str(tmp_path / "teacher.pt"),
                                            str(tmp_path / "checkpoint.pt"))
    assert len(steps) > 0  # the pruning phase ran minibatches of the same loss before the fine-tuning
    assert int(finetune_loss.entries) == synthetic_data.one_step_targets("train").shape.numel()  # one epoch's entries
    assert 0 < finetune_loss.share_pct() < 100


def test_pruning_switches_reach_the_run_spec():
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    assert (config["pruning"]["ranking"], config["pruning"]["finetune_loss"]) == ("per_layer", "stcd")  # today's
    algorithm1 = runspec.prune_run(config, "demo", "kd_taylor", "teacher", 97, 0)
    baseline = runspec.prune_run(config, "demo", "taylor", "pruning_base", 50, 0)
    assert algorithm1.prune.ranking == baseline.prune.ranking == "per_layer"
    assert algorithm1.prune.finetune_loss == algorithm1.loss and algorithm1.loss.name == "stcd"
    assert baseline.prune.finetune_loss.name == baseline.loss.name == "task"
    config["pruning"] |= {"ranking": "global", "finetune_loss": "task"}
    schema.validate(config)
    algorithm1 = runspec.prune_run(config, "demo", "kd_taylor", "teacher", 97, 0)
    assert algorithm1.prune.ranking == "global" and algorithm1.loss.name == "stcd"
    assert algorithm1.prune.finetune_loss.name == "task"
    for key, value in [("ranking", "random"), ("finetune_loss", "ord")]:
        bad = copy.deepcopy(config)
        bad["pruning"][key] = value
        with pytest.raises(schema.ConfigError, match=f"pruning.{key}: '{value}' is not one of"):
            schema.validate(bad)
