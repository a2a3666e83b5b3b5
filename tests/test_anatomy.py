"""Loss anatomy on the synthetic data: the columns of an STCD student, weighted terms that sum to the loss,
gradient shares that sum to 1 and match per-term backward passes, nothing of the training state touched, the
columns in a distilled run's history, and the per-dataset table and figure made from them."""
import math

import pytest
import torch

from kdstgcn.config.runspec import TrainSettings
from kdstgcn.losses.base import forward, loss_step
from kdstgcn.losses.build import build_loss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.report.anatomy import anatomy_table
from kdstgcn.report.figures import anatomy_figure
from kdstgcn.training.anatomy import anatomy_batches, epoch_anatomy, loss_anatomy
from kdstgcn.training.loop import train
from kdstgcn.training.teacher import LiveTeacher

pytestmark = pytest.mark.usefixtures("single_thread")

STCD = {"alpha1": 0.5, "alpha2": 0.465, "alpha3": 0.504}


@pytest.fixture(scope="module")
def setup(synthetic_files, data, cheb):
    torch.manual_seed(0)
    teacher = STGCN(Architecture(synthetic_files.n_nodes, ((1, 4, 8), (8, 4, 16))), cheb).eval()
    student = STGCN(Architecture(synthetic_files.n_nodes, ((1, 2, 4), (4, 2, 8))), cheb)
    x, y = data.inputs("train"), data.one_step_targets("train")
    return data, teacher, student, x, y


def stcd():
    return build_loss("stcd", STCD, "cdist")


def test_stcd_anatomy_has_every_column_and_its_weighted_terms_sum_to_the_loss(setup):
    _, teacher, student, x, y = setup
    batches = anatomy_batches(x, y, 20, seed=0)
    assert len(batches) == 4 and all(bx.shape[0] == 20 for bx, _ in batches)
    loss = stcd()
    columns = loss_anatomy(student, teacher, loss, batches)
    names = ("ord", "scd", "tcd")
    assert set(columns) == {f"{kind}_{n}" for n in names for kind in ("term", "grad_norm", "grad_share")} | {
        f"term_{n}_weighted" for n in names}
    assert all(math.isfinite(v) for v in columns.values())
    assert columns["term_scd_weighted"] == pytest.approx(0.504 * 0.465 * columns["term_scd"])
    assert columns["term_tcd_weighted"] == pytest.approx(0.504 * 0.535 * columns["term_tcd"])
    with torch.no_grad():
        mean_loss = sum(loss_step(student, teacher, loss, bx, by).item() for bx, by in batches) / len(batches)
    assert sum(columns[f"term_{n}_weighted"] for n in names) == pytest.approx(mean_loss, rel=1e-5)
    assert sum(columns[f"grad_share_{n}"] for n in names) == pytest.approx(1.0, abs=1e-5)


def test_gradient_shares_and_norms_match_separate_backward_passes(setup):
    _, teacher, student, x, y = setup
    bx, by = anatomy_batches(x, y, 30, seed=1, count=1)[0]
    loss = stcd()
    columns = loss_anatomy(student, teacher, loss, [(bx, by)])
    with torch.no_grad():
        teacher_out = forward(teacher, bx, True)
    grads = {}
    for name in ("ord", "scd", "tcd"):
        student.zero_grad(set_to_none=False)
        weight, value = loss.terms(forward(student, bx, True), by, teacher_out)[name]
        (weight * value).backward()
        grads[name] = torch.cat([p.grad.flatten() for p in student.parameters()])
    student.zero_grad(set_to_none=True)
    total = sum(grads.values())
    for name, g in grads.items():
        assert columns[f"grad_norm_{name}"] == pytest.approx(g.norm().item(), rel=1e-5)
        assert columns[f"grad_share_{name}"] == pytest.approx((g @ total / (total @ total)).item(), rel=1e-4)


