"""The ONNX export (kdstgcn.deploy.export): model.onnx, start.onnx and stream.onnx on ONNX Runtime compute what the
model computes, one step and a 9-step streaming rollout, for random, trained, masked and compact models, at any
batch, with a dense Chebyshev stack or a sparse one (neighbour lists, above DENSE_MAX_NODES stations), and with the
layer norm as precise at 8,600 stations; an export that does not is refused; and one model's file is one export
job of the workflow."""
import io
import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the export needs onnx (a bare GPU machine may lack it)")

from conftest import job_stats, planned_wildcards, run_snakemake
from helpers import fit_briefly, ring_model, sparse_twin
from kdstgcn.deploy.export import OPSET, ExportError, TOLERANCE, check_export, export_bytes
from kdstgcn.deploy.exported import Norm, neighbour_lists
from kdstgcn.deploy.interface import NEWEST, PREDICTION, WINDOW, new_state_name
from kdstgcn.deploy.session import OnnxStream, session
from kdstgcn.runtime import sizes
from kdstgcn.evaluation.rollout import cpu_chunk, rollout
from kdstgcn.model.norm import NodeChannelNorm
from kdstgcn.pruning.prune import compact
from kdstgcn.runtime.sizes import DENSE_MAX_NODES, EXPORT_CHECK_WINDOWS, export_check_windows

pytestmark = pytest.mark.usefixtures("single_thread")

N = 16
SMALL = ((1, 4, 8), (8, 4, 16))
STEPS = 9


