"""The gate's Evaluator component: TFX's Evaluator with :class:`GateEvaluatorExecutor` (see ``executor.py``).

Its spec is TFX's ``EvaluatorSpec`` plus one parameter, ``above_majority_class``
(1: after TFMA blesses, the executor also requires the test accuracy's 95% interval
to lie above the majority-class rate, ``components/evaluation/majority_rule.py``):
TFMA's eval config cannot hold a bound that depends on the test split's class counts.
"""

from __future__ import annotations

from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx import types
from tfx.components import Evaluator
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import component_spec, standard_artifacts, standard_component_specs
from tfx.utils import json_utils

from components.gate_evaluator.executor import ABOVE_MAJORITY_CLASS_KEY, GateEvaluatorExecutor


class GateEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's Evaluator spec with ``above_majority_class`` (int 0/1, optional: absent is 0)."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        ABOVE_MAJORITY_CLASS_KEY: component_spec.ExecutionParameter(type=int, optional=True),
    }


class GateEvaluator(Evaluator):
    """``tfx.components.Evaluator`` with :class:`GateEvaluatorExecutor` and the majority-class rule."""

    SPEC_CLASS = GateEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(GateEvaluatorExecutor)

    def __init__(  # the Evaluator arguments this pipeline uses, plus the rule
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel,
        eval_config: tfma_config.EvalConfig,
        example_splits: list[str],
        above_majority_class: bool = False,
    ) -> None:
        """Builds the spec as ``Evaluator.__init__`` does (no module file, no fairness thresholds).

        Args:
          examples: The Examples to evaluate on.
          model: The candidate Model.
          baseline_model: The baseline Model (an empty one: no baseline, see ``executor.py``).
          eval_config: TFMA's config (``components/evaluation/eval_config.py``).
          example_splits: The splits evaluated on.
          above_majority_class: Also apply the majority-class rule (the gate only).
        """
        spec = GateEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits),
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            **{ABOVE_MAJORITY_CLASS_KEY: int(above_majority_class)},
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)  # Evaluator.__init__ builds TFX's own spec
