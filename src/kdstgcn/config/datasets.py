"""What the configuration says about one dataset: the raw files it downloads, how its values and distances are
read, what its values measure, and the time layout every model of it trains on."""
from __future__ import annotations

from dataclasses import asdict, dataclass

SYNTHETIC_VALUES = "synthetic_values.npz"
# a synthetic network's distances: an edge list (from, to, cost in metres) at every size (kdstgcn.jobs.data.synthesize)
SYNTHETIC_DISTANCE = "synthetic_edges.csv"
FILLS = ("interpolate", "causal")  # how missing readings are filled: kdstgcn.data.gaps.fill_gaps
DEFAULT_FILL = "interpolate"  # the paper's reading


def raw_files(config: dict, dataset: str) -> dict[str, dict]:
    """File name -> {urls, sha256} of every raw file a dataset downloads."""
    ds = config["datasets"][dataset]
    if ds["source"] != "files":
        return {}
    return {ds[part]["file"]["name"]: ds[part]["file"] for part in ("values", "distance")}


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
    """How the adjacency rule reads a dataset's raw distances: file name, format, metres per unit."""
    ds = config["datasets"][dataset]
    if ds["source"] == "synthetic":
        return {"name": SYNTHETIC_DISTANCE, "format": "edge_list", "unit_m": 1000.0}
    d = ds["distance"]
    return {"name": d["file"]["name"], "format": d["format"], "unit_m": float(d["unit_m"])}


def gap_fill(dataset: dict) -> str:
    """How the clean rule fills the missing readings of a dataset (its config section): one of FILLS, which the
    model card names for `predict`."""
    return dataset.get("fill", DEFAULT_FILL)


def quantity(config: dict, dataset: str) -> str:
    """What the dataset's values are (axis label of the figures)."""
    ds = config["datasets"][dataset]
    return ds["values"]["quantity"] if ds["source"] == "files" else "speed (mph, synthetic)"


def data_spec(config: dict, dataset: str) -> dict:
    """Steps per day, split in days, and the model's input and output windows: how a dataset is cut into samples
    (`DataSpec`'s dict form, which the rules pass as params)."""
    ds, model = config["datasets"][dataset], config["model"]
    return {"steps_per_day": ds["steps_per_day"], "split": list(ds["split"]), "n_his": model["n_his"],
            "n_pred": model["n_pred"]}


@dataclass(frozen=True)
class DataSpec:
    """How a dataset is cut into samples: steps per day, (train, val, test) days, input and output windows."""

    steps_per_day: int
    split: tuple[int, ...]
    n_his: int
    n_pred: int

    def to_dict(self) -> dict:
        return {**asdict(self), "split": list(self.split)}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(**{**d, "split": tuple(d["split"])})
