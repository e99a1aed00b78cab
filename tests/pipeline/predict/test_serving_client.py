"""The TF Serving client against loopback servers speaking TF Serving's documented formats."""

from __future__ import annotations

import base64
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from pipeline.predict import serving_client

IMAGES = [b"\xff\xd8jpeg-bytes", b"\x89PNG-bytes"]
PATHS = ["a.jpg", "b.png"]
ROWS = [
    {"classes": ["cat", "dog"], "class_ids": [0, 1], "scores": [0.9, 0.1], "probabilities": [0.9, 0.1]},
    {"classes": ["dog", "cat"], "class_ids": [1, 0], "scores": [0.7, 0.3], "probabilities": [0.3, 0.7]},
]


def test_rest_request_uses_the_b64_row_format() -> None:
    body = serving_client.rest_request(IMAGES)
    assert body["signature_name"] == "serving_default"
    assert [base64.b64decode(row["b64"]) for row in body["instances"]] == IMAGES


def _serve(status: int, answer: dict, seen: list) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_rest_round_trip() -> None:
    seen: list = []
    server = _serve(200, {"predictions": ROWS}, seen)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        predictions = serving_client.predict_rest(url, "image_classifier", PATHS, IMAGES, timeout=5)
    finally:
        server.shutdown()
    assert seen[0][0] == "/v1/models/image_classifier:predict"
    assert seen[0][1] == serving_client.rest_request(IMAGES)
    assert [(p.path, p.classes[0], p.scores[0]) for p in predictions] == [("a.jpg", "cat", 0.9), ("b.png", "dog", 0.7)]


def test_rest_error_keeps_tf_serving_message() -> None:
    error = {"error": "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."}
    server = _serve(400, error, [])
    try:
        with pytest.raises(ValueError, match="answered 400: Unknown image file format"):
            serving_client.predict_rest(f"http://127.0.0.1:{server.server_address[1]}", "m", PATHS, IMAGES, timeout=5)
    finally:
        server.shutdown()
    with pytest.raises(ConnectionError, match="Cannot reach TF Serving"):
        serving_client.predict_rest("http://127.0.0.1:9", "m", PATHS, IMAGES, timeout=5)


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.requests: list = []

    def Predict(  # noqa: N802 (gRPC API)
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        self.requests.append(request)
        images = tf.make_ndarray(request.inputs["image_bytes"])
        if any(not image.startswith(b"\xff") and not image.startswith(b"\x89") for image in images):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.",
            )
        response = predict_pb2.PredictResponse()
        response.outputs["classes"].CopyFrom(tf.make_tensor_proto([row["classes"] for row in ROWS]))
        response.outputs["scores"].CopyFrom(tf.make_tensor_proto([row["scores"] for row in ROWS], dtype=tf.float32))
        return response


def test_grpc_round_trip_and_invalid_argument() -> None:
    servicer = _Servicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        predictions = serving_client.predict_grpc(f"127.0.0.1:{port}", "image_classifier", PATHS, IMAGES, timeout=5)
        with pytest.raises(ValueError, match="INVALID_ARGUMENT: Unknown image file format"):
            serving_client.predict_grpc(f"127.0.0.1:{port}", "image_classifier", ["x.txt"], [b"text"], timeout=5)
    finally:
        server.stop(0)
    request = servicer.requests[0]
    assert (request.model_spec.name, request.model_spec.signature_name) == ("image_classifier", "serving_default")
    assert list(tf.make_ndarray(request.inputs["image_bytes"])) == IMAGES
    assert [(p.classes, p.scores[1]) for p in predictions][1] == (["dog", "cat"], pytest.approx(0.3))
