"""The gate's Evaluator component: TFX's Evaluator with :class:`GateEvaluatorExecutor` (see ``executor.py``)."""

from __future__ import annotations

from tfx.components import Evaluator
from tfx.dsl.components.base import executor_spec

from components.gate_evaluator.executor import GateEvaluatorExecutor


class GateEvaluator(Evaluator):
    """``tfx.components.Evaluator`` with :class:`GateEvaluatorExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(GateEvaluatorExecutor)
