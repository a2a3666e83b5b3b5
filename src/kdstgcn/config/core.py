"""Workflow configuration: schema validation with messages that name the key, cross-key checks, and the
per-run specifications that the rules hand to the entry points."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from kdstgcn.losses.registry import LOSSES, READING_CHOICES
from kdstgcn.model.notation import parse_blocks

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def allowed_range(schema: dict) -> str:
    """'; allowed: >= 1', '; allowed: between 0 and 1' or '; allowed: > 0 and <= 1' from a numeric schema's bounds
    (empty when it has none)."""
    low = ("minimum", ">=", schema["minimum"]) if "minimum" in schema else (
        ("exclusiveMinimum", ">", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else None)
    high = ("maximum", "<=", schema["maximum"]) if "maximum" in schema else (
        ("exclusiveMaximum", "<", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else None)
    if low and high and low[0] == "minimum" and high[0] == "maximum":
        return f"; allowed: between {low[2]} and {high[2]}"
    bounds = [f"{sign} {value}" for _, sign, value in filter(None, (low, high))]
    return f"; allowed: {' and '.join(bounds)}" if bounds else ""


NON_STRING_TYPES = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                    "boolean": lambda v: isinstance(v, bool), "array": lambda v: isinstance(v, list),
                    "object": lambda v: isinstance(v, dict)}


def resolve(schema, root: dict) -> dict:
    """`schema` with a local `$ref` (#/$defs/...) followed; {} for anything that is not a schema object."""
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema if isinstance(schema, dict) else {}


def member_schema(schema: dict, key: str, root: dict) -> dict:
    if key in schema.get("properties", {}):
        return resolve(schema["properties"][key], root)
    return resolve(schema.get("additionalProperties"), root)


def read_as_yaml(text: str, types: set[str]):
    """`text` as YAML reads it when that gives one of `types` (a number also from Python's float()), else None."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if any(NON_STRING_TYPES[t](value) for t in types):
        return value
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            return None
    return None


def coerce(value, schema: dict, root: dict):
    """`value` with every string read as YAML where the schema asks for a number, boolean, list or mapping.

    Snakemake hands nested `--config` values over as strings (`--config training='{epochs: 5}'` gives
    {'epochs': '5'}); reading them as YAML makes them what a config file would hold. Dicts and lists are
    changed in place, so the workflow's `config` object sees the result. A string that does not read as the
    type asked for is left alone, and the schema check then names its key."""
    schema = resolve(schema, root)
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    if isinstance(value, str) and types & NON_STRING_TYPES.keys() and "string" not in types:
        parsed = read_as_yaml(value, types & NON_STRING_TYPES.keys())
        value = value if parsed is None else parsed
    if isinstance(value, dict):
        for key in value:
            value[key] = coerce(value[key], member_schema(schema, key, root), root)
    elif isinstance(value, list):
        value[:] = [coerce(item, resolve(schema.get("items"), root), root) for item in value]
    return value


def validate(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Read command-line strings as the types the JSON schema asks for, check `config` against the schema, then
    the rules that span several keys."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce(config, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {key_path(e.absolute_path)}: {e.message}{allowed_range(e.schema)}" for e in errors[:10]]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    check(config)


def check(config: dict) -> None:
    datasets = config["datasets"]
    for name in config["run_datasets"]:
        if name not in datasets:
            raise ConfigError(f"run_datasets: unknown dataset {name!r}; defined: {sorted(datasets)}")
    for name, ds in datasets.items():
        source_days = ds["synthetic"]["days"] if ds["source"] == "synthetic" else ds["values"]["steps"] // ds["steps_per_day"]
        if sum(ds["split"]) > source_days:
            raise ConfigError(f"datasets.{name}.split: {ds['split']} needs {sum(ds['split'])} days, the data has "
                              f"{source_days}; allowed: a total of at most {source_days}")
        if ds["source"] == "files" and not {"values", "distance"} <= set(ds):
            raise ConfigError(f"datasets.{name}: source 'files' needs the keys 'values' and 'distance'")
        if ds["source"] == "synthetic" and "synthetic" not in ds:
            raise ConfigError(f"datasets.{name}: source 'synthetic' needs the key 'synthetic'")
    for role, text in config["model"]["architectures"].items():
        try:
            parse_blocks(text)
        except ValueError as exc:
            raise ConfigError(f"model.architectures.{role}: cannot read {text!r} ({exc})") from exc
    model = config["model"]
    if max(model["horizons"]) > model["n_pred"]:
        raise ConfigError(f"model.horizons: {model['horizons']} exceed model.n_pred = {model['n_pred']}")
    kd = config["distillation"]
    for name in config["run_datasets"]:
        paper = datasets[name]["paper_name"]
        table = kd["hyperparameters"].get(paper, {})
        for loss in kd["losses"]:
            if loss not in table:
                raise ConfigError(f"distillation.hyperparameters.{paper}.{loss}: missing (dataset {name!r} "
                                  f"trains this student)")
            absent = [p for p in LOSSES[loss].tuned_parameters if p not in table[loss]]
            if absent:
                raise ConfigError(f"distillation.hyperparameters.{paper}.{loss}: needs {absent}")
    pr = config["pruning"]
    for name in config["run_datasets"]:
        paper = datasets[name]["paper_name"]
        for ratio in [*pr["base_ratios"], pr["teacher_ratio"]]:
            if str(ratio) not in pr["hyperparameters"].get(paper, {}):
                raise ConfigError(f"pruning.hyperparameters.{paper}.\"{ratio}\": missing (dataset {name!r} "
                                  f"prunes {ratio} %)")
    verdict = config["verdict"]
    for loss in verdict["losses"]:
        if loss not in kd["losses"]:
            raise ConfigError(f"verdict.losses: {loss!r} is not a trained student; allowed: those of "
                              f"distillation.losses {kd['losses']}")
    if verdict["losses"] and "stcd" not in verdict["losses"]:
        raise ConfigError(f"verdict.losses: {verdict['losses']} holds no 'stcd', the loss every claim is about; "
                          "add it, or leave the list empty for no student claims")
    for ratio in verdict["pruning_ratios"]:
        if ratio not in pr["base_ratios"]:
            raise ConfigError(f"verdict.pruning_ratios: {ratio} is not pruned; allowed: those of "
                              f"pruning.base_ratios {pr['base_ratios']}")
    if verdict["pruning_ratios"] and set(pr["methods"]) != {"kd_taylor", "taylor"}:
        raise ConfigError("verdict.pruning_ratios: comparing Algorithm 1 with the baseline needs both in "
                          f"pruning.methods (now {pr['methods']}); or set verdict.pruning_ratios: []")
    for name, spec in config["tuning"]["space"].items():
        if "low" in spec and spec["low"] > spec["high"]:
            raise ConfigError(f"tuning.space.{name}: low {spec['low']} exceeds high {spec['high']}")
        if spec.get("log") and spec["low"] <= 0:
            raise ConfigError(f"tuning.space.{name}: a log scale needs low > 0, got {spec['low']}")
    figures = config["figures"]
    if figures["horizon"] > model["n_pred"]:
        raise ConfigError(f"figures.horizon: {figures['horizon']} exceeds model.n_pred = {model['n_pred']}")


def load(path: str | Path) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    validate(config)
    return config


def raw_files(config: dict, dataset: str) -> dict[str, dict]:
    """File name -> {urls, sha256} of every raw file a dataset downloads."""
    ds = config["datasets"][dataset]
    if ds["source"] != "files":
        return {}
    return {ds[part]["file"]["name"]: ds[part]["file"] for part in ("values", "distance")}


SYNTHETIC_VALUES = "synthetic_values.npz"
SYNTHETIC_DISTANCE = "synthetic_distance.csv"


def values_source(config: dict, dataset: str) -> dict:
    """How the clean rule reads a dataset's raw values: file name, format, key, channel, steps."""
    ds = config["datasets"][dataset]
    if ds["source"] == "synthetic":
        steps = ds["synthetic"]["days"] * ds["steps_per_day"]
        return {"name": SYNTHETIC_VALUES, "format": "npz", "key": "data", "channel": None, "steps": steps}
    v = ds["values"]
    return {"name": v["file"]["name"], "format": v["format"], "key": v.get("key"),
            "channel": v.get("channel"), "steps": v["steps"]}


def distance_source(config: dict, dataset: str) -> dict:
    ds = config["datasets"][dataset]
    if ds["source"] == "synthetic":
        return {"name": SYNTHETIC_DISTANCE, "format": "matrix_csv", "unit_m": 1000.0}
    d = ds["distance"]
    return {"name": d["file"]["name"], "format": d["format"], "unit_m": float(d["unit_m"])}


def run_dir(dataset: str, seed: int, model: str) -> str:
    """Folder of one trained model and its evaluation: results/<dataset>/seed<seed>/<model>."""
    return f"results/{dataset}/seed{seed}/{model}"


def quantity(config: dict, dataset: str) -> str:
    """What the dataset's values are (axis label of the figures)."""
    ds = config["datasets"][dataset]
    return ds["values"]["quantity"] if ds["source"] == "files" else "speed (mph, synthetic)"


def data_spec(config: dict, dataset: str) -> dict:
    ds, model = config["datasets"][dataset], config["model"]
    return {"steps_per_day": ds["steps_per_day"], "split": list(ds["split"]), "n_his": model["n_his"],
            "n_pred": model["n_pred"]}


def architecture(config: dict, dataset: str, role: str) -> dict:
    model = config["model"]
    return {"n_nodes": config["datasets"][dataset]["n_nodes"],
            "blocks": [list(b) for b in parse_blocks(model["architectures"][role])],
            "kt": model["kt"], "ks": model["ks"], "n_his": model["n_his"], "dropout": model["dropout"]}


COMPILE_SETTINGS = {True: "on", False: "off"}  # YAML 1.1 reads an unquoted on / off as a boolean


def train_settings(config: dict, seed: int, **overrides) -> dict:
    t = config["training"]
    settings = {"epochs": t["epochs"], "batch_size": t["batch_size"], "learning_rate": t["learning_rate"],
                "lr_decay": t["lr_decay"], "lr_step_epochs": t["lr_step_epochs"], "optimizer": t["optimizer"],
                "seed": int(seed), "horizons": list(config["model"]["horizons"]),
                "eval_batch_size": t["eval_batch_size"], "compile": COMPILE_SETTINGS.get(t["compile"], t["compile"])}
    settings.update(overrides)
    return settings


def reference_run(config: dict, dataset: str, role: str, seed: int) -> dict:
    """Specification of a model trained on the task loss alone (teacher or pruning base)."""
    return {"dataset": dataset, "role": role, "data": data_spec(config, dataset),
            "arch": architecture(config, dataset, role), "train": train_settings(config, seed),
            "loss": {"name": "task", "params": {}}, "device": config["device"]}


def loss_spec(config: dict, name: str, params: dict) -> dict:
    """A distillation loss with its hyper-parameters, the kernel its correlation terms are computed with and,
    for the losses of Eq. 2-11, the paper's open readings it is built with (build_loss's arguments)."""
    kd = config["distillation"]
    spec = {"name": name, "params": params, "correlation_kernel": kd["correlation_kernel"]}
    if LOSSES[name].readings:
        spec["readings"] = {key: kd[key] for key in READING_CHOICES}
    return spec


def student_run(config: dict, dataset: str, loss: str, seed: int, role: str | None = None) -> dict:
    """Specification of the fixed student [1,2,4][4,2,8] trained with one loss (Table 6 hyper-parameters);
    `role` names its folder when that is not student_<loss> (a verdict variant, `sourced_model`)."""
    paper = config["datasets"][dataset]["paper_name"]
    hyper = dict(config["distillation"]["hyperparameters"][paper][loss])
    if loss == "rd_kl":
        hyper["temperature"] = config["distillation"]["kl_temperature"]
    train = train_settings(config, seed, batch_size=hyper["batch_size"], learning_rate=hyper["learning_rate"],
                           teacher_features=config["distillation"]["teacher_features"])
    return {"dataset": dataset, "role": role or f"student_{loss}", "data": data_spec(config, dataset),
            "arch": architecture(config, dataset, "student"), "train": train,
            "loss": loss_spec(config, loss, hyper), "device": config["device"]}


def tuned_path(dataset: str, study: str) -> str:
    """Best values of one tuning study (a loss, or a pruned model's name): results/<dataset>/tuned/<study>.yaml."""
    return f"results/{dataset}/tuned/{study}.yaml"


def tuning_study_path(dataset: str, study: str) -> str:
    """The Optuna journal file of one study, beside its results (not a Snakemake output: reruns continue it)."""
    return f"results/{dataset}/tuned/{study}.journal"


def tuning_run(config: dict, dataset: str, loss: str) -> dict:
    """What every trial of a study starts from: the student of `loss` with the paper's values, trained for
    tuning.epochs with the tuning seed (the trial's values are then laid over it by `apply_tuned`)."""
    run = student_run(config, dataset, loss, config["tuning"]["seed"])
    run["train"]["epochs"] = config["tuning"]["epochs"]
    return run


def prune_tuning_run(config: dict, dataset: str, method: str, base: str, ratio: int) -> dict:
    """What every trial of a pruning study starts from: the pruning run with the paper's values (Table 9),
    fine-tuned for tuning.epochs with the tuning seed. Its loss's name picks the space (`tuning_space`)."""
    run = prune_run(config, dataset, method, base, ratio, config["tuning"]["seed"])
    run["train"]["epochs"] = config["tuning"]["epochs"]
    return run


def tuning_space(config: dict, loss: str) -> dict:
    """Ranges tuned for one loss: learning rate, batch size and that loss's own weights (Table 6's columns)."""
    names = ["learning_rate", "batch_size", *LOSSES[loss].tuned_parameters]
    return {name: config["tuning"]["space"][name] for name in names}


def tuning_switches(config: dict, loss: str) -> dict:
    """The categorical switches tuned for one loss: `tuning.switches` less the readings that loss does not use."""
    def applies(name: str) -> bool:
        section, key = name.split(".", 1)
        return section != "distillation" or key not in READING_CHOICES or key in LOSSES[loss].readings

    return {name: values for name, values in config["tuning"]["switches"].items() if applies(name)}


TUNED_KEYS = ("hyperparameters", "switches")


def switch_slot(run: dict, name: str) -> tuple[dict, str]:
    """Where a run spec holds the switch `name`: `training.<key>` in its training settings, `distillation.<key>`
    in its loss spec's `readings`; returns (that mapping, key)."""
    section, key = name.split(".", 1)
    if section == "training":
        return run["train"], key
    if section == "distillation":
        return run["loss"].setdefault("readings", {}), key
    raise ConfigError(f"switch {name!r}: only training.* and distillation.* keys can be tuned")


def apply_tuned(run: dict, tuned: dict, source: str = "tuned") -> dict:
    """A copy of a student's run spec with tuned values: `tuned["hyperparameters"]` (learning rate and batch
    size into the training settings, every value into the loss's parameters, as `student_run` records them) and
    `tuned["switches"]` (see `switch_slot`). `source` is recorded as the run's `hyperparameter_source`."""
    run = copy.deepcopy(run)
    hyper = tuned["hyperparameters"]
    run["loss"]["params"].update(hyper)
    run["train"].update({k: hyper[k] for k in ("batch_size", "learning_rate") if k in hyper})
    for name, value in tuned["switches"].items():
        slot, key = switch_slot(run, name)
        slot[key] = value
    run["hyperparameter_source"] = source
    return run


def read_tuned(path: str | Path) -> dict:
    """The tuned values of one study (written by the `tune` rule), checked for the keys `apply_tuned` needs."""
    tuned = yaml.safe_load(Path(path).read_text())
    if not isinstance(tuned, dict) or not all(isinstance(tuned.get(k), dict) for k in TUNED_KEYS):
        raise ConfigError(f"{path}: not a tuning result (needs the mappings {list(TUNED_KEYS)}); delete it and "
                          "run its `tune` rule again")
    return tuned


PRUNING_METHODS = {"kd_taylor": "Algorithm 1: Taylor importance of L_STCD against the teacher",
                   "taylor": "Molchanov et al. 2019: Taylor importance of the task loss"}


def pruned_name(method: str, base: str, ratio: int) -> str:
    return f"pruned_{method}_{base}_{ratio}"


def prune_run(config: dict, dataset: str, method: str, base: str, ratio: int, seed: int,
              role: str | None = None) -> dict:
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
    reads_teacher = ({"teacher_features": config["distillation"]["teacher_features"]}
                     if finetune_loss["name"] == "stcd" else {})
    train = train_settings(config, seed, batch_size=hyper["batch_size"], learning_rate=hyper["learning_rate"],
                           epochs=pr["finetune_epochs"], **reads_teacher)
    return {"dataset": dataset, "role": role or pruned_name(method, base, ratio), "method": method, "base": base,
            "ratio": int(ratio), "data": data_spec(config, dataset), "train": train, "loss": loss,
            "finetune_loss": finetune_loss, "pruning_minibatch": interval, "step_fraction": pr["step_fraction"],
            "ranking": pr["ranking"], "device": config["device"]}


HYPERPARAMETER_SOURCES = ("paper", "tuned")


def source_section(model: str) -> str:
    """The config section whose `hyperparameter_source` a student or pruned model follows."""
    if model.startswith("student_"):
        return "distillation"
    if model.startswith("pruned_"):
        return "pruning"
    raise ConfigError(f"{model!r} has no tunable hyper-parameters: only students and pruned models do")


def sourced_model(config: dict, model: str, source: str) -> str:
    """The folder name of a student or pruned `model` trained with the `source` values (paper or tuned): the
    tables' own run where its section's hyperparameter_source is `source`, else `<model>_<source>`, a variant
    trained only for the verdict (one run per setting: nothing is trained twice)."""
    if source not in HYPERPARAMETER_SOURCES:
        raise ConfigError(f"unknown hyper-parameter source {source!r}; choose one of {list(HYPERPARAMETER_SOURCES)}")
    return model if config[source_section(model)]["hyperparameter_source"] == source else f"{model}_{source}"
