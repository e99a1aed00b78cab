"""TFMA's output files as its writer lays them out, for tests of what reads them (no model, no Beam)."""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

from components.evaluation.metrics import ACCURACY_METRIC, EXAMPLE_COUNT_METRIC
from components.modules import features


def _entry(metrics: metrics_for_slice_pb2.MetricsForSlice, name: str, value: float, model: str = "") -> None:
    entry = metrics.metric_keys_and_values.add()
    entry.key.name = name
    entry.key.model_name = model
    entry.value.double_value.value = value


def write_evaluation(
    uri: str,
    correct: dict[str, int],
    examples: dict[str, int],
    baseline_accuracy: float | None = None,
    validation_ok: bool = True,
) -> str:
    """A ModelEvaluation folder with TFMA's ``metrics`` and ``validations`` records; returns ``uri``.

    Args:
      uri: The folder.
      correct: Class -> test images the candidate got right.
      examples: Class -> test images.
      baseline_accuracy: The baseline's overall accuracy (None: no baseline).
      validation_ok: TFMA's own verdict on its thresholds.
    """
    tf.io.gfile.makedirs(uri)
    records = []
    overall = metrics_for_slice_pb2.MetricsForSlice()
    overall.slice_key.CopyFrom(tfma.slicer.serialize_slice_key(()))
    model = "candidate" if baseline_accuracy is not None else ""
    _entry(overall, ACCURACY_METRIC, sum(correct.values()) / sum(examples.values()), model)
    _entry(overall, EXAMPLE_COUNT_METRIC, sum(examples.values()), model)
    if baseline_accuracy is not None:
        _entry(overall, ACCURACY_METRIC, baseline_accuracy, "baseline")
    records.append(overall)
    for label, count in examples.items():
        per_class = metrics_for_slice_pb2.MetricsForSlice()
        per_class.slice_key.CopyFrom(tfma.slicer.serialize_slice_key(((features.LABEL_KEY, label.encode()),)))
        _entry(per_class, ACCURACY_METRIC, correct[label] / count, model)
        _entry(per_class, EXAMPLE_COUNT_METRIC, count, model)
        records.append(per_class)
    with tf.io.TFRecordWriter(os.path.join(uri, "metrics.tfrecord")) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    with tf.io.TFRecordWriter(os.path.join(uri, "validations.tfrecord")) as writer:
        writer.write(validation_result_pb2.ValidationResult(validation_ok=validation_ok).SerializeToString())
    return uri


# The near-chance model: 3 classes, 11 of 21 test images right (0.524, 95% 0.324-0.717),
# the largest class 8 of 21 (0.381).
NEAR_CHANCE = ({"a": 4, "b": 4, "c": 3}, {"a": 8, "b": 7, "c": 6})
# The demo's numbers: 76 of 78 right (0.974) over 5 classes, the largest 17 of 78.
CLEARLY_GOOD = (
    {"a": 17, "b": 16, "c": 15, "d": 15, "e": 13},
    {"a": 17, "b": 16, "c": 16, "d": 15, "e": 14},
)
