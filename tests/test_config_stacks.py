"""Every config file we ship validates, laid over config/config.yaml the way its header says it is used."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import REPO, merged_config
from kdstgcn.config import runspec, schema
from kdstgcn.model.persist import count_parameters
from kdstgcn.model.stgcn import STGCN

STACKS = [
    [],
    ["config/demo.yaml"],
    ["config/demo.yaml", "config/robust.yaml"],
    ["config/scale.yaml"],
    ["config/gpu_acceptance.yaml"],
    ["config/pemsd8_flow.yaml"],
    ["config/pemsd8_flow.yaml", "config/pemsd8_flow_verdict.yaml"],
    ["config/pemsd8_flow.yaml", "config/pemsd8_flow_reference.yaml"],
    ["config/pemsd8_flow.yaml", "config/pemsd8_flow_reference.yaml", "config/pemsd8_flow_deployable.yaml"],
]


def test_every_config_file_is_in_a_stack():
    shipped = {f"config/{path.name}" for path in (REPO / "config").glob("*.yaml")} - {"config/config.yaml"}
    assert shipped == {name for stack in STACKS for name in stack}


@pytest.mark.parametrize("stack", STACKS, ids=lambda stack: "+".join(Path(n).stem for n in stack) or "config")
def test_a_shipped_config_validates(stack):
    schema.validate(merged_config(*stack))


def parameters(config: dict, dataset: str, role: str) -> int:
    arch = runspec.architecture(config, dataset, role)
    with torch.device("meta"):
        return count_parameters(STGCN(arch, torch.empty(3, arch.n_nodes, arch.n_nodes)))


def test_the_deployable_students_we_try_fit_the_budget():
    config = merged_config(*STACKS[-1])
    schema.validate(config)
    teacher = parameters(config, "pemsd8_flow", "teacher")
    budget = config["deployable"]["parameter_budget_pct"] / 100 * teacher
    within = {entry for entry, spec in config["deployable"]["models"].items()
              if parameters(config, "pemsd8_flow", spec["architecture"]) <= budget}
    assert within == set(config["deployable"]["models"]) - {"teacher_rollout"}
