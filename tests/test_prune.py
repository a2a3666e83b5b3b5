"""Tests of filter importance (Eq. 13-14), mask selection, compaction and the pruning loop (Algorithm 1)."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from kdstgcn.graph import chebyshev_polynomials
from kdstgcn.model import LAYER_KINDS, STGCN, Architecture, count_parameters
from kdstgcn.prune import (ImportanceAccumulator, apply_masks, compact, current_masks, filter_importance,
                           masked_parameter_count, max_removable_share, prune, removed_share, select_masks)

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
    accumulator.reset()
    with pytest.raises(RuntimeError):
        accumulator.average()


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


def prune_in_steps(model, importance, target, step_fraction):
    """Apply select_masks from full masks until the target is met; return the masks before and after each step."""
    masks = current_masks(model)
    history = []
    while removed_share(model, masks) < target:
        new = select_masks(model, importance, masks, target, step_fraction)
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
    before, after = history[-1]
    assert removed_share(model, after) >= target
    # putting back one filter removed in the final step (the last one) drops the share below the target
    restored_shares = []
    for name in after:
        for channel in (before[name] & ~after[name]).nonzero().flatten().tolist():
            masks = {k: v.clone() for k, v in after.items()}
            masks[name][channel] = True
            restored_shares.append(removed_share(model, masks))
    assert min(restored_shares) < target


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
