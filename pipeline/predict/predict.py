"""Classifies image files with a pushed SavedModel, the way TF Serving would, or its TFLite file.

Each file is one request, so one bad file costs only its own result: the
outcome of every file is either a ``Prediction`` or a ``Failure`` with the real
reason (missing file, or the model's own message such as "Unknown image file
format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from components import signatures
from components.modules import features
from components.serving import repository as serving_dir
from components.serving import tflite
from pipeline.predict.outcomes import Failure, ImageError, Prediction

# What the model's decode_image reads; a folder argument expands to these files.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
REASON_MISSING = "file not found"
# Lines of a TensorFlow error message that are not the reason itself.
_NOISE = re.compile(r"^(Graph execution error:|Detected at node |<stack traces unavailable>|\s|\[\[)")
_NODE_SUFFIX = re.compile(r"\s*\[\[\{\{.*$")
# A nested tf.function (e.g. the TFLite path's decode) names itself before the reason.
_FUNCTION_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")


# Classifies one file's bytes; raises ImageError for a bad image.
Classifier = Callable[[str, bytes], Prediction]


def model_error_reason(message: str) -> str:
    """The useful line of a TensorFlow error message.

    ``Graph execution error:`` messages start with the node and its stack trace;
    the reason (e.g. "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF,
    BMP, WebP required.") comes after them, followed by ``[[{{node ...}}]]``.
    """
    for line in message.splitlines():
        if line.strip() and not _NOISE.match(line):
            return _NODE_SUFFIX.sub("", _FUNCTION_PREFIX.sub("", line.strip())).strip()
    return message.strip().splitlines()[0] if message.strip() else "unknown error (empty message)"


def expand_paths(arguments: Iterable[str]) -> tuple[list[str], list[Failure]]:
    """Files to classify: other arguments as given, folders as every image inside (recursively, sorted).

    Hidden files and folders are skipped; an image is a file ending in one of
    ``IMAGE_EXTENSIONS`` (any case). A missing file stays in the list (reading it
    reports it), so that failures come in the order of the arguments.

    Returns:
      The files, and a failure for each folder without images.
    """
    paths: list[str] = []
    failures: list[Failure] = []
    for argument in arguments:
        if not tf.io.gfile.isdir(argument):
            paths.append(argument)
            continue
        images = _images_in(argument)
        paths.extend(images)
        if not images:
            failures.append(Failure(argument, f"folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})"))
    return paths, failures


def _images_in(folder: str) -> list[str]:
    found = []
    for parent, dirs, files in tf.io.gfile.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]  # walk() does not enter hidden folders
        found.extend(
            os.path.join(parent, name)
            for name in files
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        )
    return sorted(found)


def classify_files(paths: Sequence[str], classify: Classifier) -> list[Prediction | Failure]:
    """Reads and classifies each file; a file that fails gets a ``Failure``, the others go on.

    Errors other than ``ImageError`` and unreadable files (e.g. a server that
    cannot be reached) stop the whole batch.
    """
    results: list[Prediction | Failure] = []
    for path in paths:
        try:
            with tf.io.gfile.GFile(path, "rb") as handle:
                data = handle.read()
        except tf.errors.NotFoundError:
            results.append(Failure(path, REASON_MISSING))
            continue
        except tf.errors.OpError as error:
            results.append(Failure(path, f"cannot be read: {model_error_reason(error.message)}"))
            continue
        try:
            results.append(classify(path, data))
        except ImageError as error:
            results.append(Failure(path, str(error)))
    return results


def resolve_model_dir(model_dir: str) -> str:
    """A SavedModel folder, or the newest complete numeric version under a model base path.

    Raises:
      FileNotFoundError: If neither a SavedModel nor a version folder is there.
    """
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    newest = serving_dir.newest_model_dir(model_dir)
    if newest is None:
        raise FileNotFoundError(
            f"No SavedModel in {model_dir!r}: expected saved_model.pb there or in a numeric version sub-folder."
            + _model_base_hint(model_dir)
        )
    return newest


def _model_base_hint(model_dir: str) -> str:
    """The "did you mean --model-dir X?" sentence when ``model_dir`` is a serving directory holding model base paths."""
    if not tf.io.gfile.isdir(model_dir):
        return ""
    bases = sorted(
        os.path.join(model_dir, name.rstrip("/"))
        for name in tf.io.gfile.listdir(model_dir)
        if serving_dir.newest_model_dir(os.path.join(model_dir, name.rstrip("/")))
    )
    if not bases:
        return ""
    return f" It is a serving directory: did you mean --model-dir {' or '.join(bases)}?"


def local_classifier(model_dir: str) -> Classifier:
    """Runs ``serving_default`` of the model at ``model_dir`` (see ``resolve_model_dir``) on one image.

    Raises:
      FileNotFoundError: If there is no model there.
    """
    serve = tf.saved_model.load(resolve_model_dir(model_dir)).signatures[signatures.DEFAULT_SIGNATURE]

    def classify(path: str, image: bytes) -> Prediction:
        return serving_predictions(serve, [path], [image])[0]

    return classify


def serving_predictions(serve: Callable[..., dict], paths: Sequence[str], images: Sequence[bytes]) -> list[Prediction]:
    """Runs a ``serving_default`` signature on encoded images in one call: one ``Prediction`` per image, in order.

    Raises:
      ImageError: If the model refused the call, with its reason (one bad image
        refuses the whole batch).
    """
    try:
        outputs = serve(**{signatures.IMAGE_BYTES_INPUT: tf.constant(list(images), dtype=tf.string)})
    except tf.errors.InvalidArgumentError as error:
        raise ImageError(model_error_reason(error.message)) from error
    classes = outputs[signatures.CLASSES_OUTPUT].numpy()
    scores = outputs[signatures.SCORES_OUTPUT].numpy()
    return [
        Prediction(
            path=path,
            classes=[name.decode("utf-8") for name in classes[index]],
            scores=[float(score) for score in scores[index]],
        )
        for index, path in enumerate(paths)
    ]


def tflite_classifier(tflite_file: str) -> Classifier:
    """Runs a ``.tflite`` file (class names from ``labels.txt`` beside it) on one image.

    The image is decoded and resized by ``features.model_pixels``, the chain the
    serving signatures run, so the file sees the pixels training saw. Every class
    is returned, best first.

    Raises:
      FileNotFoundError: If the file or its labels file is missing.
      ValueError: If it is not a TFLite model, or its labels do not fit it.
    """
    model = tflite.OnDeviceModel(tflite_file)
    pixels = tf.function(
        lambda image_bytes: features.model_pixels(image_bytes, model.image_size),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )

    def classify(path: str, image: bytes) -> Prediction:
        try:
            inputs = pixels(tf.constant([image])).numpy()
        except tf.errors.InvalidArgumentError as error:
            raise ImageError(model_error_reason(error.message)) from error
        probabilities = model.probabilities(inputs)[0]
        order = np.argsort(-probabilities, kind="stable")
        return Prediction(
            path=path,
            classes=[model.class_names[index] for index in order],
            scores=[float(probabilities[index]) for index in order],
        )

    return classify


def server_classifier(server: str, model_name: str, use_grpc: bool = False) -> Classifier:
    """Asks TF Serving (REST at ``http://host:8501``, or gRPC at ``host:8500``) about one image per request.

    An error answer for the image becomes an ``ImageError``; a server that cannot
    be reached raises ``ConnectionError`` (it would fail every file).
    """
    from pipeline.predict import serving_client

    call = serving_client.predict_grpc if use_grpc else serving_client.predict_rest

    def classify(path: str, image: bytes) -> Prediction:
        try:
            return call(server, model_name, [path], [image])[0]
        except ValueError as error:
            raise ImageError(model_error_reason(str(error))) from error

    return classify


def predict_files(paths: list[str], classify: Classifier) -> list[Prediction]:
    """Classifies files that must all succeed (e.g. the demo's hold-out images).

    Args:
      paths: The image files.
      classify: ``local_classifier(...)``, ``tflite_classifier(...)`` or ``server_classifier(...)``.

    Raises:
      ValueError: Naming every file that failed and why.
    """
    results = classify_files(paths, classify)
    failures = [result for result in results if isinstance(result, Failure)]
    if failures:
        raise ValueError("; ".join(f"{failure.path}: {failure.reason}" for failure in failures))
    return [result for result in results if isinstance(result, Prediction)]


def format_table(predictions: Sequence[Prediction], top_k: int | None = None) -> str:
    """A plain-text table: path, then the top classes with their scores (all the model gave, or ``top_k``)."""
    rows = [("image", "top classes")]
    for prediction in predictions:
        tops = ", ".join(
            f"{name} {score:.2f}"
            for name, score in zip(prediction.classes[:top_k], prediction.scores[:top_k], strict=True)
        )
        rows.append((prediction.path, tops))
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{path:<{width}}  {tops}" for path, tops in rows)


def format_failures(failures: Sequence[Failure]) -> str:
    """One line per failed file: ``<path>: <reason>``."""
    return "\n".join(f"{failure.path}: {failure.reason}" for failure in failures)
