"""Mixed precision (training.precision): auto's choice, float32 weights and losses under bf16, a resumed bf16 run
equal to an uninterrupted one, fp32 runs unchanged (same arithmetic, same checkpoint identity), the bf16 rollout
close to the float32 one and the sparse graph products under autocast."""
import hashlib
import json
import math
from dataclasses import asdict, replace

import pytest
import torch

from helpers import Interrupted, StopAfter, ring_model
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.evaluation.rollout import rollout
from kdstgcn.losses.response import TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.stgcn import STGCN
from kdstgcn.runtime.precision import as_float32, choose_precision, in_precision, resolve_precision
from kdstgcn.training.loop import train

pytestmark = pytest.mark.usefixtures("single_thread")

BLOCKS = ((1, 4, 8), (8, 4, 16))
CPU = torch.device("cpu")


def settings(epochs, precision):
    return TrainSettings(epochs=epochs, batch_size=50, learning_rate=3e-3, lr_step_epochs=2, eval_batch_size=200,
                         precision=precision)


def new_model(cheb, n_nodes):
    torch.manual_seed(0)
    return STGCN(Architecture(n_nodes, BLOCKS), cheb)


@pytest.mark.parametrize("setting, native, wide, chosen", [
    ("auto", False, True, "fp32"), ("auto", True, True, "bf16"), ("auto", True, False, "fp32"),
    ("fp32", True, True, "fp32"), ("bf16", False, False, "bf16")])
def test_auto_picks_bf16_only_where_it_is_native_and_the_model_wide(setting, native, wide, chosen):
    assert choose_precision(setting, native, wide) == chosen


def test_the_widths_auto_reads_are_the_kept_channels():
    teacher = Architecture(228, ((1, 32, 64), (64, 32, 128)))
    assert teacher.widest_layer == 128
    assert Architecture(228, ((1, 2, 4), (4, 2, 8))).widest_layer == 8
    kept = {f"block{b}.{kind}": (0, 1) for b in range(2) for kind in ("temporal1", "graph", "temporal2")}
    assert teacher.with_kept(kept).widest_layer == 2
    assert resolve_precision("auto", CPU, 8) == "fp32"  # too narrow to gain, native or not


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="training.precision: 'fp16'"):
        choose_precision("fp16", True)


def test_fp32_is_the_model_itself_and_keeps_the_checkpoint_identity():
    model = ring_model(8, BLOCKS)
    assert in_precision(model, "fp32", CPU) is model
    assert resolve_precision("fp32", CPU) == "fp32"
    fp32 = TrainSettings(epochs=3)
    # a checkpoint written before the key existed resumes: the fp32 identity has no precision in it
    legacy = {k: v for k, v in asdict(fp32).items() if k not in ("epochs", "compile", "teacher_features",
                                                                  "teacher_features_max_bytes", "precision",
                                                                  "rollout")}
    blob = json.dumps([legacy], sort_keys=True, default=str)
    assert fp32.fingerprint() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert replace(fp32, precision="bf16").fingerprint() != fp32.fingerprint()


def test_bf16_forward_gives_float32_outputs_and_features():
    model = ring_model(8, BLOCKS)
    forward = in_precision(model, "bf16", CPU)
    x = torch.randn(4, 12, 8, generator=torch.Generator().manual_seed(1))
    prediction, features = forward(x, return_features=True)
    assert prediction.dtype == torch.float32
    assert all(t.dtype == torch.float32 for group in ("temporal", "spatial") for t in features[group])
    assert features["hidden"].dtype == torch.float32
    reference = model(x)
    assert torch.allclose(prediction, reference, atol=0.05 * reference.abs().max().item())
    assert as_float32({"a": [torch.ones(1, dtype=torch.bfloat16)], "n": 3})["a"][0].dtype == torch.float32


def test_bf16_training_keeps_float32_weights_and_records_its_precision(data, cheb, synthetic_files, tmp_path):
    model, history = train(new_model(cheb, synthetic_files.n_nodes), data, TaskLoss(), settings(2, "bf16"),
                           tmp_path / "ckpt.pt", device=CPU)
    assert history["precision"].tolist() == ["bf16", "bf16"]
    assert history["train_loss"].map(math.isfinite).all() and history["val_mae"].map(math.isfinite).all()
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    floats = [v for v in ckpt["model"].values() if v.is_floating_point()]
    floats += [v for state in ckpt["optimizer"]["state"].values() for v in state.values()
               if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_killed_bf16_run_resumes_to_the_uninterrupted_numbers(data, cheb, synthetic_files, tmp_path):
    n = synthetic_files.n_nodes
    model_a, hist_a = train(new_model(cheb, n), data, TaskLoss(), settings(3, "bf16"), tmp_path / "a.pt",
                            device=CPU)
    batches_per_epoch = math.ceil(data.inputs("train").shape[0] / 50)
    with pytest.raises(Interrupted):
        train(new_model(cheb, n), data, StopAfter(batches_per_epoch + 3), settings(3, "bf16"), tmp_path / "b.pt",
              device=CPU)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 1
    model_b, hist_b = train(new_model(cheb, n), data, TaskLoss(), settings(3, "bf16"), tmp_path / "b.pt",
                            device=CPU)
    for (k, va), vb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(va, vb), k
    columns = [c for c in hist_a.columns if c not in ("train_seconds", "epoch_seconds")]
    assert hist_a[columns].equals(hist_b[columns])


def test_an_fp32_checkpoint_is_not_resumed_in_bf16(data, cheb, synthetic_files, tmp_path, caplog):
    n = synthetic_files.n_nodes
    train(new_model(cheb, n), data, TaskLoss(), settings(1, "fp32"), tmp_path / "x.pt", device=CPU)
    train(new_model(cheb, n), data, TaskLoss(), settings(1, "bf16"), tmp_path / "x.pt", device=CPU)
    assert "ignoring checkpoint" in caplog.text


def test_the_bf16_rollout_is_float32_and_close_to_the_float32_one():
    model = ring_model(8, BLOCKS).eval()
    x = torch.randn(20, 12, 8, generator=torch.Generator().manual_seed(2))
    fp32 = rollout(model, x, 9)
    bf16 = rollout(model, x, 9, precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()
    full = rollout(model, x, 9, mode="full", precision="bf16")
    assert (full - fp32).abs().max() < 0.05 * fp32.abs().max()


def test_sparse_graph_products_run_in_float32_under_autocast():
    """torch's CSR product has no bfloat16 kernel on the CPU: the sparse terms take a float32 operand there."""
    n = 64
    model = ring_model(n, BLOCKS).eval()
    assert "sparse" in model.cheb_terms.modes("cpu", 1)
    x = torch.randn(3, 12, n, generator=torch.Generator().manual_seed(3), requires_grad=True)
    forward = in_precision(model.train(), "bf16", CPU)
    forward(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
