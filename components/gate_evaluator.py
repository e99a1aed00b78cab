"""TFX's Evaluator, reading "nothing is served" from the served-model step as "no baseline".

The served-model step (``components/served_model.py``) always outputs a Model
artifact, an empty one marked ``served_version`` 0 when nothing is served yet.
TFX's Evaluator would try to load that as the baseline; this executor drops it,
so the gate runs as TFX runs a first run: the absolute bound alone, change
thresholds skipped (tfx/components/evaluator/executor.py sets ``has_baseline``
from the ``baseline_model`` input). Every other baseline, the from-scratch
comparison's included, goes to TFMA as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from tfx.components import Evaluator
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components import served_model

EVALUATOR_ID = "Evaluator"  # TFX's own node id, kept: runs, reports and the Kubeflow task use it


class GateEvaluatorExecutor(tfx_evaluator_executor.Executor):
    """Evaluates without a baseline when the served-model step found none."""

    def Do(  # noqa: N802 (TFX API)
        self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]
    ) -> None:
        """Drops an empty served baseline, then runs TFX's Evaluator."""
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and all(served_model.is_empty(artifact) for artifact in baselines):
            logging.info("No served model yet: the gate applies min_accuracy alone.")
            input_dict = {name: artifacts for name, artifacts in input_dict.items() if name != key}
        super().Do(input_dict, output_dict, exec_properties)


class GateEvaluator(Evaluator):
    """``tfx.components.Evaluator`` with :class:`GateEvaluatorExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(GateEvaluatorExecutor)
