"""On-device export: each TFLite variant converts and agrees with the SavedModel; predict --tflite."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from components import signatures
from components.modules import features
from components.serving import tflite
from pipeline.cli import main as cli
from tests.helpers import write

# Least top-1 agreement with the SavedModel on the eval images, per variant.
MIN_AGREEMENT = {"float32": 1.0, "float16": 0.99, "dynamic": 0.9}
UNKNOWN_FORMAT = "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."


@pytest.fixture(scope="module")
def converted(tiny_saved_classifier: dict) -> dict:
    """Each variant's file (with labels) in its own folder, and its conversion seconds."""
    results = {}
    root = os.path.dirname(tiny_saved_classifier["saved_model"])
    for variant in ("float32", "float16", "dynamic"):
        started = time.monotonic()
        files = tflite.export_files(tiny_saved_classifier["saved_model"], variant, tiny_saved_classifier["classes"])
        seconds = time.monotonic() - started
        for name, content in files.items():
            write(os.path.join(root, variant, name), content)
        results[variant] = {"path": os.path.join(root, variant, tflite.TFLITE_FILE), "seconds": seconds}
    return results


def _reference(tiny_saved_classifier: dict) -> tuple[np.ndarray, np.ndarray]:
    """The eval images' serving pixels and the SavedModel's probabilities for them."""
    pixels = features.model_pixels(
        tf.constant(tiny_saved_classifier["eval_images"]), tiny_saved_classifier["image_size"]
    )
    serve = tf.saved_model.load(tiny_saved_classifier["saved_model"]).signatures[signatures.PIXELS_SIGNATURE]
    return pixels.numpy(), serve(**{signatures.PIXELS_INPUT: pixels})[signatures.PROBABILITIES_OUTPUT].numpy()


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic"])
def test_each_variant_agrees_with_the_saved_model(variant: str, converted: dict, tiny_saved_classifier: dict) -> None:
    pixels, expected = _reference(tiny_saved_classifier)
    model = tflite.OnDeviceModel(converted[variant]["path"])
    assert (
        model.class_names == tiny_saved_classifier["classes"]
        and model.image_size == tiny_saved_classifier["image_size"]
    )
    got = np.concatenate([model.probabilities(image[None]) for image in pixels])
    agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    accuracy = float(np.mean(expected.argmax(axis=1) == tiny_saved_classifier["eval_labels"]))
    print(
        f"{variant}: agreement {agreement:.3f} on {len(pixels)} images (SavedModel accuracy {accuracy:.3f}), "
        f"max |p - p_saved| {np.abs(got - expected).max():.2e}, "
        f"{os.path.getsize(converted[variant]['path']) / 1e3:.0f} kB, converted in {converted[variant]['seconds']:.1f} s"
    )
    assert accuracy > 0.6  # a trained model, not a constant one: agreement means something
    assert agreement >= MIN_AGREEMENT[variant]
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-3)
    if variant == "float32":
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_smaller_variants_are_smaller(converted: dict) -> None:
    size = {variant: os.path.getsize(result["path"]) for variant, result in converted.items()}
    assert size["float16"] < 0.6 * size["float32"] and size["dynamic"] < 0.4 * size["float32"]


def test_predict_tflite_prints_the_table_and_names_each_failed_file(
    converted: dict, tiny_saved_classifier: dict, tmp_path: object
) -> None:
    images = tiny_saved_classifier["eval_images"][:3]
    good = [write(f"{tmp_path}/{index}.png", data) for index, data in enumerate(images)]
    text = write(f"{tmp_path}/notes.jpg", b"this is a text file, not a JPEG")
    missing = f"{tmp_path}/missing.png"
    result = CliRunner().invoke(cli.main, ["predict", *good, text, missing, "--tflite", converted["float32"]["path"]])
    assert result.exit_code == 1
    rows = result.stdout.splitlines()
    assert rows[0].startswith("image") and [row.split()[0] for row in rows[1:]] == good
    # Every class, best first; top-1 as the SavedModel's on the same serving pixels.
    _, expected = _reference({**tiny_saved_classifier, "eval_images": images})
    classes = tiny_saved_classifier["classes"]
    assert [row.split()[1] for row in rows[1:]] == [classes[index] for index in expected.argmax(axis=1)]
    assert all(row.count(",") == len(classes) - 1 for row in rows[1:])
    assert result.stderr.splitlines() == [
        f"{text}: {UNKNOWN_FORMAT}",
        f"{missing}: file not found",
        "2 of 5 files failed.",
    ]


def test_predict_tflite_without_its_file_or_labels_is_one_line(converted: dict, tmp_path: object) -> None:
    image = write(f"{tmp_path}/a.png", b"")
    result = CliRunner().invoke(cli.main, ["predict", image, "--tflite", f"{tmp_path}/model.tflite"])
    assert result.exit_code == 1 and result.output.strip() == f"Error: TFLite file not found: {tmp_path}/model.tflite"
    with open(converted["float32"]["path"], "rb") as handle:
        alone = write(f"{tmp_path}/alone/model.tflite", handle.read())
    result = CliRunner().invoke(cli.main, ["predict", image, "--tflite", alone])
    assert result.exit_code == 1 and f"No labels.txt next to {alone}" in result.output
    not_tflite = write(f"{tmp_path}/alone/notes.tflite", b"some notes")
    result = CliRunner().invoke(cli.main, ["predict", image, "--tflite", not_tflite])
    assert result.exit_code == 1 and f"{not_tflite} is not a TFLite model" in result.output
    result = CliRunner().invoke(cli.main, ["predict", image, "--tflite", alone, "--model-dir", str(tmp_path)])
    assert result.exit_code == 2 and "Pass exactly one of --model-dir" in result.output


def test_a_conversion_started_ahead_is_the_one_the_push_takes(
    converted: dict, tiny_saved_classifier: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started early, the conversion gives the push the same bytes, once; nothing started: it converts there."""
    model_dir, classes = tiny_saved_classifier["saved_model"], tiny_saved_classifier["classes"]
    with open(converted["float32"]["path"], "rb") as handle:
        inline = handle.read()
    calls = []
    original = tflite.convert
    monkeypatch.setattr(tflite, "convert", lambda *args: calls.append(args) or original(*args))
    assert tflite.convert_ahead(model_dir, "float32") and not tflite.convert_ahead(model_dir + "/", "float32")
    assert not tflite.convert_ahead(model_dir, "none")
    assert tflite.export_files(model_dir, "float32", classes)[tflite.TFLITE_FILE] == inline
    assert len(calls) == 1  # the background one: the push waited for it instead of converting again
    assert tflite.export_files(model_dir, "float32", classes)[tflite.TFLITE_FILE] == inline
    assert len(calls) == 2  # taken once: a second push converts itself


def test_a_failed_conversion_ahead_fails_the_push_as_it_would_have(tmp_path: object) -> None:
    empty = str(tmp_path)
    assert tflite.convert_ahead(empty, "float16")
    with pytest.raises(OSError, match="SavedModel file does not exist"):
        tflite.export_files(empty, "float16", ["a", "b"])


def test_a_conversion_ahead_that_failed_is_tried_again_in_the_push(
    tiny_saved_classifier: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion that failed beside the Evaluators (say, for memory) does not fail the push by itself."""
    model_dir = tiny_saved_classifier["saved_model"]
    attempts = iter([MemoryError("beside the Evaluator"), b"flatbuffer"])

    def flaky(*_: object) -> bytes:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(tflite, "convert", flaky)
    assert tflite.convert_ahead(model_dir, "dynamic")
    assert tflite.converted(model_dir, "dynamic") == b"flatbuffer"
