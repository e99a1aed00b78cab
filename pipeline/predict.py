"""Classifies image files with a pushed SavedModel, the way TF Serving would."""

from __future__ import annotations

import dataclasses
import os
import re

import tensorflow as tf

_VERSION = re.compile(r"^\d+$")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top classes of one image."""

    path: str
    classes: list[str]
    scores: list[float]


def resolve_model_dir(model_dir: str) -> str:
    """A SavedModel folder, or the newest numeric version under a model base path.

    Raises:
      FileNotFoundError: If neither a SavedModel nor a version folder is there.
    """
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    if tf.io.gfile.isdir(model_dir):
        versions = [name.rstrip("/") for name in tf.io.gfile.listdir(model_dir)]
        versions = sorted((v for v in versions if _VERSION.match(v)), key=int)
        for version in reversed(versions):
            candidate = os.path.join(model_dir, version)
            if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
                return candidate
    raise FileNotFoundError(
        f"No SavedModel in {model_dir!r}: expected saved_model.pb there or in a numeric version sub-folder."
    )


def read_images(paths: list[str]) -> list[bytes]:
    """The encoded bytes of each file.

    Raises:
      FileNotFoundError: Naming the first missing file.
    """
    images = []
    for path in paths:
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"Image not found: {path}")
        with tf.io.gfile.GFile(path, "rb") as handle:
            images.append(handle.read())
    return images


def predict_files(model_dir: str, paths: list[str]) -> list[Prediction]:
    """Runs ``serving_default`` on the encoded bytes of each file, one request per file.

    Raises:
      FileNotFoundError: If the model or an image file is missing.
      ValueError: If a file is not a decodable image (the model's message is kept).
    """
    model = tf.saved_model.load(resolve_model_dir(model_dir))
    serve = model.signatures["serving_default"]
    predictions = []
    for path, image in zip(paths, read_images(paths), strict=True):
        try:
            outputs = serve(image_bytes=tf.constant([image]))
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"{path}: the model cannot decode it: {error.message.splitlines()[0]}") from error
        predictions.append(
            Prediction(
                path=path,
                classes=[name.decode("utf-8") for name in outputs["classes"].numpy()[0]],
                scores=[float(score) for score in outputs["scores"].numpy()[0]],
            )
        )
    return predictions


def format_table(predictions: list[Prediction], top_k: int = 3) -> str:
    """A plain-text table: path, then the top classes with their scores."""
    rows = [("image", "top classes")]
    for prediction in predictions:
        tops = ", ".join(
            f"{name} {score:.2f}"
            for name, score in zip(prediction.classes[:top_k], prediction.scores[:top_k], strict=True)
        )
        rows.append((prediction.path, tops))
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{path:<{width}}  {tops}" for path, tops in rows)
