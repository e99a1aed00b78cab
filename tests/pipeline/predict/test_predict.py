"""Predict per file: good results are kept, each failure says why, folders expand to their images."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import tensorflow as tf
from click.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.predict import predict
from tests.helpers import encode, solid, write

UNKNOWN_FORMAT = "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."


class _ColourModel(tf.Module):
    """The serving contract of the Trainer's model: encoded images in, top-2 of 3 colour classes out."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def mean_colour(data: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1]) / 255.0

        colours = tf.map_fn(mean_colour, image_bytes, fn_output_signature=tf.TensorSpec([3], tf.float32))
        scores, ids = tf.math.top_k(tf.nn.softmax(colours * 10.0), k=2)
        return {"classes": tf.gather(tf.constant(["red", "green", "blue"]), ids), "scores": scores}


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model base path with one pushed version."""
    base = str(tmp_path_factory.mktemp("serving") / "image_classifier")
    model = _ColourModel()
    tf.saved_model.save(model, os.path.join(base, "1700000000"), signatures={"serving_default": model.serve})
    return base


def _predict(*args: str) -> object:
    return CliRunner().invoke(cli.main, ["predict", *args])


def test_a_mixed_batch_keeps_the_good_prediction_and_names_each_failure(model_base: str, tmp_path: object) -> None:
    good = write(f"{tmp_path}/red.png", encode(solid((250, 10, 10)), "PNG"))
    text = write(f"{tmp_path}/notes.jpg", b"this is a text file, not a JPEG")
    missing = f"{tmp_path}/missing.png"
    result = _predict(good, text, missing, "--model-dir", model_base)
    assert result.exit_code == 1
    rows = result.stdout.splitlines()
    assert rows[0].startswith("image") and len(rows) == 2
    assert rows[1].startswith(good) and rows[1].split()[1] == "red"
    assert result.stderr.splitlines() == [
        f"{text}: {UNKNOWN_FORMAT}",
        f"{missing}: file not found",
        "2 of 3 files failed.",
    ]


def test_a_folder_gives_every_image_inside_sorted(model_base: str, tmp_path: object) -> None:
    folder = str(tmp_path / "photos")
    expected = [
        write(f"{folder}/a/1.png", encode(solid((10, 250, 10)), "PNG")),
        write(f"{folder}/a/2.JPG", encode(solid((10, 10, 250)), "JPEG")),
        write(f"{folder}/b/c/3.gif", encode(solid((250, 10, 10)), "GIF")),
    ]
    write(f"{folder}/.cache/4.png", encode(solid((1, 2, 3)), "PNG"))
    write(f"{folder}/.5.png", encode(solid((1, 2, 3)), "PNG"))
    write(f"{folder}/README.txt", b"not an image")
    assert predict.expand_paths([folder]) == (expected, [])
    result = _predict(folder, "--model-dir", model_base)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == expected
    assert [row.split()[1] for row in rows] == ["green", "blue", "red"]


def test_a_folder_without_images_is_a_failure(tmp_path: object) -> None:
    write(f"{tmp_path}/empty/README.txt", b"text")
    paths, failures = predict.expand_paths([f"{tmp_path}/empty"])
    assert paths == [] and failures[0].reason.startswith("folder holds no image files (.jpg")


def test_all_the_classes_the_model_returns_are_shown_unless_fewer_are_asked(model_base: str, tmp_path: object) -> None:
    image = write(f"{tmp_path}/red.png", encode(solid((250, 10, 10)), "PNG"))
    shown = _predict(image, "--model-dir", model_base).stdout.splitlines()[1]
    assert shown.count(",") == 1  # the model returns its top 2
    one = _predict(image, "--model-dir", model_base, "--top-k", "1").stdout.splitlines()[1]
    assert one.split()[1] == "red" and "," not in one


def test_newest_complete_version_or_the_folder_itself(model_base: str, tmp_path: object) -> None:
    os.makedirs(os.path.join(model_base, "1800000000"))  # incomplete: no saved_model.pb
    try:
        assert predict.resolve_model_dir(model_base) == os.path.join(model_base, "1700000000")
    finally:
        os.rmdir(os.path.join(model_base, "1800000000"))
    version = os.path.join(model_base, "1700000000")
    assert predict.resolve_model_dir(version) == version
    with pytest.raises(FileNotFoundError, match="No SavedModel in") as refused:
        predict.resolve_model_dir(str(tmp_path))
    assert "did you mean" not in str(refused.value)
    # One level too high: the serving directory that holds the model base path.
    serving = os.path.dirname(model_base)
    with pytest.raises(FileNotFoundError, match=f"did you mean --model-dir {re.escape(model_base)}\\?"):
        predict.resolve_model_dir(serving)


def test_the_reason_is_found_in_a_tensorflow_error_message() -> None:
    message = (
        "Graph execution error:\n\nDetected at node map/while/decode_image/DecodeImage defined at (most recent call"
        ' last):\n  File "serve.py", line 3, in serve\n'
        f"{UNKNOWN_FORMAT}\n\t [[{{{{node map/while/decode_image/DecodeImage}}}}]] [Op:__inference_signature_wrapper_397]"
    )
    assert predict.model_error_reason(message) == UNKNOWN_FORMAT
    assert predict.model_error_reason(f"TF Serving answered 400: {UNKNOWN_FORMAT}\n\t [[{{{{node D}}}}]]") == (
        f"TF Serving answered 400: {UNKNOWN_FORMAT}"
    )
    nested = f"{{{{function_node __inference_<lambda>_189}}}} {UNKNOWN_FORMAT}\n\t [[{{{{node map/DecodeImage}}}}]]"
    assert predict.model_error_reason(nested) == UNKNOWN_FORMAT


def _tf_serving(tmp_path: object) -> HTTPServer:
    """A REST server that answers like TF Serving: a prediction, or 400 for a non-image."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            is_png = body["instances"][0]["b64"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
            status, answer = (
                (200, {"predictions": [{"classes": ["red", "blue"], "scores": [0.9, 0.1]}]})
                if is_png
                else (400, {"error": f"{UNKNOWN_FORMAT}\n\t [[{{{{node DecodeImage}}}}]]"})
            )
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_tf_serving_answers_per_file(tmp_path: object) -> None:
    good = write(f"{tmp_path}/red.png", encode(solid((250, 10, 10)), "PNG"))
    text = write(f"{tmp_path}/notes.jpg", b"text")
    server = _tf_serving(tmp_path)
    try:
        result = _predict(good, text, "--server", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].split()[:2] == [good, "red"]
    assert result.stderr.splitlines()[0].startswith(f"{text}: TF Serving at http://127.0.0.1:")
    assert result.stderr.splitlines()[0].endswith(f"answered 400: {UNKNOWN_FORMAT}")


def test_an_unreachable_server_stops_with_one_line(tmp_path: object) -> None:
    image = write(f"{tmp_path}/red.png", encode(solid((250, 10, 10)), "PNG"))
    result = _predict(image, "--server", "http://127.0.0.1:1")
    assert result.exit_code == 1 and "Cannot reach TF Serving at http://127.0.0.1:1" in result.output
