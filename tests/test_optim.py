"""Optimisers: RMSprop as in the original TF code against a hand-written update, resumable through its
state_dict, and make_optimizer's choices."""
import math

import pytest
import torch

from kdstgcn.training.optim import OPTIMIZERS, TFRMSprop, make_optimizer
from kdstgcn.config.runspec import TrainSettings

DOUBLE = torch.float64


def quadratic_gradient(w: torch.Tensor, step: int) -> torch.Tensor:
    """Gradient of sum((w - c_step)^2 * k) for a target c and curvature k that change per step."""
    c = torch.arange(w.numel(), dtype=DOUBLE) * 0.3 - step
    k = torch.linspace(0.5, 4.0, w.numel(), dtype=DOUBLE)
    return 2 * k * (w - c)


def run_tf_rmsprop(w0, lrs, optimizer=None, first_step=0):
    """Steps with the given learning rates from w0 (a new TFRMSprop, or `optimizer` holding w0 itself)."""
    w = w0 if optimizer else w0.clone().requires_grad_(True)
    optimizer = optimizer or TFRMSprop([w], lr=lrs[0])
    for step, lr in enumerate(lrs, start=first_step):
        optimizer.param_groups[0]["lr"] = lr
        w.grad = quadratic_gradient(w.detach(), step)
        optimizer.step()
    return w.detach(), optimizer


def test_tf_rmsprop_matches_the_hand_written_tf1_update():
    w0 = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=DOUBLE)
    lrs = [1e-2, 1e-2, 7e-3, 7e-3]  # a learning-rate step in between, as StepLR makes
    got, _ = run_tf_rmsprop(w0, lrs)
    # TF1 RMSPropOptimizer(decay=0.9, momentum=0, epsilon=1e-10): rms slot initialised to ones
    w, ms = w0.tolist(), [1.0] * 4
    for step, lr in enumerate(lrs):
        g = quadratic_gradient(torch.tensor(w, dtype=DOUBLE), step).tolist()
        for i in range(4):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] ** 2
            w[i] -= lr * g[i] / math.sqrt(ms[i] + 1e-10)
    torch.testing.assert_close(got, torch.tensor(w, dtype=DOUBLE), rtol=1e-14, atol=1e-15)
    # PyTorch's RMSprop (ms from zero, alpha 0.99, eps outside the root) takes other steps
    w_torch = w0.clone().requires_grad_(True)
    torch_rmsprop = torch.optim.RMSprop([w_torch], lr=1e-2)
    w_torch.grad = quadratic_gradient(w0, 0)
    torch_rmsprop.step()
    first_tf, _ = run_tf_rmsprop(w0, lrs[:1])
    assert not torch.allclose(w_torch.detach(), first_tf)


def test_tf_rmsprop_resumes_exactly_from_its_state_dict():
    w0 = torch.tensor([1.0, -2.0, 0.25], dtype=DOUBLE)
    lrs = [1e-2, 5e-3, 5e-3, 1e-3]
    straight, _ = run_tf_rmsprop(w0, lrs)
    half, optimizer = run_tf_rmsprop(w0, lrs[:2])
    state = optimizer.state_dict()
    assert set(state["state"][0]) == {"ms"} and state["param_groups"][0]["decay"] == 0.9
    w = half.clone().requires_grad_(True)
    resumed = TFRMSprop([w], lr=lrs[2])
    resumed.load_state_dict(state)
    finished, _ = run_tf_rmsprop(w, lrs[2:], resumed, first_step=2)
    assert torch.equal(finished, straight)


def test_tf_rmsprop_skips_parameters_without_gradient_and_rejects_bad_settings():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    optimizer = TFRMSprop([a, b], lr=0.1)
    a.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in optimizer.state
    with pytest.raises(ValueError, match="decay"):
        TFRMSprop([a], lr=0.1, decay=1.0)


@pytest.mark.parametrize("name, cls", [("rmsprop", torch.optim.RMSprop), ("rmsprop_tf", TFRMSprop),
                                       ("adam", torch.optim.Adam)])
def test_make_optimizer_builds_the_named_optimizer(name, cls):
    optimizer = make_optimizer([torch.zeros(1, requires_grad=True)], TrainSettings(epochs=1, optimizer=name,
                                                                                 learning_rate=0.02))
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == 0.02
    assert set(OPTIMIZERS) == {"rmsprop", "rmsprop_tf", "adam"}


def test_make_optimizer_names_the_choices_for_an_unknown_one():
    with pytest.raises(ValueError, match="'sgd'.*'adam', 'rmsprop', 'rmsprop_tf'"):
        make_optimizer([torch.zeros(1, requires_grad=True)], TrainSettings(epochs=1, optimizer="sgd"))
