"""The candidate's predictions on the test split: TFX's BulkInferrer as the graph sets it up, and its typed reader.

The graph's BulkInferrer (node ``BulkInferrer``) runs the Trainer's model, blessed or not,
over the raw ``test`` examples through the ``serving_examples`` signature. A predict
signature makes TFX write one ``PredictionLog`` per example (``predict_log``) into
``<InferenceResult URI>/prediction_logs-*.gz`` (gzipped TFRecords, tfx/components/bulk_inferrer/executor.py):
the request holds the serialized raw tf.Example (image bytes, label, path), the
response the signature's outputs (``classes``, ``scores``, ``probabilities``). This
module is the one home of that format here: :func:`model_spec` and :func:`data_spec`
configure the writer, :func:`read_predictions` and :func:`summarize` read it back.

The result holds a copy of every test image (the serialized requests), about the size of
the ``test`` split of the Examples artifact.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pydantic
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import bulk_inferrer_pb2

from components import signatures
from components.ingest import splits
from components.modules import features

# TFX's file name (executor._PREDICTION_LOGS_FILE_NAME) with Beam's shard suffix.
PREDICTION_LOGS_PATTERN = "prediction_logs-*"
# The card's caps: the most misclassified images kept (worst first), and examples per class
# for the first classes by name. A 96-pixel JPEG thumbnail is 2-5 KB, so the card stays under 1 MB.
MAX_MISTAKES = 48
EXAMPLES_PER_CLASS = 4
MAX_EXAMPLE_CLASSES = 40


def model_spec() -> bulk_inferrer_pb2.ModelSpec:
    """The signature the BulkInferrer runs: serialized raw tf.Examples in, the prediction outputs out."""
    return bulk_inferrer_pb2.ModelSpec(model_signature_name=[signatures.EXAMPLES_SIGNATURE])


def data_spec() -> bulk_inferrer_pb2.DataSpec:
    """The split the BulkInferrer reads: ``test`` only, the images the gate judged on."""
    return bulk_inferrer_pb2.DataSpec(example_splits=[splits.TEST])


class ImagePrediction(pydantic.BaseModel):
    """The model's answer for one test image, with the image.

    Attributes:
      path: The file, relative to the class root (the ``path`` feature).
      label: The true class.
      predicted: The top class.
      probability: The top class's probability.
      label_probability: The true class's probability; None when the class names are
        unknown or the label is not among them.
      image: The encoded image as ingested (JPEG, PNG, GIF or BMP).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    path: str
    label: str
    predicted: str
    probability: float
    label_probability: float | None = None
    image: bytes = pydantic.Field(default=b"", repr=False)

    @property
    def misclassified(self) -> bool:
        """Whether the top class is not the true class."""
        return self.predicted != self.label


class PredictionSummary(pydantic.BaseModel):
    """What the card shows of the test predictions: counts, the worst mistakes, examples per class.

    Attributes:
      total: Test images predicted.
      misclassified: Test images whose top class is not their label, all of them.
      mistakes: The worst ``max_mistakes`` of them (lowest true-class probability first,
        then the most confident wrong answer).
      max_mistakes: The cap on ``mistakes``.
      examples: Class -> its first ``per_class`` test images by path, for the first
        ``MAX_EXAMPLE_CLASSES`` classes by name, sorted.
      per_class: The cap on each class's examples.
      classes: Classes among the test images, all of them.
    """

    total: int = 0
    misclassified: int = 0
    mistakes: list[ImagePrediction] = pydantic.Field(default_factory=list)
    max_mistakes: int = MAX_MISTAKES
    examples: dict[str, list[ImagePrediction]] = pydantic.Field(default_factory=dict)
    per_class: int = EXAMPLES_PER_CLASS
    classes: int = 0

    @property
    def not_shown(self) -> int:
        """Misclassified images left out of ``mistakes`` by the cap."""
        return self.misclassified - len(self.mistakes)


def prediction_log_files(inference_uri: str) -> list[str]:
    """The BulkInferrer's PredictionLog files under an InferenceResult URI.

    Raises:
      FileNotFoundError: If there are none (e.g. the files were deleted, or the step wrote
        nothing).
    """
    files = sorted(tf.io.gfile.glob(os.path.join(inference_uri, PREDICTION_LOGS_PATTERN)))
    if not files:
        raise FileNotFoundError(
            f"No {PREDICTION_LOGS_PATTERN} in the InferenceResult {inference_uri}: re-run the pipeline "
            "so the BulkInferrer writes the test predictions."
        )
    return files


def _feature(example: tf.train.Example, key: str, source: str) -> bytes:
    values = example.features.feature[key].bytes_list.value
    if len(values) != 1:
        raise ValueError(f"A test example in {source} has {len(values)} values for feature {key!r}, expected one.")
    return values[0]


def _output(log: prediction_log_pb2.PredictionLog, name: str, source: str) -> np.ndarray:
    outputs = log.predict_log.response.outputs
    if name not in outputs:
        raise ValueError(
            f"A PredictionLog in {source} has no output {name!r} (outputs: {sorted(outputs)}): was the "
            f"BulkInferrer run on the {signatures.EXAMPLES_SIGNATURE!r} signature of this project's model?"
        )
    return tf.make_ndarray(outputs[name]).reshape(-1)