def test_parallel_terms_share_the_gradient_by_their_weights(setup):
    """RD(L2) with a target equal to the teacher's output: both terms have the same gradient direction, so
    their shares are beta and 1 - beta (and the shares of independent terms would be ||g_k||^2 / ||g||^2)."""
    _, teacher, student, x, y = setup
    bx = anatomy_batches(x, y, 25, seed=2, count=1)[0][0]
    with torch.no_grad():
        goal = teacher(bx)
    columns = loss_anatomy(student, teacher, build_loss("rd_l2", {"beta": 0.3}), [(bx, goal)])
    assert columns["grad_share_response"] == pytest.approx(0.3, rel=1e-5)
    assert columns["grad_share_task"] == pytest.approx(0.7, rel=1e-5)
    assert columns["term_response"] == pytest.approx(columns["term_task"], rel=1e-6)


def test_anatomy_leaves_the_training_state_as_it_was(setup):
    _, teacher, student, x, y = setup
    loss = stcd()
    loss_step(student, teacher, loss, x[:40], y[:40])  # some counts in ORD's buffers
    counts = {k: v.clone() for k, v in loss.state_dict().items()}
    student.train()
    rng = torch.get_rng_state()
    epoch_anatomy(student, teacher, loss, x, y, 20, 0, torch.device("cpu"))
    assert student.training
    assert all(p.grad is None for p in student.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, counts[k]) for k, v in loss.state_dict().items())


def test_epoch_anatomy_is_fixed_by_the_seed_and_left_out_for_one_term_losses(setup):
    _, teacher, student, x, y = setup
    cpu = torch.device("cpu")
    first = epoch_anatomy(student, teacher, stcd(), x, y, 20, 3, cpu)
    assert first == epoch_anatomy(student, teacher, stcd(), x, y, 20, 3, cpu)
    assert first != epoch_anatomy(student, teacher, stcd(), x, y, 20, 4, cpu)
    assert epoch_anatomy(student, teacher, build_loss("ord", {"alpha1": 0.5}), x, y, 20, 3, cpu) == {}
    assert epoch_anatomy(student, None, build_loss("task"), x, y, 20, 3, cpu) == {}


def test_a_distilled_run_records_its_anatomy_per_epoch(setup, tmp_path):
    data, teacher, _, _, _ = setup
    torch.manual_seed(1)
    student = STGCN(Architecture(teacher.arch.n_nodes, ((1, 2, 4), (4, 2, 8))), teacher.cheb.clone())
    settings = TrainSettings(epochs=2, batch_size=50, eval_batch_size=200)
    _, history = train(student, data, stcd(), settings, tmp_path / "ckpt.pt", LiveTeacher(teacher),
                       torch.device("cpu"))
    for column in ("term_ord", "term_scd_weighted", "grad_share_tcd", "grad_norm_ord"):
        assert history[column].notna().all(), column
    shares = history[["grad_share_ord", "grad_share_scd", "grad_share_tcd"]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx([1.0, 1.0], abs=1e-5)
    # epoch 2 was measured on the trained weights: the same batches give other values
    assert history["term_ord"].iloc[0] != history["term_ord"].iloc[1]
    # the figure's numbers: last epoch and mean over epochs, averaged over seeds; one-term losses left out
    table = anatomy_table("synthetic", {"stcd": [history, history], "ord": [history[["epoch", "val_mae"]]]})
    assert table["term"].tolist() == ["ord", "scd", "tcd"] and set(table["loss"]) == {"stcd"}
    last = table.set_index("term")
    assert last.loc["scd", "weighted"] == pytest.approx(history["term_scd_weighted"].iloc[-1])
    assert last.loc["tcd", "grad_share_mean_over_epochs"] == pytest.approx(history["grad_share_tcd"].mean())
    assert (last["n_seeds"] == 2).all() and (last["last_epoch"] == 2).all()
    anatomy_figure(table, "Loss anatomy, synthetic", tmp_path / "anatomy.png")
    assert (tmp_path / "anatomy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
