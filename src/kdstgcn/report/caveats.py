"""What our numbers can be compared with: whether a dataset is the paper's, and the epoch budget, as the first
lines of the summary and of every table page and in the headings."""
from __future__ import annotations

from kdstgcn.report.tables import epochs_text, reference_budget

PAPER_QUANTITY = "speed (mph)"


def comparable(facts: dict) -> bool:
    """Whether our numbers on a dataset (rows.dataset_facts) can be set against the paper's: real data of the
    paper's quantity."""
    return facts["quantity"] == PAPER_QUANTITY


def data_tag(dataset: str, facts: dict) -> str:
    """A few words on what a dataset's numbers are, for headings."""
    if comparable(facts):
        return f"{dataset}: the paper's {facts['paper_name']} data"
    if facts["source"] == "synthetic":
        return f"{dataset}: synthetic data, not comparable with the paper's {facts['paper_name']}"
    return f"{dataset}: {facts['quantity']}, not comparable with the paper's {facts['paper_name']} speed"


def caveat_lines(datasets: dict[str, dict], budget: dict) -> list[str]:
    """What our numbers can be compared with (`datasets`: rows.dataset_facts) and the epoch budget (rows.budget)."""
    lines = []
    for dataset, facts in datasets.items():
        if comparable(facts):
            lines.append(f"**Data:** `{dataset}` is {facts['description']}, the paper's {facts['paper_name']}.")
        else:
            lines.append(f"**Not comparable with the paper's numbers:** `{dataset}` is {facts['description']}. The "
                         f"paper's {facts['paper_name']} values stand beside ours only to show which model each "
                         "claim says is better: compare directions, not values.")
    text = f"**Epoch budget:** {epochs_text(budget['epochs'])} per model"
    teacher = budget.get("teacher_epochs", budget["epochs"])
    if teacher != budget["epochs"]:
        text += f", {epochs_text(teacher)} for the teacher"
    text += f" ({reference_budget(budget['paper_epochs'])}; the paper gives no epoch count)"
    if budget["epochs"] < budget["paper_epochs"]:
        text += ", cut short: expect larger errors than the paper's"
    lines.append(f"{text}; a pruned model is fine-tuned {epochs_text(budget['finetune_epochs'])} after pruning its "
                 f"base model, so it trains more epochs than that base. Seeds: {budget['seeds']}.")
    return lines
