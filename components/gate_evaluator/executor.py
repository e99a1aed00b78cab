"""TFX's Evaluator, reading "nothing is served" from the served-model step as "no baseline".

The served-model step (``components/served_model/component.py``) always outputs a Model
artifact, an empty one marked ``served_version`` 0 when nothing is served yet.
TFX's Evaluator would try to load that as the baseline; this executor drops it,
so the gate runs as TFX runs a first run: the absolute bound alone, change
thresholds skipped (tfx/components/evaluator/executor.py sets ``has_baseline``
from the ``baseline_model`` input). Every other baseline, the from-scratch
comparison's included, goes to TFMA as it is.

The same executor runs the second gate, on the served version's own test split
(``served_test_evaluator``): when the served-model step found no such split
(nothing served, or a version that recorded none), or the candidate is the served
model itself (an unchanged rerun: its eval config only compares, and a model is
never worse than itself), there is nothing to compare, and the executor writes a
blessing that says so (``skipped``) without running TFMA.

The gate's own Evaluator (``above_majority_class`` 1, see ``component.py``) adds the
majority-class rule after TFMA ran (``components/evaluation/majority_rule.py``): the
check is written next to TFMA's output, and a blessing whose test accuracy's 95%
interval reaches the majority-class rate becomes not blessed (``NOT_BLESSED`` file,
``blessed`` 0, the reason in ``not_blessed_reason``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf
from tfx.components.evaluator import constants as tfx_evaluator_constants
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from components.evaluation import majority_rule
from components.evaluation import metrics as evaluation
from components.evaluation.eval_config import GateBounds
from components.served_model import component as served_model
from components.serving import repository as serving_dir

SKIPPED = "skipped"  # a blessing's custom property: why nothing was compared
# An exec property (int 0/1): also apply the majority-class rule (the gate's own Evaluator).
ABOVE_MAJORITY_CLASS_KEY = "above_majority_class"
# A blessing's custom property: why this executor turned TFMA's blessing into not blessed.
NOT_BLESSED_REASON = "not_blessed_reason"


class GateEvaluatorExecutor(tfx_evaluator_executor.Executor):
    """Evaluates without a baseline when the served-model step found none."""

    def Do(  # noqa: N802 (TFX API)
        self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]
    ) -> None:
        """Drops an empty served baseline, then runs TFX's Evaluator (nothing on an empty served test split)."""
        examples = input_dict.get(standard_component_specs.EXAMPLES_KEY) or []
        if examples and all(served_model.is_empty(artifact) for artifact in examples):
            _bless_without_comparing(output_dict, "no served version with a recorded test split")
            return
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        rule = bool(exec_properties.get(ABOVE_MAJORITY_CLASS_KEY))
        if not rule and _only_compares(exec_properties) and _same_model(input_dict, baselines):
            _bless_without_comparing(output_dict, "the candidate is the served model")
            return
        if baselines and all(served_model.is_empty(artifact) for artifact in baselines):
            logging.debug("No served model yet: the gate applies its absolute bounds alone.")
            input_dict = {name: artifacts for name, artifacts in input_dict.items() if name != key}
        super().Do(input_dict, output_dict, exec_properties)
        if rule:
            apply_majority_rule(
                output_dict[standard_component_specs.EVALUATION_KEY][0],
                output_dict[standard_component_specs.BLESSING_KEY][0],
            )


def apply_majority_rule(evaluation_artifact: Any, blessing: Any) -> majority_rule.MajorityRuleCheck | None:
    """Records the majority-class rule on TFMA's result and un-blesses a model that fails it.

    Where TFMA wrote no verdict (TFX validates nothing when no threshold is left: a
    gate without ``min_accuracy`` on a first run, whose change threshold needs a
    baseline), the rule's verdict is the gate's.

    Args:
      evaluation_artifact: The ModelEvaluation TFMA wrote.
      blessing: Its ModelBlessing (``blessed`` set by TFMA, or not set).

    Returns:
      The check, None when the evaluation has no accuracy or per-class counts to judge.
    """
    key = tfx_evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
    judged = blessing.has_custom_property(key)
    blessed = judged and bool(blessing.get_int_custom_property(key))
    gate = evaluation.read_gate(evaluation_artifact.uri, blessed)
    check = majority_rule.check(gate.candidate_accuracy, gate.per_class_examples)
    if check is None:
        reason = f"no test accuracy or per-class test counts in {evaluation_artifact.uri}"
        logging.warning("Majority-class rule: %s.", reason)
        if not judged or blessed:
            _write_verdict(blessing, False, reason)
        return None
    majority_rule.write(evaluation_artifact.uri, check)
    if not check.passed and (blessed or not judged):
        logging.warning("Gate: not blessed: %s.", check.reason())
        _write_verdict(blessing, False, check.reason())
    elif not judged:
        _write_verdict(blessing, True, "")
    return check


def _write_verdict(blessing: Any, blessed: bool, reason: str) -> None:
    """A blessing as TFX's Evaluator writes one (``BLESSED`` or ``NOT_BLESSED`` file, ``blessed``), replacing TFMA's."""
    tf.io.gfile.makedirs(blessing.uri)
    names = (tfx_evaluator_constants.BLESSED_FILE_NAME, tfx_evaluator_constants.NOT_BLESSED_FILE_NAME)
    keep, drop = names if blessed else names[::-1]
    if tf.io.gfile.exists(os.path.join(blessing.uri, drop)):
        tf.io.gfile.remove(os.path.join(blessing.uri, drop))
    with tf.io.gfile.GFile(os.path.join(blessing.uri, keep), "w") as handle:
        handle.write("")
    blessing.set_int_custom_property(
        tfx_evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        tfx_evaluator_constants.BLESSED_VALUE if blessed else tfx_evaluator_constants.NOT_BLESSED_VALUE,
    )
    if reason:
        blessing.set_string_custom_property(NOT_BLESSED_REASON, reason)


def _only_compares(exec_properties: dict[str, Any]) -> bool:
    """Whether the eval config's thresholds are change thresholds only (the served-test gate)."""
    return GateBounds.from_json(exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY) or "{}").compares_only


def _same_model(input_dict: dict[str, list], baselines: list) -> bool:
    """Whether candidate and baseline hold the same SavedModel (an unchanged rerun): "no worse" holds trivially."""
    candidates = input_dict.get(standard_component_specs.MODEL_KEY) or []
    if len(candidates) != 1 or len(baselines) != 1 or served_model.is_empty(baselines[0]):
        return False
    paths = [path_utils.serving_model_path(artifact.uri) for artifact in (candidates[0], baselines[0])]
    return (
        all(tf.io.gfile.exists(path) for path in paths) and len({serving_dir.model_fingerprint(p) for p in paths}) == 1
    )


def _bless_without_comparing(output_dict: dict[str, list], reason: str) -> None:
    """A blessing as TFX's Evaluator writes one (``BLESSED`` file, ``blessed`` 1), marked ``skipped``."""
    logging.debug("Nothing to compare on: %s; blessed without comparing.", reason)
    blessing = output_dict[standard_component_specs.BLESSING_KEY][0]
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED"), "w") as handle:
        handle.write("")
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_string_custom_property(SKIPPED, reason)
