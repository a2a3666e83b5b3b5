"""The frozen teacher's outputs on the training windows, computed once and kept on disk: its one-step
predictions per run (response losses), and optionally its hidden-layer outputs per teacher (feature losses).

Response-only distillation losses (rd_l2, rd_kl, ord) read nothing of the teacher but its prediction, and the
teacher never changes during a run, so a teacher forward in every batch of every epoch recomputes the same
numbers. The cache file (`teacher_predictions.pt` beside the student's checkpoint) holds the predictions for
all training windows with the digests of the teacher's weights, of the windows they belong to and of the code
that computes them (`CODE_DIGEST`); a file with other digests (a retrained teacher, other data, changed model
code) is recomputed and replaced.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import IO

import numpy as np
import torch

from kdstgcn.data.samples import WindowedSeries
from kdstgcn.losses.base import Outputs
from kdstgcn.model.persist import weights_digest
from kdstgcn.runtime.sizes import FEATURE_STORE_VALUE_BYTES
from kdstgcn.runtime.tensor_files import save_torch

log = logging.getLogger(__name__)

CACHE_NAME = "teacher_predictions.pt"


def tensor_digest(x: torch.Tensor | WindowedSeries) -> str:
    """Short content hash of a tensor (shape, dtype and values): which data the predictions belong to. Windows hash
    as the tensor of them all stacked, one window at a time (`WindowedSeries.blocks`), without stacking them."""
    digest = hashlib.sha256(f"{tuple(x.shape)} {x.dtype}".encode())
    blocks = x.blocks() if isinstance(x, WindowedSeries) else [x.detach().cpu().contiguous().numpy()]
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()[:16]


# the code that computes the teacher's prediction and hidden-layer outputs (packages: every file below them)
FEATURE_CODE = ("kdstgcn.model",)


def code_files(name: str) -> dict[str, Path]:
    """The source files of a module, or of every module below a package, by their path under the module's name."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no module {name!r} to take the teacher's feature code from")
    if not spec.submodule_search_locations:
        return {name: Path(spec.origin)}
    return {f"{name}/{path.relative_to(folder).as_posix()}": path
            for folder in map(Path, spec.submodule_search_locations) for path in sorted(folder.rglob("*.py"))}


