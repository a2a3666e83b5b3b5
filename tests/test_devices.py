"""Device hand-offs, checked without a GPU: what a job writes holds CPU tensors only (so it loads on a machine
without a GPU), a checkpoint resumes onto another device than the one that wrote it, and the configured device
is picked or rejected with a message.

Two stand-ins for a second device: `FakeCuda`, a tensor subclass that holds CPU numbers but says it lives on
cuda:0 (what a job on a GPU hands to the writers), and the `meta` device, which holds no numbers but takes
every state hand-off a real GPU takes (the reported fault, `RNG state must be a torch.ByteTensor`, shows there)."""
from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._pytree import tree_map

from conftest import merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.runtime.tensor_files import save_torch
from kdstgcn.losses.response import OverseenResponse, TaskLoss
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.persist import load_model, save_model
from kdstgcn.model.stgcn import STGCN
from kdstgcn.config.runspec import TrainSettings
from kdstgcn.runtime.devices import DeviceError, freest, pick_device
from kdstgcn.training.checkpoint import load_checkpoint, resume
from kdstgcn.training.loop import train
from kdstgcn.training.optim import make_optimizer
from kdstgcn.training.teacher import LiveTeacher

pytestmark = pytest.mark.usefixtures("single_thread")

BLOCKS = ((1, 4, 8), (8, 4, 16))
META = torch.device("meta")
META_COPIES_NOTHING = pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")


class FakeCuda(torch.Tensor):
    """A CPU tensor that reports device cuda:0; every op runs on the CPU numbers, and only `.cpu()` (a copy to
    the CPU) gives a plain tensor back."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype, strides=inner.stride(),
                                                   device=torch.device("cuda", 0),
                                                   requires_grad=inner.requires_grad)

    def __init__(self, inner: torch.Tensor):
        self.inner = inner

    def __repr__(self):
        return f"FakeCuda({self.inner!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*tree_map(cls.unwrap, args), **tree_map(cls.unwrap, kwargs))
        if func is torch.ops.aten._to_copy.default and torch.device(kwargs.get("device") or "cuda").type == "cpu":
            return out
        return tree_map(lambda t: cls(t) if isinstance(t, torch.Tensor) else t, out)

    @staticmethod
    def unwrap(t):
        return t.inner if isinstance(t, FakeCuda) else t


@pytest.fixture
def swap_module_tensors():
    """Let Module._apply put FakeCuda tensors into a model (it swaps tensors of another type in)."""
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    yield
    torch.__future__.set_swap_module_params_on_conversion(before)


def tensors(obj) -> list[torch.Tensor]:
    found = []
    tree_map(lambda t: found.append(t) if isinstance(t, torch.Tensor) else None, obj)
    return found


def assert_plain_cpu(obj) -> None:
    found = tensors(obj)
    assert found
    for t in found:
        assert type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu", (type(t), t.device)


def new_model(cheb, n_nodes):
    torch.manual_seed(0)
    return STGCN(Architecture(n_nodes, BLOCKS), cheb)


def settings(epochs):
    return TrainSettings(epochs=epochs, batch_size=50, learning_rate=3e-3, eval_batch_size=200)


# ------------------------------------------------------------------------------- what a GPU job writes

def test_torch_outputs_hold_cpu_tensors_whatever_device_they_came_from(tmp_path):
    weights = torch.randn(3, 4)
    state = {"model": {"w": FakeCuda(weights)}, "optimizer": {"state": {0: {"step": torch.tensor(3.0),
                                                                            "square_avg": FakeCuda(weights * 2)}},
                                                              "param_groups": [{"lr": 1e-3, "params": [0]}]},
             "history": [{"epoch": 1}], "pair": (FakeCuda(weights), 1)}
    assert tensors(state)[0].device.type == "cuda"
    save_torch(state, tmp_path / "checkpoint.pt")
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=False)  # no map_location: as on a CPU machine
    assert_plain_cpu(loaded)
    assert torch.equal(loaded["model"]["w"], weights)
    assert torch.equal(loaded["optimizer"]["state"][0]["square_avg"], weights * 2)
    assert loaded["pair"][1] == 1 and loaded["history"] == [{"epoch": 1}]


def test_a_masked_model_saved_on_a_gpu_loads_on_a_machine_without_one(cheb, synthetic_files, tmp_path,
                                                                      swap_module_tensors):
    model = new_model(cheb, synthetic_files.n_nodes)
    model.set_masks({"block0.graph": torch.tensor([True, False, True, True])})
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model._apply(FakeCuda)
    for layer in model.prunable_layers().values():  # masks are plain attributes: prune makes them on the GPU
        if layer.mask is not None:
            layer.mask = FakeCuda(layer.mask)
    assert model.cheb.device.type == "cuda" and model.blocks[0].graph.mask.device.type == "cuda"
    save_model(model, tmp_path / "model.pt")
    assert_plain_cpu(torch.load(tmp_path / "model.pt", weights_only=False))
    loaded, _ = load_model(tmp_path / "model.pt")
    for k, v in reference.items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.blocks[0].graph.mask.flatten().tolist() == [1.0, 0.0, 1.0, 1.0]


# ------------------------------------------------------------------------ resuming on another device

@META_COPIES_NOTHING
def test_resume_hands_each_state_to_the_device_of_the_model(data, cheb, synthetic_files, tmp_path):
    """A checkpoint of a CPU run restored into a model on another device: the RNG state stays a CPU tensor,
    the optimiser state follows its parameters, weights and loss buffers go where the model's tensors are."""
    loss = OverseenResponse(alpha1=0.5)
    teacher = new_model(cheb, synthetic_files.n_nodes)
    train(new_model(cheb, synthetic_files.n_nodes), data, loss, settings(1), tmp_path / "ckpt.pt",
          LiveTeacher(teacher), device=torch.device("cpu"))
    checkpoint = load_checkpoint(tmp_path / "ckpt.pt")
    assert_plain_cpu({k: checkpoint[k] for k in ("model", "optimizer", "loss", "rng", "best")})
    assert int(checkpoint["loss"]["entries"]) > 0

    model = new_model(cheb, synthetic_files.n_nodes).to(META)
    moved_loss = OverseenResponse(alpha1=0.5).to(META)
    optimizer = make_optimizer(model.parameters(), settings(1))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5, 0.7)
    torch.manual_seed(123)
    resume(checkpoint, model, optimizer, scheduler, moved_loss, META)
    assert torch.equal(torch.get_rng_state(), checkpoint["rng"])
    states = list(optimizer.state.values())
    assert len(states) == len(list(model.parameters()))
    assert all(s["square_avg"].device == META for s in states)
    assert moved_loss.entries.device == META and next(model.parameters()).device == META