def _probability_of(label: str, index: dict[str, int], probabilities: np.ndarray) -> float | None:
    """The probability the model gave ``label``; None if the label is not among the known class names."""
    position = index.get(label)
    return None if position is None or position >= probabilities.size else float(probabilities[position])


def _prediction(log: prediction_log_pb2.PredictionLog, index: dict[str, int], source: str) -> ImagePrediction:
    """One predict_log: one serialized example in the request, [1, ...] outputs in the response."""
    requests = log.predict_log.request.inputs[signatures.EXAMPLES_INPUT].string_val
    if len(requests) != 1:
        raise ValueError(f"A PredictionLog in {source} holds {len(requests)} examples, expected one.")
    example = tf.train.Example.FromString(requests[0])
    label = _feature(example, features.LABEL_KEY, source).decode("utf-8")
    classes = _output(log, signatures.CLASSES_OUTPUT, source)
    probabilities = _output(log, signatures.PROBABILITIES_OUTPUT, source)
    return ImagePrediction(
        path=_feature(example, features.PATH_KEY, source).decode("utf-8"),
        label=label,
        predicted=classes[0].decode("utf-8"),
        probability=float(_output(log, signatures.SCORES_OUTPUT, source)[0]),
        label_probability=_probability_of(label, index, probabilities),
        image=_feature(example, features.IMAGE_KEY, source),
    )


def read_predictions(inference_uri: str, class_names: Sequence[str] = ()) -> Iterator[ImagePrediction]:
    """Every test prediction in an InferenceResult, one at a time (the images are not all held at once).

    Args:
      inference_uri: The BulkInferrer's InferenceResult artifact URI.
      class_names: The label vocabulary in output order (the training summary's
        ``class_names``), to look up each true class's probability; empty: unknown.

    Raises:
      FileNotFoundError: If the artifact holds no prediction logs.
      ValueError: If a record is not a predict_log of the ``serving_examples`` signature.
    """
    index = {name: position for position, name in enumerate(class_names)}
    for path in prediction_log_files(inference_uri):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(
                    f"{path} holds a {log.WhichOneof('log_type')}, expected a predict_log of the "
                    f"{signatures.EXAMPLES_SIGNATURE!r} signature."
                )
            yield _prediction(log, index, path)


def _badness(prediction: ImagePrediction) -> tuple[float, float, str]:
    """Sort key, worst first: lowest true-class probability, then most confident, then by path."""
    label_probability = 0.0 if prediction.label_probability is None else prediction.label_probability
    return label_probability, -prediction.probability, prediction.path


class _Worst:
    """The ``size`` worst mistakes seen so far: a heap whose root is the least bad one kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._heap: list[tuple[tuple[float, float], int, ImagePrediction]] = []
        self._order = itertools.count()

    def add(self, prediction: ImagePrediction) -> None:
        label_probability, minus_probability, _ = _badness(prediction)
        entry = ((-label_probability, -minus_probability), -next(self._order), prediction)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, entry)
        elif self._size and entry[0] > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def worst_first(self) -> list[ImagePrediction]:
        return sorted((entry[2] for entry in self._heap), key=_badness)


class _FirstPerClass:
    """The first ``per_class`` images by path of the first ``max_classes`` classes by name."""

    def __init__(self, per_class: int, max_classes: int) -> None:
        self._per_class, self._max_classes = per_class, max_classes
        self.kept: dict[str, list[ImagePrediction]] = {}
        self.classes: set[str] = set()

    def add(self, prediction: ImagePrediction) -> None:
        self.classes.add(prediction.label)
        kept = self.kept.setdefault(prediction.label, [])
        bisect.insort(kept, prediction, key=lambda kept_prediction: kept_prediction.path)
        del kept[self._per_class :]
        if len(self.kept) > self._max_classes:
            del self.kept[max(self.kept)]


def summarize(
    predictions: Iterable[ImagePrediction],
    max_mistakes: int = MAX_MISTAKES,
    per_class: int = EXAMPLES_PER_CLASS,
    max_classes: int = MAX_EXAMPLE_CLASSES,
) -> PredictionSummary:
    """Counts every prediction and keeps only what the card shows, in one pass.

    Args:
      predictions: E.g. :func:`read_predictions`.
      max_mistakes: How many misclassified images to keep, the worst.
      per_class: How many test images to keep per class, the first by path.
      max_classes: Of how many classes (the first by name) to keep examples.
    """
    worst, first = _Worst(max_mistakes), _FirstPerClass(per_class, max_classes)
    total = misclassified = 0
    for prediction in predictions:
        total += 1
        first.add(prediction)
        if prediction.misclassified:
            misclassified += 1
            worst.add(prediction)
    return PredictionSummary(
        total=total,
        misclassified=misclassified,
        mistakes=worst.worst_first(),
        max_mistakes=max_mistakes,
        examples=dict(sorted(first.kept.items())),
        per_class=per_class,
        classes=len(first.classes),
    )
