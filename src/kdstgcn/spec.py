"""What a run spec may name, importable without torch (the config checks and the report read it): the losses'
hyper-parameters, the paper's open readings and the losses built with them, the paper's block notation."""
from __future__ import annotations

READING_CHOICES = {"scalar_norm": ("squared", "absolute"), "ord_reduction": ("mean", "sum"),
                   "distance_scale": ("raw", "mean_normalised")}

READING_LOSSES = ("rd_l2", "rd_kl", "ord", "stcd", "tcd", "scd")

LOSS_PARAMETERS = {
    "task": (), "rd_l2": ("beta",), "rd_kl": ("beta", "temperature"), "ord": ("alpha1",),
    "skd": ("alpha",), "stcd": ("alpha1", "alpha2", "alpha3"),
    "tcd": ("alpha1", "alpha3"), "scd": ("alpha1", "alpha3"),
}


def parse_blocks(text_or_list) -> tuple[tuple[int, int, int], ...]:
    """Accept [[1,32,64],[64,32,128]] or the paper's string "[1,32,64][64,32,128]"."""
    if isinstance(text_or_list, str):
        parts = text_or_list.strip().strip("[]").split("][")
        return tuple(tuple(int(c) for c in p.split(",")) for p in parts)
    return tuple(tuple(int(c) for c in b) for b in text_or_list)


def format_blocks(blocks) -> str:
    return "".join("[" + ",".join(str(c) for c in b) + "]" for b in blocks)
