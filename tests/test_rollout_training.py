"""Rollout training (kdstgcn.training.rollout_training, training.rollout): one step is the one-step loss, the
teacher's targets are its own rollout, gradients stop at the fed-back predictions only with the switch off, the
streamed steps equal recomputing the moved window (values and gradients, in training mode, under masks) and a
model with dropout recomputes, the anatomy shows each step, the schedule grows the rollout, and the run spec
records the switch only where it is on."""
import json
from dataclasses import replace

import pytest
import torch

from conftest import merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.config.runspec import RolloutTraining, RunSpec, TrainSettings
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.losses.base import forward
from kdstgcn.losses.build import build_loss
from kdstgcn.losses.registry import LOSSES
from kdstgcn.losses.response import OverseenResponse, ResponseL2, TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.training.loop import train
from kdstgcn.training.anatomy import loss_anatomy
from kdstgcn.training.rollout_training import counted_rollout_step, rollout_targets, rollout_terms, streams_exactly
from kdstgcn.training.teacher import LiveTeacher

pytestmark = pytest.mark.usefixtures("single_thread")

CPU = torch.device("cpu")
TIMING = ("train_seconds", "epoch_seconds")


def model(cheb, n_nodes, seed=0, blocks=((1, 2, 4), (4, 2, 8))):
    torch.manual_seed(seed)
    return STGCN(Architecture(n_nodes, blocks), cheb)


def settings(epochs, rollout_training=None):
    return TrainSettings(epochs=epochs, batch_size=50, learning_rate=3e-3, lr_step_epochs=2, eval_batch_size=200,
                         rollout=rollout_training)


def run(data, cheb, n_nodes, path, loss_name, rollout_training=None, epochs=1):
    """A student trained with the task loss, or with ORD from a live teacher: (model, history, loss)."""
    teacher = None
    if loss_name == "ord":
        teacher = LiveTeacher(model(cheb, n_nodes, seed=5, blocks=((1, 4, 8), (8, 4, 16))))
    loss = OverseenResponse(alpha1=0.5) if loss_name == "ord" else TaskLoss()
    trained, history = train(model(cheb, n_nodes), data, loss, settings(epochs, rollout_training), path, teacher,
                             device=CPU)
    return trained, history, loss


@pytest.mark.parametrize("loss_name, targets", [("task", "truth"), ("ord", "teacher")])
def test_a_one_step_rollout_trains_the_one_step_model(data, cheb, synthetic_files, tmp_path, loss_name, targets):
    """k = 1 is the one-step loss, bit for bit: weights, history and ORD's teacher share."""
    n = synthetic_files.n_nodes
    plain, plain_history, plain_loss = run(data, cheb, n, tmp_path / "plain.pt", loss_name, epochs=2)
    rolled, rolled_history, rolled_loss = run(data, cheb, n, tmp_path / "rolled.pt", loss_name,
                                              RolloutTraining(1, 1, 1, targets), epochs=2)
    for (k, v), w in zip(plain.state_dict().items(), rolled.state_dict().values()):
        assert torch.equal(v, w), k
    assert rolled_history["rollout_steps"].tolist() == [1, 1]
    cols = [c for c in plain_history.columns if c not in TIMING]
    assert plain_history[cols].equals(rolled_history[cols])
    assert rolled_loss.share_pct() == plain_loss.share_pct()


def test_the_teacher_targets_are_the_teachers_own_rollout(data, cheb, synthetic_files):
    teacher = model(cheb, synthetic_files.n_nodes, seed=5).eval()
    inputs = data.inputs("train")
    targets = rollout_targets(RolloutTraining(2, 9, 1, "teacher"), data, teacher, batch_size=200)
    assert torch.equal(targets[:, 0], data.one_step_targets("train")[:])  # the run's own loss at the first step
    assert torch.equal(targets[:, 1:], rollout(teacher, inputs, 9, batch_size=200)[:, 1:])
    truth = rollout_targets(RolloutTraining(1, 4, 1), data, teacher, batch_size=200)
    assert torch.equal(truth[:], data.future("train")[:][:, :4])  # a view of the windows, gathered by batch
    with pytest.raises(ValueError, match="10 steps ahead"):
        rollout_targets(RolloutTraining(1, 10, 1), data, None, batch_size=200)
    with pytest.raises(ValueError, match="need a teacher"):
        rollout_targets(RolloutTraining(1, 3, 1, "teacher"), data, None, batch_size=200)


