"""What an Evaluator decided and why, read from its TFMA output.

The gate's numbers (candidate and baseline accuracy on ``test``, per-class
accuracy, the thresholds that failed) come from the ModelEvaluation artifact
that TFMA wrote, so the run summary and the report show exactly what the
Evaluator judged on.
"""

from __future__ import annotations

import dataclasses
import logging

import tensorflow_model_analysis as tfma

from components.evaluation import accuracy, majority_rule
from components.modules import features

ACCURACY_METRIC = "sparse_categorical_accuracy"
EXAMPLE_COUNT_METRIC = "example_count"
# TFMA's multi-class confusion matrix (at threshold 0: the top class is the prediction).
CONFUSION_MATRIX_PLOT = "MultiClassConfusionMatrixPlot"
_CANDIDATE = "candidate"
_BASELINE = "baseline"


@dataclasses.dataclass
class GateResult:
    """One Evaluator's verdict with its numbers.

    Attributes:
      blessed: Whether every threshold passed.
      candidate_accuracy: Test accuracy of the new model (overall slice).
      baseline_accuracy: Test accuracy of the baseline model (the served model for
        the gate, the from-scratch model for the comparison), if there was one.
      test_examples: Examples in the test split.
      per_class_accuracy: Class name -> candidate test accuracy.
      per_class_examples: Class name -> test examples.
      reasons: One sentence per failed threshold, with the numbers.
      confusion_matrix: Candidate's test counts, ``[true class index][predicted class
        index]`` in the label vocabulary's order (the training summary's
        ``class_names``); empty if the Evaluator computed none.
      majority_check: The majority-class rule's check, where the gate applied it
        (``majority_rule.py``); None elsewhere.
    """

    blessed: bool
    candidate_accuracy: float | None = None
    baseline_accuracy: float | None = None
    test_examples: int | None = None
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    per_class_examples: dict[str, int] = dataclasses.field(default_factory=dict)
    reasons: list[str] = dataclasses.field(default_factory=list)
    confusion_matrix: list[list[int]] = dataclasses.field(default_factory=list)
    majority_check: majority_rule.MajorityRuleCheck | None = None

    @property
    def candidate_interval(self) -> tuple[float, float] | None:
        """The 95% Wilson interval of the candidate's test accuracy (None without the numbers)."""
        return _interval(self.candidate_accuracy, self.test_examples)

    @property
    def baseline_interval(self) -> tuple[float, float] | None:
        """The 95% Wilson interval of the baseline's accuracy on the same test images."""
        return _interval(self.baseline_accuracy, self.test_examples)


def _interval(value: float | None, examples: int | None) -> tuple[float, float] | None:
    return None if value is None or not examples else accuracy.accuracy_interval(value, examples)


def with_interval(value: float | None, examples: int | None) -> str:
    """``0.524 (95% 0.324-0.717)``; ``n/a`` without a value, the bare value without examples."""
    if value is None:
        return "n/a"
    interval = _interval(value, examples)
    return f"{value:.3f}" if interval is None else f"{value:.3f} (95% {interval[0]:.3f}-{interval[1]:.3f})"


def _slice_class(slice_key: tuple) -> str | None:
    """The class of a per-class slice, None for the overall slice."""
    for column, value in slice_key:
        if column == features.LABEL_KEY:
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return None


def _metrics(evaluation_uri: str) -> dict[tuple[str | None, str, str], float]:
    """(class or None, model, metric) -> value, diffs left out."""
    values = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        label = _slice_class(tfma.slicer.deserialize_slice_key(metrics.slice_key))
        for entry in metrics.metric_keys_and_values:
            if entry.key.is_diff or not entry.value.HasField("double_value"):
                continue
            model = entry.key.model_name or _CANDIDATE
            values[(label, model, entry.key.name)] = entry.value.double_value.value
    return values


def _confusion_matrix(evaluation_uri: str) -> list[list[int]]:
    """The candidate's overall-slice test confusion matrix from TFMA's plots (empty if none)."""
    for plots in tfma.load_plots(evaluation_uri):
        if tfma.slicer.deserialize_slice_key(plots.slice_key):
            continue  # a per-class slice
        for entry in plots.plot_keys_and_values:
            if entry.key.model_name not in ("", _CANDIDATE):
                continue
            matrices = entry.value.multi_class_confusion_matrix_at_thresholds.matrices
            if matrices:
                return _dense(matrices[0].entries)
    return []


def _dense(entries: object) -> list[list[int]]:
    """Rows of true classes, columns of predicted classes; predictions below threshold (-1) are left out."""
    cells = {(e.actual_class_id, e.predicted_class_id): e.num_weighted_examples for e in entries}
    size = 1 + max((max(true, predicted) for true, predicted in cells), default=-1)
    return [[round(cells.get((true, predicted), 0)) for predicted in range(size)] for true in range(size)]


def _reason(failure: object, candidate: float | None, baseline: float | None) -> str:
    threshold = failure.metric_threshold
    value = failure.metric_value.double_value.value
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold.lower_bound.value
        return f"test accuracy {value:.3f} is below min_accuracy {bound:.3f}"
    allowed = -threshold.change_threshold.absolute.value
    return (
        f"test accuracy {candidate if candidate is not None else float('nan'):.3f} is {-value:.3f} below the "
        f"baseline's {baseline if baseline is not None else float('nan'):.3f} (max_accuracy_drop {max(allowed, 0):.3f})"
    )


def read_gate(evaluation_uri: str, blessed: bool) -> GateResult:
    """The Evaluator's numbers and, when not blessed, the reasons.

    Args:
      evaluation_uri: The ModelEvaluation artifact's URI.
      blessed: The ModelBlessing's verdict.
    """
    result = GateResult(blessed=blessed)
    try:
        values = _metrics(evaluation_uri)
        validation = tfma.load_validation_result(evaluation_uri)
        result.confusion_matrix = _confusion_matrix(evaluation_uri)
    except Exception as error:  # noqa: BLE001 (TFMA raises many types on a missing/partial output)
        logging.warning("Could not read the evaluation at %s: %s", evaluation_uri, error)
        result.reasons = [] if blessed else [f"evaluation output unreadable: {error}"]
        return result
    result.candidate_accuracy = values.get((None, _CANDIDATE, ACCURACY_METRIC))
    result.baseline_accuracy = values.get((None, _BASELINE, ACCURACY_METRIC))
    count = values.get((None, _CANDIDATE, EXAMPLE_COUNT_METRIC))
    result.test_examples = None if count is None else int(count)
    for (label, model, name), value in sorted(values.items(), key=lambda item: str(item[0])):
        if label is None or model != _CANDIDATE:
            continue
        if name == ACCURACY_METRIC:
            result.per_class_accuracy[label] = value
        elif name == EXAMPLE_COUNT_METRIC:
            result.per_class_examples[label] = int(value)
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            result.reasons.append(_reason(failure, result.candidate_accuracy, result.baseline_accuracy))
    result.majority_check = majority_rule.read(evaluation_uri)
    if result.majority_check is not None and not result.majority_check.passed:
        result.reasons.append(result.majority_check.reason())
    return result
