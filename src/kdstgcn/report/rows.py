"""What each paper table and claim is made of: the models of the metric tables (TableRow), the claims the summary
and the verdict test, and the settings the report prints about the study (its datasets, its epoch budget).

Torch- and matplotlib-free: the workflow imports this module to size its DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from kdstgcn.config.datasets import quantity
from kdstgcn.config.layout import HYPERPARAMETER_SOURCES, parse_pruned, pruned_name
from kdstgcn.config.tuned import sourced_model
from kdstgcn.report.labels import paper_label


@dataclass(frozen=True)
class TableRow:
    """One model of a paper table: our run name, the paper's row name, and (Tables 7-8) its pruning level and,
    for a pruned model, the model it was pruned from."""

    model: str
    paper_model: str
    param_pct: int | None = None
    compared_with: str | None = None
    base: str | None = None


def paper_model_name(model: str) -> str:
    """Our run name -> the paper's row name where the two differ."""
    return {"student_task": "student_no_kd", "pruning_base": "base_model"}.get(model, model)


KD_COMPARISON = "student_task"


def _kd(model: str) -> TableRow:
    return TableRow(model, paper_model_name(model), compared_with=KD_COMPARISON)


REFERENCE_ROWS = [TableRow("teacher", "teacher"), TableRow("student_task", "student_no_kd")]
KD_TABLES = {
    2: REFERENCE_ROWS + [_kd(m) for m in ("student_rd_l2", "student_rd_kl", "student_ord")],
    4: REFERENCE_ROWS + [_kd(m) for m in ("student_rd_l2", "student_rd_kl", "student_skd", "student_stcd")],
    5: REFERENCE_ROWS + [_kd(m) for m in ("student_ord", "student_tcd", "student_scd", "student_stcd")],
}
SHARE_MODELS = ["student_ord", "student_scd", "student_tcd", "student_stcd"]
SUMMARY_TABLES = (1, 2, 4, 5, 7, 8)  # the tables whose claims the summary judges
CLAIM_KINDS = ("distillation", "pruning")  # the verdict's two central claims (`Claim.kind`)


def pruning_rows(number: int, pruning: dict) -> list[TableRow]:
    """Table 7 (teacher pruned by Algorithm 1 vs the fixed STCD student) or Table 8 (base pruned, both methods),
    from the config's `pruning` section (teacher_ratio, base_ratios, methods)."""
    if number == 7:
        pruned = pruned_name("kd_taylor", "teacher", pruning["teacher_ratio"])
        return [TableRow("teacher", "teacher", 100), TableRow("student_stcd", "student_without_pruning", 3),
                TableRow(pruned, "student_with_pruning", 3, compared_with="student_stcd", base="teacher")]
    rows = [TableRow("pruning_base", "base_model", 100)]
    for ratio in pruning["base_ratios"]:
        baseline = pruned_name("taylor", "pruning_base", ratio)
        if "taylor" in pruning["methods"]:
            rows.append(TableRow(baseline, "pruned_no_kd", ratio, base="pruning_base"))
        if "kd_taylor" in pruning["methods"]:
            rows.append(TableRow(pruned_name("kd_taylor", "pruning_base", ratio), "pruned_stcd", ratio,
                                 compared_with=baseline if "taylor" in pruning["methods"] else None,
                                 base="pruning_base"))
    return rows


def table_rows(number: int, losses: list[str], pruning: dict) -> list[TableRow]:
    """The models a metric table (2, 4, 5, 7, 8) needs, restricted to the students of the config's
    `distillation.losses`."""
    if number in (7, 8):
        return pruning_rows(number, pruning)
    trained = {f"student_{loss}" for loss in losses}
    return [r for r in KD_TABLES[number] if not r.model.startswith("student_") or r.model in trained]