def literal_rollout_loss(net, x, targets, feedback_gradient):
    """The mean over the steps of the squared error, each prediction fed back (detached without the gradient)."""
    window, total = x, 0.0
    for step in range(targets.shape[1]):
        prediction = net(window)
        total = total + ((prediction - targets[:, step]) ** 2).mean()
        fed = prediction if feedback_gradient else prediction.detach()
        window = torch.cat([window[:, 1:], fed[:, None]], dim=1)
    return total / targets.shape[1]


@pytest.mark.parametrize("feedback_gradient", [True, False])
def test_gradients_reach_the_fed_back_inputs_only_with_the_switch_on(data, cheb, synthetic_files,
                                                                      feedback_gradient):
    net = model(cheb, synthetic_files.n_nodes).eval()
    params = list(net.parameters())
    x = data.inputs("train")[:8].clone().requires_grad_(True)
    targets = data.future("train", 3)[:8]
    value, taken = counted_rollout_step(net, None, TaskLoss(), x, targets, feedback_gradient=feedback_gradient)
    assert taken is None
    grads = torch.autograd.grad(value, [x, *params])
    literal = literal_rollout_loss(net, x, targets, feedback_gradient)
    torch.testing.assert_close(value, literal)
    for got, want in zip(grads, torch.autograd.grad(literal, [x, *params])):
        torch.testing.assert_close(got, want)
    # the oldest input leaves the window after the first step: it reaches the later steps only through the
    # prediction fed back
    first_step_only = torch.autograd.grad(((net(x) - targets[:, 0]) ** 2).mean() / 3, x)[0]
    if feedback_gradient:
        assert not torch.allclose(grads[0][:, 0], first_step_only[:, 0], rtol=1e-2, atol=0)
    else:
        torch.testing.assert_close(grads[0][:, 0], first_step_only[:, 0])
    assert grads[0][:, 0].abs().sum() > 0


def test_the_streamed_steps_in_training_mode_equal_recomputing_the_window(data, cheb, synthetic_files):
    """In training mode without dropout, under channel masks as in fine-tuning after pruning, the rollout streams
    (one position per layer and step) and gives the loss and every gradient of the literal full recompute."""
    net = model(cheb, synthetic_files.n_nodes).train()
    net.set_masks({"block0.graph": torch.tensor([1, 0]), "block1.temporal2": torch.tensor([1, 1, 0, 1, 1, 0, 1, 1])})
    assert streams_exactly(net)
    params = list(net.parameters())
    x, targets = data.inputs("train")[:6], data.future("train", 9)[:6]
    value, _ = counted_rollout_step(net, None, TaskLoss(), x, targets)
    literal = literal_rollout_loss(net, x, targets, True)
    torch.testing.assert_close(value, literal)
    for got, want in zip(torch.autograd.grad(value, params), torch.autograd.grad(literal, params)):
        torch.testing.assert_close(got, want)


def test_a_model_with_dropout_recomputes_each_window(data, cheb, synthetic_files):
    """Dropout draws anew over a recomputed window, which a stream cannot: such a model recomputes each step,
    with the draws of the literal rollout; in eval mode (no draws) it streams."""
    torch.manual_seed(0)
    net = STGCN(Architecture(synthetic_files.n_nodes, ((1, 2, 4), (4, 2, 8)), dropout=0.3), cheb).train()
    assert not streams_exactly(net) and streams_exactly(net.eval())
    net.train()
    x, targets = data.inputs("train")[:6], data.future("train", 4)[:6]
    torch.manual_seed(1)
    value, _ = counted_rollout_step(net, None, TaskLoss(), x, targets)
    torch.manual_seed(1)
    assert torch.equal(value, literal_rollout_loss(net, x, targets, True))


def test_the_anatomy_of_a_rollout_shows_every_step(data, cheb, synthetic_files):
    """The rollout's terms: the run's loss's at the first step, then one per later step; their weighted values
    sum to the rollout's loss and their gradient shares to 1."""
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, seed=5, blocks=((1, 4, 8), (8, 4, 16))).eval()
    student = model(cheb, n)
    loss = ResponseL2(beta=0.3)
    x, targets = data.inputs("train")[:10], data.future("train", 3)[:10]
    settings = RolloutTraining(3, 3, 1)
    columns = loss_anatomy(student, teacher, loss, [(x, targets)], settings)
    shares = {c: v for c, v in columns.items() if c.startswith("grad_share_")}
    assert set(shares) == {"grad_share_response", "grad_share_task", "grad_share_step2", "grad_share_step3"}
    assert sum(shares.values()) == pytest.approx(1.0)
    value, _ = counted_rollout_step(student.eval(), teacher, loss, x, targets)
    assert sum(v for c, v in columns.items() if c.endswith("_weighted")) == pytest.approx(value.item(), rel=1e-5)


