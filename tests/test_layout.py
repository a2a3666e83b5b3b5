"""Model names and the wildcard patterns of the rules: each name the study trains is made by exactly one rule
(train or prune), its parts read back, and no pattern carries a named group (Snakemake would read it as a
wildcard of its own)."""
import re

import pytest

from kdstgcn.config import layout
from kdstgcn.losses.registry import LOSSES

STUDENTS = [layout.student_name(loss) for loss in LOSSES]
PRUNED = [layout.pruned_name(method, base, ratio)
          for method in layout.PRUNING_METHODS for base in layout.REFERENCE_MODELS for ratio in (3, 50, 97)]
VARIANTS = [layout.variant_name(m, source) for m in STUDENTS + PRUNED for source in layout.HYPERPARAMETER_SOURCES]
DEPLOYABLE = [layout.deployable_name(entry) for entry in ("stcd_rollout", "wide2", "teacher_rollout")]


@pytest.mark.parametrize("pattern", ["MODEL_PATTERN", "TRAINED_PATTERN", "PRUNED_MODEL_PATTERN",
                                     "PRUNED_STUDY_PATTERN", "DEPLOYABLE_STUDY_PATTERN"])
def test_wildcard_patterns_have_no_named_groups(pattern):
    assert re.compile(getattr(layout, pattern)).groupindex == {}


@pytest.mark.parametrize("model", [*layout.REFERENCE_MODELS, *STUDENTS, *PRUNED, *VARIANTS, *DEPLOYABLE])
def test_every_model_is_made_by_one_rule(model):
    trained = re.fullmatch(layout.TRAINED_PATTERN, model) is not None
    pruned = re.fullmatch(layout.PRUNED_MODEL_PATTERN, model) is not None
    assert trained != pruned
    assert re.fullmatch(layout.MODEL_PATTERN, model)
    assert (layout.parse_pruned(model) is not None) == pruned
    deployable = layout.parse_deployable(model)
    assert (deployable is not None) == (model in DEPLOYABLE)
    assert (layout.parse_student(model) is not None) == (trained and model not in layout.REFERENCE_MODELS
                                                         and deployable is None)
    if deployable is not None:
        assert layout.deployable_name(deployable) == model
        assert re.fullmatch(layout.DEPLOYABLE_STUDY_PATTERN, model)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("source", [None, *layout.HYPERPARAMETER_SOURCES])
def test_a_student_name_reads_back_as_its_loss_and_source(loss, source):
    name = layout.student_name(loss) if source is None else layout.variant_name(layout.student_name(loss), source)
    assert layout.parse_student(name) == layout.StudentName(loss, source)


def test_a_pruned_study_is_named_like_its_model_without_a_source():
    name = layout.pruned_name("kd_taylor", "pruning_base", 50)
    assert re.fullmatch(layout.PRUNED_STUDY_PATTERN, name)
    assert not re.fullmatch(layout.PRUNED_STUDY_PATTERN, layout.variant_name(name, "tuned"))
    assert layout.parse_pruned(layout.variant_name(name, "tuned")) == layout.PrunedName("kd_taylor", "pruning_base",
                                                                                         50, "tuned")

