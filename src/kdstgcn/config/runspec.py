"""The specification of one run (`RunSpec`), built once from the configuration by the builders below and read as
attributes by the jobs. Its dict form (`to_dict` / `from_dict`) is what the rules pass as params and what a
model's `info.json` records under "run". Torch-free."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from kdstgcn.config.datasets import DataSpec, data_spec
from kdstgcn.config.layout import deployable_name, pruned_name
from kdstgcn.losses.registry import LOSSES, READING_CHOICES, SCALE_READINGS, is_count
from kdstgcn.model.architecture import Architecture
from kdstgcn.model.notation import parse_blocks


ROLLOUT_TARGETS = ("truth", "teacher")
# the default of distillation.teacher_features_max_bytes: above PEMS08 flow's STCD store (18.7 GB in float32),
# below the stores of a network of thousands of stations (STCD's over PEMS08's 50 days at 8,600 takes 0.9 TB)
TEACHER_FEATURES_MAX_BYTES = 32 * 2**30


@dataclass(frozen=True)
class RolloutTraining:
    """Rollout training (beyond the paper, docs/method.md): the loss over a rollout of `steps(epoch)` steps of the
    model's own predictions. The rollout starts at `first_steps` and grows by one step every `epochs_per_step`
    epochs up to `last_steps`, whatever the epoch budget (so that a longer budget continues a run exactly). The
    steps after the first learn from `targets`: the truth, or the teacher's rollout from the same window.
    `feedback_gradient`: whether gradients flow through the predictions fed back as inputs, or stop there."""

    first_steps: int
    last_steps: int
    epochs_per_step: int
    targets: str = "truth"
    feedback_gradient: bool = True

    def __post_init__(self):
        if not 1 <= self.first_steps <= self.last_steps:
            raise ValueError(f"rollout steps [{self.first_steps}, {self.last_steps}]: need 1 <= first <= last")
        if self.epochs_per_step < 1:
            raise ValueError(f"rollout epochs_per_step {self.epochs_per_step}: need >= 1")
        if self.targets not in ROLLOUT_TARGETS:
            raise ValueError(f"rollout targets {self.targets!r}: choose one of {list(ROLLOUT_TARGETS)}")

    def steps(self, epoch: int) -> int:
        """The rollout's length in `epoch` (counted from 1)."""
        return min(self.last_steps, self.first_steps + (epoch - 1) // self.epochs_per_step)


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained. `teacher_features`: how a distilling run reads its teacher's outputs (`live`, a
    teacher forward per batch, or a feature store in `float32` / `float16`); None where the run's spec does not
    say, which reads them live. `teacher_features_max_bytes`: the largest store a run builds or reads; above it
    the run reads its teacher live (a resource limit, like `compile` not part of the run's identity, and in the
    dict form only where it is not the default). `precision`: the arithmetic of training and validation (fp32,
    bf16 or auto, kdstgcn.runtime.precision; the training loop resolves auto on its device). `rollout`: rollout
    training (`RolloutTraining`); None trains on the one-step loss, the paper's."""

    epochs: int
    batch_size: int = 50
    learning_rate: float = 1e-3
    lr_decay: float = 0.7
    lr_step_epochs: int = 5
    optimizer: str = "rmsprop"
    seed: int = 0
    horizons: tuple[int, ...] = (3, 6, 9)
    eval_batch_size: int = 1140
    compile: str = "auto"
    teacher_features: str | None = None
    teacher_features_max_bytes: int = TEACHER_FEATURES_MAX_BYTES
    precision: str = "fp32"
    rollout: RolloutTraining | None = None

    @property
    def reads_feature_store(self) -> bool:
        return self.teacher_features not in (None, "live")

    def fingerprint(self, *parts) -> str:
        """Identity of a run for resuming: everything but the epoch budget (so a run can also be extended) and
        whether the step is compiled (the same arithmetic); the teacher's features only where they are read from
        a store (reading them live is what runs without the key); the precision only where it is not fp32 (what
        runs without the key); rollout training only where it is on."""
        settings = asdict(self)
        settings.pop("epochs")
        settings.pop("compile")
        settings.pop("teacher_features_max_bytes")
        if not self.reads_feature_store:
            settings.pop("teacher_features")
        if self.precision == "fp32":
            settings.pop("precision")
        if self.rollout is None:
            settings.pop("rollout")
        blob = json.dumps([settings, *parts], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = {**asdict(self), "horizons": list(self.horizons)}
        if self.teacher_features is None:
            d.pop("teacher_features")
        if self.teacher_features_max_bytes == TEACHER_FEATURES_MAX_BYTES:
            d.pop("teacher_features_max_bytes")
        if self.rollout is None:
            d.pop("rollout")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainSettings:
        rollout = RolloutTraining(**d["rollout"]) if d.get("rollout") is not None else None
        return cls(**{**d, "horizons": tuple(d["horizons"]), "rollout": rollout})


@dataclass(frozen=True)
class LossSpec:
    """A loss as `build_loss` takes it: name, hyper-parameters, the kernel of its correlation terms and, for a loss
    that takes readings (every student's, kdstgcn.losses.registry), the paper's open readings (None: not recorded,
    the defaults: the reference runs' plain task loss)."""

    name: str
    params: dict
    correlation_kernel: str | None = None
    readings: dict | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> LossSpec:
        return cls(**d)


@dataclass(frozen=True)
class PruneSpec:
    """What a pruning run adds: method (Algorithm 1 or the baseline), base model, ratio in %, the loss it
    fine-tunes the compact model with, a pruning step every `pruning_minibatch` minibatches removing
    `step_fraction` of the remaining budget, the ranking of the channels, and whether the averaged importance is
    carried into the next interval or reset (`importance_memory`)."""

    method: str
    base: str
    ratio: int
    finetune_loss: LossSpec
    pruning_minibatch: int
    step_fraction: float
    ranking: str
    importance_memory: str


RUN_KEYS = ("dataset", "role", "data", "arch", "train", "loss", "device")
PRUNE_RUN_KEYS = ("dataset", "role", "method", "base", "ratio", "data", "train", "loss", "finetune_loss",
                  "pruning_minibatch", "step_fraction", "ranking", "importance_memory", "device")


@dataclass(frozen=True)
class RunSpec:
    """One model to train: a model trained from scratch has its `arch`itecture; a pruning run has `prune`
    instead (its architecture is its base model's). `hyperparameter_source` is set where tuned values were laid
    over the spec (`kdstgcn.config.tuned.apply_tuned`)."""

    dataset: str
    role: str
    data: DataSpec
    train: TrainSettings
    loss: LossSpec
    device: str
    arch: Architecture | None = None
    prune: PruneSpec | None = None
    hyperparameter_source: str | None = None

    def __post_init__(self):
        if (self.arch is None) == (self.prune is None):
            raise ValueError(f"run {self.role!r}: give either an architecture or a pruning spec")

    def to_dict(self) -> dict:
        """The dict form, key for key and in the order the rules' params and info.json have always held."""
        parts = {"dataset": self.dataset, "role": self.role, "data": self.data.to_dict(),
                 "train": self.train.to_dict(), "loss": self.loss.to_dict(), "device": self.device}
        if self.prune is None:
            parts["arch"] = {k: v for k, v in self.arch.to_dict().items() if k != "kept"}
            keys = RUN_KEYS
        else:
            parts |= {k: v for k, v in asdict(self.prune).items() if k != "finetune_loss"}
            parts["finetune_loss"] = self.prune.finetune_loss.to_dict()
            keys = PRUNE_RUN_KEYS
        d = {key: parts[key] for key in keys}
        if self.hyperparameter_source is not None:
            d["hyperparameter_source"] = self.hyperparameter_source
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        prune = None
        if "method" in d:
            prune = PruneSpec(d["method"], d["base"], d["ratio"], LossSpec.from_dict(d["finetune_loss"]),
                              d["pruning_minibatch"], d["step_fraction"], d["ranking"], d["importance_memory"])
        return cls(d["dataset"], d["role"], DataSpec.from_dict(d["data"]), TrainSettings.from_dict(d["train"]),
                   LossSpec.from_dict(d["loss"]), d["device"],
                   arch=Architecture.from_dict(d["arch"]) if "arch" in d else None, prune=prune,
                   hyperparameter_source=d.get("hyperparameter_source"))

    def with_epochs(self, epochs: int) -> RunSpec:
        return replace(self, train=replace(self.train, epochs=epochs))


def architecture(config: dict, dataset: str, role: str) -> Architecture:
    model = config["model"]
    return Architecture(n_nodes=config["datasets"][dataset]["n_nodes"],
                        blocks=parse_blocks(model["architectures"][role]), kt=model["kt"], ks=model["ks"],
                        n_his=model["n_his"], dropout=model["dropout"])


COMPILE_SETTINGS = {True: "on", False: "off"}  # YAML 1.1 reads an unquoted on / off as a boolean


def rollout_settings(block: dict | None, loss: str) -> RolloutTraining | None:
    """A block of `training.rollout`'s form for a run trained with `loss` (None: off). Only a loss that reads a
    teacher has a teacher to roll out: a run whose loss reads none (teacher, pruning base, student without KD, the
    baseline's fine-tuning) learns every step from the truth."""
    if block is None:
        return None
    first, last = block["steps"]
    targets = block["targets"] if LOSSES[loss].uses_teacher else "truth"
    return RolloutTraining(first, last, block["epochs_per_step"], targets, block["feedback_gradient"])


def rollout_training(config: dict, loss: str) -> RolloutTraining | None:
    """`training.rollout` for a run trained with `loss` (`rollout_settings`)."""
    return rollout_settings(config["training"].get("rollout"), loss)


def train_settings(config: dict, seed: int, loss: str, **overrides) -> TrainSettings:
    """The `training` section's settings for a run trained with `loss`, with the run's seed, and `overrides` (a
    run's own values) laid over."""
    t = config["training"]
    settings = TrainSettings(epochs=t["epochs"], batch_size=t["batch_size"], learning_rate=t["learning_rate"],
                             lr_decay=t["lr_decay"], lr_step_epochs=t["lr_step_epochs"], optimizer=t["optimizer"],
                             seed=int(seed), horizons=tuple(config["model"]["horizons"]),
                             eval_batch_size=t["eval_batch_size"],
                             compile=COMPILE_SETTINGS.get(t["compile"], t["compile"]), precision=t["precision"],
                             rollout=rollout_training(config, loss))
    return replace(settings, **overrides)


def loss_spec(config: dict, name: str, params: dict) -> LossSpec:
    """A student's loss with its hyper-parameters, the kernel its correlation terms are computed with and, for a
    loss that takes readings (every student's: the task term reads scalar_norm), the configured readings; a scale
    reading (registry) only where the loss reads it and it is set to a count."""
    kd = config["distillation"]
    used = LOSSES[name].readings
    if not used:
        return LossSpec(name, params, kd["correlation_kernel"])
    readings = {key: kd[key] for key in READING_CHOICES if key not in SCALE_READINGS}
    readings |= {key: kd[key] for key in SCALE_READINGS if key in used and is_count(key, kd[key])}
    return LossSpec(name, params, kd["correlation_kernel"], readings)


def reference_run(config: dict, dataset: str, role: str, seed: int) -> RunSpec:
    """Specification of a model trained on the task loss alone (teacher or pruning base); the teacher trains for
    training.teacher_epochs where that is set."""
    teacher_epochs = config["training"].get("teacher_epochs") if role == "teacher" else None
    settings = train_settings(config, seed, "task", **({"epochs": teacher_epochs} if teacher_epochs else {}))
    return RunSpec(dataset, role, DataSpec.from_dict(data_spec(config, dataset)), settings, LossSpec("task", {}),
                   config["device"], arch=architecture(config, dataset, role))


def student_run(config: dict, dataset: str, loss: str, seed: int, role: str | None = None) -> RunSpec:
    """Specification of the fixed student [1,2,4][4,2,8] trained with one loss (Table 6 hyper-parameters);
    `role` names its folder when that is not student_<loss> (a verdict variant, `sourced_model`)."""
    paper = config["datasets"][dataset]["paper_name"]
    hyper = dict(config["distillation"]["hyperparameters"][paper][loss])
    if loss == "rd_kl":
        hyper["temperature"] = config["distillation"]["kl_temperature"]
    train = train_settings(config, seed, loss, batch_size=hyper["batch_size"], learning_rate=hyper["learning_rate"],
                           teacher_features=config["distillation"]["teacher_features"],
                           teacher_features_max_bytes=config["distillation"]["teacher_features_max_bytes"])
    return RunSpec(dataset, role or f"student_{loss}", DataSpec.from_dict(data_spec(config, dataset)), train,
                   loss_spec(config, loss, hyper), config["device"], arch=architecture(config, dataset, "student"))


def deployable_run(config: dict, dataset: str, entry: str, seed: int) -> RunSpec:
    """Specification of the `deployable` section's model `entry` (beyond the paper): a student run (`student_run`)
    of the entry's loss with the entry's architecture and rollout training (its own, not `training.rollout`)."""
    spec = config["deployable"]["models"][entry]
    run = student_run(config, dataset, spec["loss"], seed, role=deployable_name(entry))
    return replace(run, arch=architecture(config, dataset, spec["architecture"]),
                   train=replace(run.train, rollout=rollout_settings(spec["rollout"], spec["loss"])))


def tuning_run(config: dict, dataset: str, loss: str) -> RunSpec:
    """What every trial of a study starts from: the student of `loss` with the paper's values, trained for
    tuning.epochs with the tuning seed (the trial's values are then laid over it by `apply_tuned`)."""
    return student_run(config, dataset, loss, config["tuning"]["seed"]).with_epochs(config["tuning"]["epochs"])


def prune_tuning_run(config: dict, dataset: str, method: str, base: str, ratio: int) -> RunSpec:
    """What every trial of a pruning study starts from: the pruning run with the paper's values (Table 9),
    fine-tuned for tuning.epochs with the tuning seed. Its loss's name picks the space (`tuning_space`)."""
    run = prune_run(config, dataset, method, base, ratio, config["tuning"]["seed"])
    return run.with_epochs(config["tuning"]["epochs"])


def prune_run(config: dict, dataset: str, method: str, base: str, ratio: int, seed: int,
              role: str | None = None) -> RunSpec:
    """Specification of one pruning run: base model, importance loss, ranking, budget and fine-tuning (Table 9).

    `loss` gives the importance; `finetune_loss` the fine-tuning after pruning: L_STCD or the task loss for
    Algorithm 1 (`pruning.finetune_loss`), always the task loss for the baseline."""
    pr = config["pruning"]
    paper = config["datasets"][dataset]["paper_name"]
    hyper = dict(pr["hyperparameters"][paper][str(ratio)])
    task = loss_spec(config, "task", {})
    loss = (loss_spec(config, "stcd", {k: hyper[k] for k in ("alpha1", "alpha2", "alpha3")})
            if method == "kd_taylor" else task)
    finetune_loss = loss if pr["finetune_loss"] == "stcd" else task
    interval = pr["pruning_minibatch"] * (pr["baseline_interval_factor"] if method == "taylor" else 1)
    # L_STCD fine-tuning reads the teacher's outputs as the students do (distillation.teacher_features)
    reads_teacher = ({key: config["distillation"][key] for key in ("teacher_features", "teacher_features_max_bytes")}
                     if finetune_loss.name == "stcd" else {})
    train = train_settings(config, seed, finetune_loss.name, batch_size=hyper["batch_size"],
                           learning_rate=hyper["learning_rate"], epochs=pr["finetune_epochs"], **reads_teacher)
    prune = PruneSpec(method, base, int(ratio), finetune_loss, interval, pr["step_fraction"], pr["ranking"],
                      pr["importance_memory"])
    return RunSpec(dataset, role or pruned_name(method, base, ratio), DataSpec.from_dict(data_spec(config, dataset)),
                   train, loss, config["device"], prune=prune)