def test_the_rollout_composes_with_every_loss_of_the_registry(data, cheb, synthetic_files):
    """Each loss at the first step of a 3-step rollout from a live teacher: its own terms there, the task term at
    the later steps, a finite loss whose gradient reaches the student."""
    config = merged_config("config/demo.yaml")
    n = synthetic_files.n_nodes
    teacher = model(cheb, n, seed=5, blocks=((1, 4, 8), (8, 4, 16))).eval()
    x, targets = data.inputs("train")[:6], data.future("train", 3)[:6]
    for name in LOSSES:
        spec = runspec.student_run(config, "demo", name, 0).loss
        loss = build_loss(name, spec.params, "cdist", spec.readings)
        student = model(cheb, n)
        terms, _ = rollout_terms(student, teacher, loss, x, targets)
        first = loss.terms(forward(student, x, loss.uses_features), targets[:, 0],
                           forward(teacher, x, loss.uses_features) if loss.uses_teacher else None)
        assert list(terms) == [*first, "step2", "step3"], name
        value, _ = counted_rollout_step(student, teacher, loss, x, targets)
        assert torch.isfinite(value), name
        value.backward()
        assert all(p.grad is not None for p in student.parameters() if p.requires_grad), name


def test_the_rollout_grows_by_its_schedule_and_learns_from_the_teacher(data, cheb, synthetic_files, tmp_path):
    schedule = RolloutTraining(2, 9, 5)
    assert [schedule.steps(e) for e in (1, 5, 6, 10, 11, 36, 100)] == [2, 2, 3, 3, 4, 9, 9]
    _, history, loss = run(data, cheb, synthetic_files.n_nodes, tmp_path / "ckpt.pt", "ord",
                           RolloutTraining(2, 3, 1, "teacher", feedback_gradient=False), epochs=2)
    assert history["rollout_steps"].tolist() == [2, 3]
    assert history["train_loss"].map(lambda v: 0 < v < 10).all()
    windows, _, nodes = data.future("train").shape
    assert int(loss.entries) == 2 * windows * nodes  # the teacher share counts the first step's entries


def test_the_settings_record_rollout_training_only_where_it_is_on():
    off = TrainSettings(epochs=3)
    assert "rollout" not in off.to_dict()
    assert off.fingerprint({"arch": 1}, {"loss": "task"}) == "0dcc4994fae3ba0f"  # as before the key existed
    on = replace(off, rollout=RolloutTraining(1, 9, 5, "teacher", False))
    assert on.to_dict()["rollout"] == {"first_steps": 1, "last_steps": 9, "epochs_per_step": 5,
                                       "targets": "teacher", "feedback_gradient": False}
    assert TrainSettings.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert on.fingerprint({"arch": 1}, {"loss": "task"}) != off.fingerprint({"arch": 1}, {"loss": "task"})
    with pytest.raises(ValueError, match="first <= last"):
        RolloutTraining(3, 2, 1)
    with pytest.raises(ValueError, match="targets"):
        RolloutTraining(1, 2, 1, "forecast")


def test_the_config_block_reaches_every_run_and_the_teacher_targets_only_runs_with_a_teacher():
    config = merged_config("config/demo.yaml")
    schema.validate(config)
    assert runspec.student_run(config, "demo", "stcd", 0).train.rollout is None
    config["training"]["rollout"] = {"steps": [1, 9], "epochs_per_step": 2, "targets": "teacher",
                                     "feedback_gradient": True}
    schema.validate(config)
    teacher = runspec.reference_run(config, "demo", "teacher", 0)
    assert teacher.train.rollout == RolloutTraining(1, 9, 2, "truth", True)
    assert runspec.student_run(config, "demo", "task", 0).train.rollout.targets == "truth"
    stcd = runspec.student_run(config, "demo", "stcd", 0)
    assert stcd.train.rollout == RolloutTraining(1, 9, 2, "teacher", True)
    assert RunSpec.from_dict(json.loads(json.dumps(stcd.to_dict()))) == stcd
    baseline = runspec.prune_run(config, "demo", "taylor", "pruning_base", 50, 0)
    assert baseline.train.rollout.targets == "truth"
    config["training"]["rollout"]["targets"] = "forecast"
    with pytest.raises(schema.ConfigError, match="training.rollout"):
        schema.validate(config)
