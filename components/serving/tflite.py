"""On-device export: a pushed model as a TFLite file, with its class names beside it.

The Pusher converts the SavedModel's pixel signature (``signatures.PIXELS_SIGNATURE``:
float32 pixels in [0, 255] -> probabilities; the image-bytes signatures decode with
ops TFLite lacks) and writes ``model.tflite`` and ``labels.txt`` (class names, one
per line, in the order of the model's outputs) into the version folder before
the folder appears. ``OnDeviceModel`` runs such a file (``predict --tflite``, the
benchmark); ``features.model_pixels`` makes its input from image bytes exactly as
the serving signatures do.

Variants: ``float32`` (the SavedModel's numbers), ``float16`` (weights stored in
half precision, half the size) and ``dynamic`` (weights quantised to int8, a third
to a quarter of the size; activations stay float), or ``none``.

The conversion can start early (:func:`convert_ahead`): the local runner starts it in a
background thread as soon as the Trainer has exported, so it runs while the Evaluators
judge the model (one core is free then); :func:`export_files` takes its result, or
converts there and then when nothing was started. Either way the bytes come from the
same :func:`convert` of the same SavedModel.

TensorFlow is imported inside the functions (``components/signatures.py`` needs
none): ``pipeline/config/pipeline_config.py`` types its ``tflite`` field with
:data:`TfliteVariant` and validates a config without TensorFlow.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
import typing
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from components import signatures
from components.modules import log_names

# Where the conversion ran goes to the run's log file; the Pusher's console line says what was written.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.tflite")

TfliteVariant = Literal["none", "float32", "float16", "dynamic"]
VARIANTS: tuple[str, ...] = typing.get_args(TfliteVariant)
TFLITE_FILE = "model.tflite"
LABELS_FILE = "labels.txt"


class ConversionError(RuntimeError):
    """A model cannot be converted to TFLite; the message says what to do."""


# Conversions started ahead, by (SavedModel folder, variant); export_files takes each one once.
_AHEAD: dict[tuple[str, str], concurrent.futures.Future] = {}
_AHEAD_LOCK = threading.Lock()


def _key(saved_model_dir: str, variant: str) -> tuple[str, str]:
    return os.path.abspath(saved_model_dir.rstrip("/")), variant


def convert_ahead(saved_model_dir: str, variant: TfliteVariant) -> bool:
    """Starts :func:`convert` in a background thread; :func:`export_files` takes the result.

    The thread is not a daemon: a process that ends first waits for it (at most the
    conversion's few seconds), so no conversion is cut off inside TensorFlow. If it
    fails, :func:`converted` converts again where the push needs it, so a push fails
    only as it would have without it. A result nobody takes is dropped with
    :func:`discard_ahead`.

    Returns:
      Whether a conversion was started (not for ``none``, nor twice for the same model and variant).
    """
    if variant == "none":
        return False
    key = _key(saved_model_dir, variant)
    with _AHEAD_LOCK:
        if key in _AHEAD:
            return False
        future: concurrent.futures.Future = concurrent.futures.Future()
        _AHEAD[key] = future

    def run() -> None:
        started = time.monotonic()
        try:
            future.set_result((convert(saved_model_dir, variant), time.monotonic() - started))
        except BaseException as error:  # noqa: BLE001 (handed to whoever takes the result)
            future.set_exception(error)

    threading.Thread(target=run, name=f"tflite-{variant}", daemon=False).start()
    _file_log.info("TFLite (%s): converting %s in the background.", variant, saved_model_dir)
    return True


def _take_ahead(saved_model_dir: str, variant: str) -> concurrent.futures.Future | None:
    with _AHEAD_LOCK:
        return _AHEAD.pop(_key(saved_model_dir, variant), None)


def discard_ahead(saved_model_dir: str, variant: str) -> bool:
    """Forgets a conversion started ahead that no push took (a refused or held-back model); returns whether
    there was one. A thread still running finishes, and its result is then freed."""
    return _take_ahead(saved_model_dir, variant) is not None


def converted(saved_model_dir: str, variant: TfliteVariant) -> bytes:
    """The flatbuffer: the conversion started ahead for this model and variant (waited for), else a new one.

    A conversion ahead that failed is tried again here (it may have failed for want of
    memory beside the Evaluators); a model that cannot be converted fails the same way.

    Raises:
      ValueError, ConversionError: As :func:`convert`.
    """
    ahead = _take_ahead(saved_model_dir, variant)
    if ahead is None:
        return convert(saved_model_dir, variant)
    waited = time.monotonic()
    try:
        flatbuffer, seconds = ahead.result()
    except Exception as error:  # noqa: BLE001 (converted again below; a real problem raises there)
        logging.warning("TFLite (%s): the conversion ahead failed (%s); converting again.", variant, error)
        return convert(saved_model_dir, variant)
    _file_log.info(
        "TFLite (%s): converted ahead in %.1f s, beside the other steps; waited %.1f s for it.",
        variant,
        seconds,
        time.monotonic() - waited,
    )
    return flatbuffer


def convert(saved_model_dir: str, variant: TfliteVariant) -> bytes:
    """The TFLite flatbuffer of the SavedModel's pixel signature.

    Raises:
      ValueError: On an unknown variant, or ``none``.
      ConversionError: If the SavedModel has no pixel signature.
    """
    import tensorflow as tf

    if variant not in VARIANTS or variant == "none":
        raise ValueError(
            f"Unknown TFLite variant. Expected one of {[v for v in VARIANTS if v != 'none']}. "
            f"Received: variant={variant!r}"
        )
    loaded = tf.saved_model.load(saved_model_dir)
    if signatures.PIXELS_SIGNATURE not in loaded.signatures:
        raise ConversionError(
            f"The model at {saved_model_dir} has no {signatures.PIXELS_SIGNATURE!r} signature (it was exported "
            f"before TFLite support; signatures: {sorted(loaded.signatures)}): retrain it, or set tflite: none."
        )
    # Not from_saved_model: under TF 2.16 it aborted the whole process on Keras 3 variables ("LLVM
    # ERROR: Failed to infer result type(s)", tensorflow/tensorflow#63987); under TF 2.21 it converts
    # but drops the weights (a 0.19 MB file for MobileNetV2 0.35 that outputs NaN, where this gives
    # 1.6 MB agreeing with the SavedModel to 1e-7). The concrete function converts correctly.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures[signatures.PIXELS_SIGNATURE]], loaded
    )
    if variant in ("float16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def export_files(saved_model_dir: str, variant: TfliteVariant, class_names: Sequence[str]) -> dict[str, bytes]:
    """``model.tflite`` and ``labels.txt`` for a version folder (none for ``none``).

    Args:
      saved_model_dir: The SavedModel to convert.
      variant: The configured variant.
      class_names: The model's classes in output order (``atomic_pusher.class_names``).
    """
    if variant == "none":
        return {}
    labels = "".join(f"{name}\n" for name in class_names).encode("utf-8")
    return {TFLITE_FILE: converted(saved_model_dir, variant), LABELS_FILE: labels}


def read_labels(tflite_path: str) -> list[str]:
    """The class names in ``labels.txt`` next to a ``.tflite`` file.

    Raises:
      FileNotFoundError: If there is no labels file there.
    """
    import tensorflow as tf

    path = os.path.join(os.path.dirname(tflite_path), LABELS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No {LABELS_FILE} next to {tflite_path}: the Pusher writes the class names there "
            "(one per line, in the order of the model's outputs)."
        )
    with tf.io.gfile.GFile(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


class OnDeviceModel:
    """A ``.tflite`` classifier and its class names, run with the TFLite interpreter.

    Attributes:
      image_size: Side of the square pixel input.
      class_names: One per output, from ``labels.txt`` beside the file.
    """

    def __init__(self, path: str, num_threads: int | None = None) -> None:
        """Loads the file and its labels.

        Raises:
          FileNotFoundError: If the file or its labels file is missing.
          ValueError: If the file is not a TFLite model, or its labels do not match its outputs.
        """
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"TFLite file not found: {path}")
        with tf.io.gfile.GFile(path, "rb") as handle:
            content = handle.read()
        try:
            interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
        except ValueError as error:
            raise ValueError(f"{path} is not a TFLite model: {str(error).splitlines()[0]}") from error
        self._run: Any = interpreter.get_signature_runner()
        self._input, self._output = signatures.PIXELS_INPUT, signatures.PROBABILITIES_OUTPUT
        shape = self._run.get_input_details()[self._input]["shape"]
        self.image_size = int(shape[1])
        self.class_names = read_labels(path)
        outputs = int(self._run.get_output_details()[self._output]["shape"][-1])
        if outputs != len(self.class_names):
            raise ValueError(
                f"{path} has {outputs} outputs but its {LABELS_FILE} names {len(self.class_names)} classes: "
                "push the model again."
            )

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels [batch, size, size, 3] in [0, 255] -> probabilities [batch, classes]."""
        return self._run(**{self._input: np.asarray(pixels, np.float32)})[self._output]
