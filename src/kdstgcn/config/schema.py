"""The configuration's schema check: command-line strings read as the types the schema asks for, JSON-schema
validation with messages that name the key and what is allowed, and the rules that span several keys."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import yaml

from kdstgcn.losses.registry import LOSSES
from kdstgcn.model.notation import parse_blocks

SCHEMA = files("kdstgcn.config") / "config.schema.yaml"


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
    type asked for is left alone (a key that also takes strings keeps it), and the schema check then names
    its key."""
    schema = resolve(schema, root)
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    if isinstance(value, str) and types & NON_STRING_TYPES.keys():
        parsed = read_as_yaml(value, types & NON_STRING_TYPES.keys())
        value = value if parsed is None else parsed
    if isinstance(value, dict):
        for key in value:
            value[key] = coerce(value[key], member_schema(schema, key, root), root)
    elif isinstance(value, list):
        value[:] = [coerce(item, resolve(schema.get("items"), root), root) for item in value]
    return value


def overlay(base: dict, extra: dict) -> dict:
    """`extra` laid over `base` in place, as Snakemake merges a --configfile: nested sections key by key, any
    other value replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            overlay(base[key], value)
        else:
            base[key] = value
    return base


def merged_config(root: str | Path, files: list[str]) -> dict:
    """The checkout `root`'s config/config.yaml with `files` (relative to `root`) laid over it in order."""
    root = Path(root)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    for name in files:
        overlay(config, yaml.safe_load((root / name).read_text()) or {})
    return config