@META_COPIES_NOTHING
def test_a_run_resumes_on_another_device_than_the_one_that_wrote_its_checkpoint(data, cheb, synthetic_files,
                                                                               tmp_path, caplog):
    """The reported fault: on a GPU the checkpoint was read onto the device, and torch.set_rng_state refused the
    moved RNG state (`RNG state must be a torch.ByteTensor`). Here a CPU run's checkpoint is resumed by the
    same run on the meta device. The meta device holds no numbers, so only handing the model back (a copy
    to the CPU) fails there, after the resume."""
    n = synthetic_files.n_nodes
    train(new_model(cheb, n), data, TaskLoss(), settings(2), tmp_path / "ckpt.pt", device=torch.device("cpu"))
    caplog.set_level(logging.INFO, logger="kdstgcn")
    with pytest.raises(NotImplementedError, match="meta"):
        train(new_model(cheb, n), data, TaskLoss(), settings(2), tmp_path / "ckpt.pt", device=META)
    assert "after epoch 2" in caplog.text and "ignoring" not in caplog.text


# ------------------------------------------------------------------------------------ the device key

@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a GPU cuda:7")
@pytest.mark.parametrize("name", ["cuda", "cuda:7"])
def test_a_gpu_that_is_not_there_is_rejected_naming_the_key_and_the_choices(name):
    if name == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    choices = r"auto(, cpu or cuda:0 to cuda:\d+| or cpu)\."
    with pytest.raises(DeviceError, match=rf"device: '{name}', but this machine has \d+ visible GPU.*"
                                          rf"CUDA_VISIBLE_DEVICES.*Use device: {choices}"):
        pick_device(name)


def test_auto_picks_a_gpu_with_the_most_free_memory_and_spreads_jobs_over_equal_ones():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    gib = 1 << 30
    assert [freest([3 * gib, 9 * gib, 5 * gib], salt) for salt in range(3)] == [1, 1, 1]
    # idle GPUs differ by a few MiB: jobs started together go to different ones, by their process ids
    idle = [40 * gib, 40 * gib + (5 << 20), 40 * gib - (3 << 20), 2 * gib]
    assert [freest(idle, salt) for salt in range(4)] == [0, 1, 2, 0]


# --------------------------------------------------------------------------------- training.compile

@pytest.mark.parametrize("value, setting", [("auto", "auto"), ("on", "on"), (True, "on"), (False, "off")])
def test_training_compile_reads_yaml_on_and_off(value, setting):
    config = merged_config("config/demo.yaml")
    config["training"]["compile"] = value
    schema.validate(config)
    assert runspec.train_settings(config, 0, "task").compile == setting


def test_an_unknown_training_compile_value_is_rejected_naming_the_key():
    config = merged_config("config/demo.yaml")
    config["training"]["compile"] = "sometimes"
    with pytest.raises(schema.ConfigError, match=r"training\.compile: 'sometimes' is not one of \['auto', 'on', 'off'"):
        schema.validate(config)