def assert_onnx_equals_torch(model, batches=(1, 7)) -> dict[str, bytes]:
    files = export_bytes(model)
    one_step, stream = session(files["model"]), OnnxStream(files["start"], files["stream"])
    for batch in batches:
        windows = torch.randn(batch, model.arch.n_his, model.arch.n_nodes)
        with torch.no_grad():
            expected = model(windows).numpy()
        np.testing.assert_allclose(one_step.run(None, {WINDOW: windows.numpy()})[0], expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(stream.rollout(windows.numpy(), STEPS), rollout(model, windows, STEPS).numpy(),
                                   rtol=0, atol=1e-4)
    return files


@pytest.mark.parametrize("arch", [{}, {"kt": 2, "n_his": 9}, {"kt": 3, "n_his": 9, "ks": 2}])
def test_onnx_runtime_equals_torch_on_random_models(arch):
    # n_his 9 with kt 3 leaves one position for the output layer: no state there
    torch.manual_seed(1)
    assert_onnx_equals_torch(ring_model(N, SMALL, **arch).eval())


def test_onnx_runtime_equals_torch_on_a_trained_model():
    m = fit_briefly(ring_model(N, SMALL, dropout=0.3), N, torch.Generator().manual_seed(1))
    assert_onnx_equals_torch(m.eval())


def test_onnx_runtime_equals_torch_on_masked_and_compact_models():
    m = ring_model(N, ((1, 8, 16), (16, 8, 32)))
    m.set_masks({"block0.temporal1": torch.tensor([1, 0, 1, 1, 0, 1, 1, 1]),
                 "block0.graph": torch.tensor([0, 1, 1, 1, 1, 0, 1, 1]),
                 "block1.temporal2": torch.tensor([1, 0] * 16)})
    masked = assert_onnx_equals_torch(m.eval())
    small = compact(m)
    compacted = assert_onnx_equals_torch(small)
    assert len(compacted["start"]) < len(masked["start"])  # the compact model's files hold fewer weights


def test_a_sparse_stack_is_exported_as_neighbour_lists():
    """Random, masked and compact models on the sparse stack: the files hold no N x N term, only gathers."""
    m = ring_model(N, ((1, 8, 16), (16, 8, 32)))
    m.set_masks({"block0.graph": torch.tensor([0, 1, 1, 1, 1, 0, 1, 1])})
    for model in (sparse_twin(m).eval(), compact(sparse_twin(m))):
        files = assert_onnx_equals_torch(model)
        graph = onnx.load_from_string(files["start"]).graph
        assert not [i.name for i in graph.initializer if list(i.dims) == [N, N]]
        degrees = [len(neighbour_lists(model.cheb[k])[0]) for k in range(1, model.arch.ks)]
        assert sum(node.op_type == "Gather" for node in graph.node) == 2 * sum(degrees)  # both blocks, each slot


def test_neighbour_lists_compute_the_sparse_product():
    """Rows of different lengths, an empty one among them, padded to the longest."""
    gen = torch.Generator().manual_seed(0)
    term = torch.rand(40, 40, generator=gen) * (torch.rand(40, 40, generator=gen) < 0.1)
    term[7] = 0.0
    columns, values = neighbour_lists(term.to_sparse())
    assert columns.shape == values.shape == (int((term != 0).sum(1).max()), 40)
    z = torch.randn(3, 5, 40, generator=gen)
    torch.testing.assert_close((z[..., columns] * values).sum(-2), z @ term.t(), rtol=1e-5, atol=1e-6)


def test_predict_runs_on_a_network_above_the_threshold():
    """The files of a model of 600 stations grow with the graph's edges (no N x N term) and compute what the model
    computes: model.onnx one step, start.onnx and stream.onnx the streaming rollout `predict` runs."""
    n = DENSE_MAX_NODES + 100
    model = ring_model(n, SMALL).eval()
    assert model.cheb.is_sparse
    files = export_bytes(model)
    assert max(map(len, files.values())) < 4 * n * n  # less than one dense float32 term
    assert check_export(model, files, torch.randn(3, model.arch.n_his, n), STEPS) <= TOLERANCE


@pytest.mark.parametrize("mask", [None, torch.tensor([1.0, 0.0] * 8)])
def test_layer_norm_stays_precise_on_onnx_runtime_at_many_stations(mask):
    """Statistics over 16 channels x 8,600 stations: summed over the nodes first, ONNX Runtime's stay within 1e-5
    of float64 (summed over both axes at once, 7e-5)."""
    norm = Norm(NodeChannelNorm(8600, 16), mask).eval()
    h = torch.randn(3, 16, 2, 8600, generator=torch.Generator().manual_seed(0)) + 3.0
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(norm, (h,), buffer, input_names=["h"], opset_version=OPSET, dynamo=False)
    np.testing.assert_allclose(session(buffer.getvalue()).run(None, {"h": h.numpy()})[0],
                               norm.double()(h.double()).numpy(), rtol=0, atol=1e-5)


def test_files_declare_a_dynamic_batch_and_the_streaming_state():
    files = export_bytes(ring_model(N, SMALL).eval())
    graphs = {name: onnx.load_from_string(blob).graph for name, blob in files.items()}
    states = ["block0.temporal1", "block0.temporal2", "block1.temporal1", "block1.temporal2", "output.temporal"]
    assert [i.name for i in graphs["model"].input] == [WINDOW]
    assert [o.name for o in graphs["start"].output] == [PREDICTION, *states]
    assert [i.name for i in graphs["stream"].input] == [NEWEST, *states]
    assert [o.name for o in graphs["stream"].output] == [PREDICTION, *map(new_state_name, states)]
    for graph in graphs.values():  # readings and predictions [batch, ..], the state [width, batch, N]
        for value in [*graph.input, *graph.output]:
            shape = value.type.tensor_type.shape.dim
            assert shape[0 if value.name in (WINDOW, NEWEST, PREDICTION) else 1].dim_param == "batch", value.name
    # the state of a conv is its last kt - 1 input positions: (kt - 1) x channels rows over the windows and nodes
    widths = [d.type.tensor_type.shape.dim[0].dim_value for d in graphs["stream"].input[1:]]
    assert widths == [2 * 1, 2 * 4, 2 * 8, 2 * 4, 3 * 16]


def test_an_export_that_differs_from_the_model_is_refused():
    model, other = ring_model(N, SMALL, seed=0).eval(), ring_model(N, SMALL, seed=1).eval()
    windows = torch.randn(4, 12, N)
    assert check_export(model, export_bytes(model), windows, STEPS) <= TOLERANCE
    with pytest.raises(ExportError, match="differs from the model"):
        check_export(model, export_bytes(other), windows, STEPS)


@pytest.mark.slow
def test_one_models_onnx_file_is_made_by_one_export_job_after_its_evaluation(repo_copy):
    result = run_snakemake(repo_copy, ["-n", "results/demo/seed0/student_stcd/model.onnx", "--cores", "2",
                                       "--configfile", "config/demo.yaml"], timeout=120)
    assert result.returncode == 0, result.output[-3000:]
    stats = job_stats(result.output)
    assert stats["export"] == stats["evaluate"] == 1 and stats["train"] == 2  # the student and its teacher
    assert planned_wildcards(result.output, "export") == [{"dataset": "demo", "seed": "0", "model": "student_stcd"}]


def test_the_check_passes_a_chunk_of_windows_at_a_time_and_reads_every_chunk(monkeypatch):
    """Chunks of 2 windows give the gap of one pass over all 5, and a NaN in the last chunk still fails the check."""
    model = ring_model(N, SMALL).eval()
    files = export_bytes(model)
    windows = torch.randn(5, model.arch.n_his, N, generator=torch.Generator().manual_seed(3))
    whole = check_export(model, files, windows, STEPS)
    monkeypatch.setattr(sizes, "CPU_CHUNK_WINDOWS", 2)
    assert cpu_chunk(model, len(windows)) == 2
    assert check_export(model, files, windows, STEPS) == pytest.approx(whole, abs=1e-6)
    windows[4, 0, 0] = float("nan")
    with pytest.raises(ExportError, match="by nan"):
        check_export(model, files, windows, STEPS)


def test_a_large_network_is_checked_on_fewer_windows_of_the_same_window_stations():
    assert [export_check_windows(n) for n in (170, 228, DENSE_MAX_NODES)] == [EXPORT_CHECK_WINDOWS] * 3
    assert [export_check_windows(n) for n in (716, 8600, 10**6)] == [44, 3, 1]
    assert all(export_check_windows(n) * n <= EXPORT_CHECK_WINDOWS * DENSE_MAX_NODES for n in (716, 2352, 8600))
