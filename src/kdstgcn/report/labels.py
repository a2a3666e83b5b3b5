"""The paper's names of our models (its tables' row names), as plain text, for matplotlib and as HTML."""
from __future__ import annotations

import html
import re

from kdstgcn.config.layout import parse_deployable, parse_pruned

PAPER_LABELS = {"teacher": "Teacher", "student_task": "Student W/O KD", "pruning_base": "Base Model",
                "pruned": "Pruned"}
PAPER_LOSSES = {"rd_l2": "RD(L2)", "rd_kl": "RD(KL)"}
OUR_LOSSES = ("ord", "stcd")
PRUNING_LABELS = {"taylor": "Pruned W/O KD", "kd_taylor": "Pruned W L_STCD (ours)"}
LOSS_SUBSCRIPT = re.compile(r"L_([A-Z0-9]+(?:\([A-Z0-9]+\))?)")


def paper_label(model: str) -> str:
    """The paper's name of one of our models (its tables' row names), e.g. student_stcd -> 'Student L_STCD (ours)'.

    Loss names are written L_NAME; `math_label` and `html_label` set NAME as a subscript.
    """
    if model in PAPER_LABELS:
        return PAPER_LABELS[model]
    pruned = parse_pruned(model)
    if pruned is not None:
        method = PRUNING_LABELS[pruned.method]
        if pruned.base == "teacher":
            method = "Student W pruning algorithm" if pruned.method == "kd_taylor" else method
            return f"{method} (teacher pruned {pruned.ratio} %)"
        return f"{method} {pruned.ratio} %"
    entry = parse_deployable(model)
    if entry is not None:
        return f"Deployable {entry}"
    if model.startswith("student_"):
        loss = model[len("student_"):]
        return f"Student L_{PAPER_LOSSES.get(loss, loss.upper())}" + (" (ours)" if loss in OUR_LOSSES else "")
    return model


def math_label(label: str) -> str:
    r"""A paper label for matplotlib: L_STCD -> $L_{\mathrm{STCD}}$."""
    return LOSS_SUBSCRIPT.sub(lambda m: f"$L_{{\\mathrm{{{m[1]}}}}}$", label)


def html_label(label: str) -> str:
    """A paper label as HTML: L_STCD -> L<sub>STCD</sub>."""
    return LOSS_SUBSCRIPT.sub(r"L<sub>\1</sub>", html.escape(label, quote=False))