def share_models(losses: list[str]) -> list[str]:
    """The students of Table 3 (share of targets taken from the teacher) that the config trains."""
    return [m for m in SHARE_MODELS if m[len("student_"):] in losses]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: `better` should beat `worse` on `metric` (lower is better) in table `table`, judged
    with the hyper-parameters of each of `sources` (the paper's, tuned)."""

    table: int
    text: str
    better: str
    worse: str
    metric: str = "MAE"
    sources: tuple[str, ...] = HYPERPARAMETER_SOURCES

    @property
    def kind(self) -> str:
        """distillation (Tables 4-5: students) or pruning (Table 8): what `verdict.tuned_claims` names."""
        return "pruning" if self.table == 8 else "distillation"


def claims(pruning: dict) -> list[Claim]:
    """Every claim the paper's metric tables make, at the config's pruning ratios (`pruning` section)."""
    found = [
        Claim(4, "The student trained with L_STCD beats the student trained without KD", "student_stcd",
              "student_task"),
        Claim(2, "L_ORD beats L_RD(L2)", "student_ord", "student_rd_l2"),
        Claim(2, "L_ORD beats L_RD(KL)", "student_ord", "student_rd_kl"),
        Claim(4, "L_STCD beats SKD", "student_stcd", "student_skd"),
        Claim(5, "L_STCD beats its ablation with the temporal term only", "student_stcd", "student_tcd"),
        Claim(5, "L_STCD beats its ablation with the spatial term only", "student_stcd", "student_scd"),
        Claim(7, f"Pruning the teacher by {pruning['teacher_ratio']} % with Algorithm 1 beats the fixed STCD student",
              pruned_name("kd_taylor", "teacher", pruning["teacher_ratio"]), "student_stcd"),
    ]
    found += [Claim(8, f"Algorithm 1 beats the Molchanov baseline at {r} % pruning",
                    pruned_name("kd_taylor", "pruning_base", r), pruned_name("taylor", "pruning_base", r))
              for r in pruning["base_ratios"]]
    return found


def verdict_claims(verdict: dict) -> list[Claim]:
    """The paper's two central claims as the config's `verdict` section asks for them: L_STCD beats each other
    student of verdict.losses (Tables 4-5) and Algorithm 1 beats the Molchanov baseline at each of
    verdict.pruning_ratios (Table 8); each with the paper's values, and with tuned ones where its kind is in
    verdict.tuned_claims (default: both kinds)."""
    found = []
    for loss in verdict["losses"]:
        if loss == "stcd":
            continue
        other = "the student without KD" if loss == "task" else paper_label(f"student_{loss}")
        found.append(Claim(4 if loss in ("task", "rd_l2", "rd_kl", "skd") else 5,
                           f"The student trained with L_STCD beats {other}", "student_stcd", f"student_{loss}"))
    found += [Claim(8, f"Algorithm 1 beats the Molchanov baseline at {r} % pruning",
                    pruned_name("kd_taylor", "pruning_base", r), pruned_name("taylor", "pruning_base", r))
              for r in verdict["pruning_ratios"]]
    tuned = verdict.get("tuned_claims", CLAIM_KINDS)
    return [replace(c, sources=HYPERPARAMETER_SOURCES if c.kind in tuned else ("paper",)) for c in found]


def without_kd(claim: Claim) -> str:
    """The model trained without KD that a claim's teacher must beat for the claim to test KD: the student without
    KD for a claim on students, the baseline (pruned without KD) for a claim on pruning."""
    return claim.worse if claim.table == 8 else KD_COMPARISON


def trained_from_scratch(model: str) -> str:
    """The model trained from scratch behind `model`: itself, or for a pruned model the base it was pruned from
    (the fine-tuning after pruning has no reference budget)."""
    pruned = parse_pruned(model)
    return model if pruned is None else pruned.base


def verdict_runs(config: dict) -> dict[str, dict[str, str]]:
    """The run folder of each model of a verdict claim, and of the model without KD its teacher is checked
    against (`without_kd`), per hyper-parameter source its claims are judged with (`Claim.sources`): the tables'
    own run or a variant trained for the verdict only (config.tuned.sourced_model)."""
    sources: dict[str, set[str]] = {}
    for claim in verdict_claims(config["verdict"]):
        for model in (claim.better, claim.worse, without_kd(claim)):
            sources.setdefault(model, set()).update(claim.sources)
    return {m: {source: sourced_model(config, m, source) for source in HYPERPARAMETER_SOURCES if source in used}
            for m, used in sources.items()}


def dataset_facts(config: dict) -> dict[str, dict]:
    """What the report says about each dataset of the run, in run order: the paper's name for it, its
    description, its source (files or synthetic) and the quantity its values measure."""
    facts = {}
    for name in config["run_datasets"]:
        ds = config["datasets"][name]
        facts[name] = {"paper_name": ds["paper_name"], "description": ds["description"], "source": ds["source"],
                       "quantity": quantity(config, name)}
    return facts


def budget(config: dict) -> dict:
    """The epoch budget and seeds the caveats print: epochs per model, the teacher's and the paper's, the
    fine-tuning epochs of a pruned model, the seeds."""
    t = config["training"]
    return {"epochs": t["epochs"], "teacher_epochs": t.get("teacher_epochs") or t["epochs"],
            "paper_epochs": t["paper_epochs"],
            "finetune_epochs": config["pruning"]["finetune_epochs"], "seeds": config["seeds"]}
