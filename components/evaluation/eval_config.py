"""The Evaluators' TFMA configuration: the gate's thresholds and what is measured on ``test``.

One home for the metrics the gate reads back (``metrics.py``) and the signature
TFMA calls on the exported model.
"""

from __future__ import annotations

# TFMA 0.52 no longer re-exports its config protos at the top level (tfma.EvalConfig,
# tfma.PerSliceMetricThreshold, ...): config_pb2 holds them, in 0.47 as in 0.52.
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict
from tensorflow_model_analysis.proto import config_pb2 as tfma_config

from components import signatures
from components.evaluation.metrics import ACCURACY_METRIC, CONFUSION_MATRIX_PLOT
from components.modules import features

# TFMA needs a strictly negative change bound to accept an equal accuracy.
_MIN_CHANGE_TOLERANCE = 1e-10


def gate_threshold(min_accuracy: float | None, max_accuracy_drop: float) -> tfma_config.MetricThreshold:
    """The gate on test accuracy, as far as TFMA judges it (the majority-class rule: ``majority_rule.py``).

    Args:
      min_accuracy: Absolute lower bound of test accuracy (None: none).
      max_accuracy_drop: How much lower than the served model the candidate
        may be (0.0: no worse).
    """
    value = None
    if min_accuracy is not None:
        value = tfma_config.GenericValueThreshold(lower_bound={"value": min_accuracy})
    return tfma_config.MetricThreshold(
        value_threshold=value,
        change_threshold=tfma_config.GenericChangeThreshold(
            direction=tfma_config.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(max_accuracy_drop, _MIN_CHANGE_TOLERANCE)},
        ),
    )


def no_worse_threshold(max_accuracy_drop: float) -> tfma_config.MetricThreshold:
    """The second gate, on the served version's own test split: no worse than the served model there."""
    return tfma_config.MetricThreshold(
        change_threshold=tfma_config.GenericChangeThreshold(
            direction=tfma_config.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(max_accuracy_drop, _MIN_CHANGE_TOLERANCE)},
        ),
    )


def eval_config(threshold: tfma_config.MetricThreshold | None) -> tfma_config.EvalConfig:
    """Accuracy, example counts and the confusion matrix overall and per class; ``threshold`` gates the overall slice.

    Without a threshold the Evaluator measures and blesses nothing (the from-scratch
    comparison, which judges transfer, not whether to serve).
    """
    per_slice = [tfma_config.PerSliceMetricThreshold(slicing_specs=[tfma_config.SlicingSpec()], threshold=threshold)]
    return tfma_config.EvalConfig(
        model_specs=[
            tfma_config.ModelSpec(
                signature_name=signatures.EXAMPLES_SIGNATURE,
                label_key=features.transformed_name(features.LABEL_KEY),
                prediction_key=signatures.PROBABILITIES_OUTPUT,
                preprocessing_function_names=[signatures.TRANSFORM_SIGNATURE],
            )
        ],
        slicing_specs=[tfma_config.SlicingSpec(), tfma_config.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[
            tfma_config.MetricsSpec(
                metrics=[
                    tfma_config.MetricConfig(class_name="ExampleCount"),
                    tfma_config.MetricConfig(class_name=CONFUSION_MATRIX_PLOT),
                    tfma_config.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        config=f'{{"name": "{ACCURACY_METRIC}"}}',
                        per_slice_thresholds=per_slice if threshold else [],
                    ),
                ]
            )
        ],
    )


class GateBounds(BaseModel):
    """The gate's accuracy bounds on the overall slice, as an Evaluator's eval config holds them.

    Written only through :func:`gate_threshold` / :func:`no_worse_threshold` (the
    graph builds the eval configs with them); read back from an Evaluator
    execution's ``eval_config`` property with :meth:`from_json`.

    Attributes:
      min_accuracy: Lower bound of test accuracy (None: no absolute bound).
      max_accuracy_drop: How far below the baseline (served model) the candidate
        may be (None: no comparison).
    """

    model_config = ConfigDict(frozen=True)

    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None

    @classmethod
    def of(cls, config: tfma_config.EvalConfig) -> GateBounds:
        """The bounds of an eval config (the last threshold of each kind wins, as there is one)."""
        minimum = drop = None
        for spec in config.metrics_specs:
            for metric in spec.metrics:
                for per_slice in metric.per_slice_thresholds:
                    threshold = per_slice.threshold
                    if threshold.value_threshold.HasField("lower_bound"):
                        minimum = threshold.value_threshold.lower_bound.value
                    if threshold.change_threshold.HasField("absolute"):
                        # gate_threshold stores -max(drop, a tiny tolerance): round the tolerance away.
                        drop = round(max(-threshold.change_threshold.absolute.value, 0.0), 6)
        return cls(min_accuracy=minimum, max_accuracy_drop=drop)

    @classmethod
    def from_json(cls, eval_config_json: str) -> GateBounds:
        """The bounds of an eval config as TFX stores it in an exec property (JSON)."""
        config = tfma_config.EvalConfig()
        json_format.Parse(eval_config_json or "{}", config, ignore_unknown_fields=True)
        return cls.of(config)

    @property
    def compares_only(self) -> bool:
        """Whether the config only compares with a baseline: no absolute bound.

        The served-test gate's config, and the gate's own without ``min_accuracy``: the gate's
        Evaluator also applies the majority-class rule, which its exec properties say
        (``components/gate_evaluator/component.py``).
        """
        return self.min_accuracy is None and self.max_accuracy_drop is not None