def validate(config: dict) -> None:
    """Read command-line strings as the types the JSON schema asks for, check `config` against the schema
    (the package's `config.schema.yaml`), then the rules that span several keys."""
    import jsonschema  # here: the jobs import the config modules but never validate

    schema = yaml.safe_load(SCHEMA.read_text())
    coerce(config, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {key_path(e.absolute_path)}: {e.message}{allowed_range(e.schema)}" for e in errors[:10]]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    check(config)


def check(config: dict) -> None:
    """The rules that span several keys, section by section; the first one broken raises, naming its key."""
    check_datasets(config)
    check_model(config["model"])
    check_hyperparameters(config)
    check_verdict(config["verdict"], config["distillation"]["losses"], config["pruning"])
    check_deployable(config)
    check_tuning_space(config["tuning"]["space"])
    if config["tuning"]["min_epochs"] > config["tuning"]["epochs"]:
        raise ConfigError(f"tuning.min_epochs: {config['tuning']['min_epochs']} exceeds tuning.epochs = "
                          f"{config['tuning']['epochs']}; allowed: at most tuning.epochs")
    if config["figures"]["horizon"] > config["model"]["n_pred"]:
        raise ConfigError(f"figures.horizon: {config['figures']['horizon']} exceeds model.n_pred = "
                          f"{config['model']['n_pred']}")


def check_datasets(config: dict) -> None:
    datasets = config["datasets"]
    for name in config["run_datasets"]:
        if name not in datasets:
            raise ConfigError(f"run_datasets: unknown dataset {name!r}; defined: {sorted(datasets)}")
    for name, ds in datasets.items():
        source_days = (ds["synthetic"]["days"] if ds["source"] == "synthetic"
                       else ds["values"]["steps"] // ds["steps_per_day"])
        if sum(ds["split"]) > source_days:
            raise ConfigError(f"datasets.{name}.split: {ds['split']} needs {sum(ds['split'])} days, the data has "
                              f"{source_days}; allowed: a total of at most {source_days}")
        if ds["source"] == "files" and not {"values", "distance"} <= set(ds):
            raise ConfigError(f"datasets.{name}: source 'files' needs the keys 'values' and 'distance'")
        if ds["source"] == "synthetic" and "synthetic" not in ds:
            raise ConfigError(f"datasets.{name}: source 'synthetic' needs the key 'synthetic'")


def check_model(model: dict) -> None:
    for role, text in model["architectures"].items():
        try:
            parse_blocks(text)
        except ValueError as exc:
            raise ConfigError(f"model.architectures.{role}: cannot read {text!r} ({exc})") from exc
    if max(model["horizons"]) > model["n_pred"]:
        raise ConfigError(f"model.horizons: {model['horizons']} exceed model.n_pred = {model['n_pred']}")


def check_hyperparameters(config: dict) -> None:
    """Every dataset that runs has the paper's values of every student it trains and every ratio it prunes."""
    kd, pr = config["distillation"], config["pruning"]
    for name in config["run_datasets"]:
        paper = config["datasets"][name]["paper_name"]
        table = kd["hyperparameters"].get(paper, {})
        for loss in kd["losses"]:
            if loss not in table:
                raise ConfigError(f"distillation.hyperparameters.{paper}.{loss}: missing (dataset {name!r} "
                                  f"trains this student)")
            absent = [p for p in LOSSES[loss].tuned_parameters if p not in table[loss]]
            if absent:
                raise ConfigError(f"distillation.hyperparameters.{paper}.{loss}: needs {absent}")
    for name in config["run_datasets"]:
        paper = config["datasets"][name]["paper_name"]
        for ratio in [*pr["base_ratios"], pr["teacher_ratio"]]:
            if str(ratio) not in pr["hyperparameters"].get(paper, {}):
                raise ConfigError(f"pruning.hyperparameters.{paper}.\"{ratio}\": missing (dataset {name!r} "
                                  f"prunes {ratio} %)")


def check_deployable(config: dict) -> None:
    """Each deployable model names a defined architecture and a loss whose values every dataset that runs has."""
    table = config["distillation"]["hyperparameters"]
    for entry, spec in config["deployable"]["models"].items():
        key = f"deployable.models.{entry}"
        if spec["architecture"] not in config["model"]["architectures"]:
            raise ConfigError(f"{key}.architecture: {spec['architecture']!r} is not in model.architectures; "
                              f"allowed: {sorted(config['model']['architectures'])}")
        for name in config["run_datasets"]:
            paper = config["datasets"][name]["paper_name"]
            if spec["loss"] not in table.get(paper, {}):
                raise ConfigError(f"{key}.loss: {spec['loss']!r} has no values in distillation.hyperparameters."
                                  f"{paper} (dataset {name!r} trains this model)")


def check_verdict(verdict: dict, losses: list, pr: dict) -> None:
    """The verdict's claims are about students that are trained and ratios that are pruned by both methods."""
    for loss in verdict["losses"]:
        if loss not in losses:
            raise ConfigError(f"verdict.losses: {loss!r} is not a trained student; allowed: those of "
                              f"distillation.losses {losses}")
    if verdict["losses"] and "stcd" not in verdict["losses"]:
        raise ConfigError(f"verdict.losses: {verdict['losses']} holds no 'stcd', the loss every claim is about; "
                          "add it, or leave the list empty for no student claims")
    if verdict["losses"] and "task" not in losses:
        raise ConfigError("verdict.losses: a claim on students is judgeable only against a teacher better than the "
                          f"student without KD, which is not trained; add 'task' to distillation.losses {losses}")
    for ratio in verdict["pruning_ratios"]:
        if ratio not in pr["base_ratios"]:
            raise ConfigError(f"verdict.pruning_ratios: {ratio} is not pruned; allowed: those of "
                              f"pruning.base_ratios {pr['base_ratios']}")
    if verdict["pruning_ratios"] and set(pr["methods"]) != {"kd_taylor", "taylor"}:
        raise ConfigError("verdict.pruning_ratios: comparing Algorithm 1 with the baseline needs both in "
                          f"pruning.methods (now {pr['methods']}); or set verdict.pruning_ratios: []")


def check_tuning_space(space: dict) -> None:
    for name, spec in space.items():
        if "low" in spec and spec["low"] > spec["high"]:
            raise ConfigError(f"tuning.space.{name}: low {spec['low']} exceeds high {spec['high']}")
        if spec.get("log") and spec["low"] <= 0:
            raise ConfigError(f"tuning.space.{name}: a log scale needs low > 0, got {spec['low']}")
