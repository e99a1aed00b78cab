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
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from components.evaluation.eval_config import GateBounds
from components.served_model import component as served_model
from components.serving import repository as serving_dir

SKIPPED = "skipped"  # a blessing's custom property: why nothing was compared


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
        if _only_compares(exec_properties) and _same_model(input_dict, baselines):
            _bless_without_comparing(output_dict, "the candidate is the served model")
            return
        if baselines and all(served_model.is_empty(artifact) for artifact in baselines):
            logging.debug("No served model yet: the gate applies min_accuracy alone.")
            input_dict = {name: artifacts for name, artifacts in input_dict.items() if name != key}
        super().Do(input_dict, output_dict, exec_properties)


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