def code_digest() -> str:
    """Short hash of the source text of FEATURE_CODE as it is on disk now."""
    digest = hashlib.sha256()
    for name in FEATURE_CODE:
        for label, path in code_files(name).items():
            digest.update(f"{label}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# the digest of the model code this process runs (imported above, through kdstgcn.model.persist), taken once at
# import: stored outputs belong to the code that computed them, so that a change to the model code recomputes them,
# and a process that runs on while its source is edited keeps labelling its outputs with the code it imported
CODE_DIGEST = code_digest()


def predict(teacher: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, batch_size: int,
            device: torch.device) -> torch.Tensor:
    """Teacher predictions [W, N] for windows [W, n_his, N], in batches of the training batch size (the
    shapes the per-batch forward would see), on CPU."""
    teacher = teacher.to(device).eval()
    # one array filled in place: small blocks kept between the passes' freed activations would fragment the heap
    predictions = torch.empty(inputs.shape[0], inputs.shape[2])
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            predictions[start:start + batch_size] = teacher(inputs[start:start + batch_size].to(device)).cpu()
    return predictions


def cached_teacher_predictions(teacher: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, folder: str | Path,
                               batch_size: int, device: torch.device) -> torch.Tensor:
    """The teacher's predictions for `inputs`, read from `folder/teacher_predictions.pt` when its digests
    (teacher, windows, code) match, else computed once and written there atomically. Returned on CPU, one row
    per window."""
    key = {"teacher": weights_digest(teacher), "inputs": tensor_digest(inputs), "code": CODE_DIGEST}
    path = Path(folder) / CACHE_NAME
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") == key:
            log.info("teacher predictions for %d training windows read from %s", inputs.shape[0], path)
            return blob["predictions"]
        log.info("%s belongs to another teacher, other data or other model code: recomputing it", path)
    predictions = predict(teacher, inputs, batch_size, device)
    save_torch({"key": key, "predictions": predictions}, path)
    log.info("teacher predictions for %d training windows computed once and written to %s", inputs.shape[0], path)
    return predictions


STORE_FOLDER = "feature_store"  # beside the teacher's model.pt


def store_dtype(precision: str) -> np.dtype:
    """The array type of a store in `precision` (distillation.teacher_features, a name in
    FEATURE_STORE_VALUE_BYTES)."""
    if precision not in FEATURE_STORE_VALUE_BYTES:
        raise ValueError(f"teacher feature store precision {precision!r}: choose one of "
                         f"{list(FEATURE_STORE_VALUE_BYTES)}")
    return np.dtype(precision)


def store_bytes(teacher: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, groups: tuple[str, ...],
                precision: str) -> int:
    """The bytes of the arrays of the store of `teacher` on `inputs` with `groups` in `precision`, before it is
    built: the windows times the outputs of one window (a forward of the first, in eval mode)."""
    teacher.eval()
    with torch.inference_mode():
        prediction, features = teacher(inputs[:1].to(next(teacher.parameters()).device), return_features=True)
    per_window = prediction.numel() + sum(out.numel() for group in groups for out in as_layers(features[group]))
    return len(inputs) * per_window * store_dtype(precision).itemsize


class TeacherFeatureStore:
    """The frozen teacher's prediction and the hidden-layer outputs a feature loss reads, for every training
    window, computed once per teacher, data and precision and kept on disk as memory-mapped arrays that every
    student of that teacher (tuning trials included) reads by window index instead of a teacher forward per
    batch (`distillation.teacher_features`). float32 holds what the forward computes; float16 halves the disk
    and page cache (relative rounding 5e-4 of each feature).

    A store is a folder `<root>/<key digest>_<groups>` written whole and renamed into place under its build lock,
    so workers that start together compute it once and never read a half-written store. Its key holds the digests
    of the teacher's weights, the windows and the feature code (`CODE_DIGEST`), the precision and the groups; when
    a store is written, the stores beside it of another teacher, data or code are removed (`remove_stale`), except
    those in use: an open store holds its readers' lock shared until it is closed (`with`, or `close`).
    """

    def __init__(self, folder: Path, readers: IO):
        self.meta = json.loads((folder / "meta.json").read_text())
        self.prediction = np.load(folder / "prediction.npy", mmap_mode="r")
        self.features = {group: [np.load(folder / f"{group}_{i}.npy", mmap_mode="r") for i in range(count)]
                         for group, count in self.meta["layers"].items()}
        self.readers = readers

    @classmethod
    def open(cls, teacher: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, root: str | Path, precision: str,
             groups: tuple[str, ...], batch_size: int, device: torch.device) -> "TeacherFeatureStore":
        """The store of `teacher` on `inputs` [W, n_his, N] with `groups` in `precision`, built first if missing,
        open (and kept) until it is closed."""
        store_dtype(precision)  # an unknown precision is refused before anything is built
        key = {"teacher": weights_digest(teacher), "inputs": tensor_digest(inputs), "code": CODE_DIGEST,
               "precision": precision, "groups": sorted(groups)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        folder = root / f"{digest}_{'-'.join(sorted(groups))}"
        build_lock, readers_lock = store_locks(folder)
        with open(build_lock, "a") as building:
            fcntl.flock(building, fcntl.LOCK_EX)
            if not (folder / "meta.json").exists():
                build_store(teacher, inputs, folder, key, batch_size, device)
                remove_stale(root, key)
            else:
                log.info("teacher outputs for %d training windows read from %s", inputs.shape[0], folder)
            readers = open(readers_lock, "a")
            fcntl.flock(readers, fcntl.LOCK_SH)  # never waits: a removal holds it only under the build lock
        try:
            return cls(folder, readers)
        except BaseException:
            readers.close()
            raise

    def close(self) -> None:
        """Stop reading the store: unmap its arrays and let go of its readers' lock, so that it may be removed."""
        del self.prediction, self.features
        self.readers.close()

    def __enter__(self) -> "TeacherFeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def batch(self, idx: torch.Tensor, device: torch.device = torch.device("cpu")) -> Outputs:
        """The teacher's outputs for windows `idx` as float32 tensors on `device` (features: the stored groups)."""
        rows = idx.cpu().numpy()

        def take(array: np.ndarray) -> torch.Tensor:  # converted by torch: its own (aligned) memory, as live outputs
            return torch.from_numpy(array[rows]).to(device, torch.float32)

        features = {}
        for group, arrays in self.features.items():
            layers = [take(a) for a in arrays]
            features[group] = layers[0] if group in self.meta["single"] else layers
        return Outputs(take(self.prediction), features)


def store_locks(folder: Path) -> tuple[Path, Path]:
    """The two lock files of a store (or of its half-written `.partial` folder): its build lock, held exclusively
    while the store is looked up, built or removed, and its readers' lock, held shared by every open store and
    exclusively by a removal. Both stay in place, also when the store is removed: a process that has a lock file
    open, or waits on it, then locks the same file as every process after it."""
    name = folder.name.removesuffix(".partial")
    return folder.with_name(f"{name}.lock"), folder.with_name(f"{name}.readers.lock")


SOURCE_KEYS = ("teacher", "inputs", "code")  # what a store was computed from; precision and groups are choices


def remove_stale(root: Path, key: dict) -> None:
    """Remove the stores in `root` computed from another teacher, other windows or other code than `key` says
    (every store of this teacher, data and code stays, whatever its precision and groups), and the half-written
    ones. A store that another process is building or opening (its build lock is held) or reading (its readers'
    lock is held) is left alone."""
    for folder in [f for f in root.iterdir() if f.is_dir()]:
        meta = folder / "meta.json"
        if not folder.name.endswith(".partial") and meta.exists():
            found = json.loads(meta.read_text()).get("key", {})
            if all(found.get(k) == key[k] for k in SOURCE_KEYS):
                continue
        build_lock, readers_lock = store_locks(folder)
        with open(build_lock, "a") as building, open(readers_lock, "a") as readers:
            try:
                fcntl.flock(building, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(readers, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            meta.unlink(missing_ok=True)  # first: a removal stopped half-way leaves no store that looks whole
            shutil.rmtree(folder, ignore_errors=True)
        log.info("removed the teacher outputs of another teacher, data or code: %s", folder)


def as_layers(value) -> list[torch.Tensor]:
    """A feature group of Outputs.features (a list of layer outputs, or one tensor for "hidden") as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def build_store(teacher: torch.nn.Module, inputs: torch.Tensor | WindowedSeries, folder: Path, key: dict,
                batch_size: int, device: torch.device) -> None:
    """Run the teacher over `inputs` in batches of `batch_size` (inference mode) and write `folder` whole: the
    arrays in a temporary sibling folder, renamed into place last."""
    dtype = store_dtype(key["precision"])
    teacher = teacher.to(device).eval()
    scratch = folder.with_name(folder.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    arrays: dict[str, list[np.ndarray]] = {}
    tic = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch_size):
            prediction, features = teacher(inputs[start:start + batch_size].to(device), return_features=True)
            layers = {group: as_layers(features[group]) for group in key["groups"]}
            if start == 0:
                arrays["prediction"] = [np.lib.format.open_memmap(
                    scratch / "prediction.npy", "w+", dtype, (inputs.shape[0], *prediction.shape[1:]))]
                for group, outputs in layers.items():
                    arrays[group] = [np.lib.format.open_memmap(scratch / f"{group}_{i}.npy", "w+", dtype,
                                                               (inputs.shape[0], *out.shape[1:]))
                                     for i, out in enumerate(outputs)]
            stop = start + prediction.shape[0]
            arrays["prediction"][0][start:stop] = prediction.cpu().numpy()
            for group, outputs in layers.items():
                for array, out in zip(arrays[group], outputs):
                    array[start:stop] = out.cpu().numpy()
    for group_arrays in arrays.values():
        for array in group_arrays:
            array.flush()
    meta = {"key": key, "windows": int(inputs.shape[0]),
            "layers": {group: len(arrays[group]) for group in key["groups"]},
            "single": [group for group in key["groups"] if torch.is_tensor(features[group])]}
    (scratch / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(scratch, folder)
    size = sum(f.stat().st_size for f in folder.iterdir())
    log.info("teacher outputs for %d training windows computed once in %.0fs and written to %s (%.1f GB, %s)",
             inputs.shape[0], time.perf_counter() - tic, folder, size / 1e9, key["precision"])
