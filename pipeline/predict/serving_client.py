"""A TF Serving client for the pushed model: REST (JSON, base64) and gRPC.

REST follows TF Serving's documented row format: ``POST
/v1/models/<name>:predict`` with ``{"signature_name": "serving_default",
"instances": [{"b64": "<base64 image>"}, ...]}``; the answer is
``{"predictions": [{"classes": [...], "class_ids": [...], "scores": [...],
"probabilities": [...]}, ...]}``. gRPC sends a ``PredictRequest`` with the
``image_bytes`` string tensor.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from components import signatures
from pipeline.predict.outcomes import Prediction


def rest_request(images: list[bytes]) -> dict[str, Any]:
    """The JSON body of a REST predict call."""
    return {
        "signature_name": signatures.DEFAULT_SIGNATURE,
        "instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images],
    }


def parse_rest_response(body: dict[str, Any], paths: list[str]) -> list[Prediction]:
    """Predictions from a REST answer (row format); raises ValueError on an error answer."""
    if "error" in body:
        raise ValueError(f"TF Serving answered with an error: {body['error']}")
    rows = body.get("predictions")
    if not isinstance(rows, list) or len(rows) != len(paths):
        raise ValueError(f"Expected {len(paths)} predictions, got: {str(body)[:200]}")
    return [
        Prediction(
            path=path,
            classes=[str(name) for name in row[signatures.CLASSES_OUTPUT]],
            scores=[float(s) for s in row[signatures.SCORES_OUTPUT]],
        )
        for path, row in zip(paths, rows, strict=True)
    ]


def predict_rest(
    server: str, model_name: str, paths: list[str], images: list[bytes], timeout: float = 30.0
) -> list[Prediction]:
    """Calls ``<server>/v1/models/<model_name>:predict``.

    Raises:
      ValueError: On an error answer (TF Serving's message is kept) or a malformed one.
      ConnectionError: If the server cannot be reached.
    """
    url = f"{server.rstrip('/')}/v1/models/{model_name}:predict"
    request = urllib.request.Request(
        url, data=json.dumps(rest_request(images)).encode("utf-8"), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (user-given URL)
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        raise ValueError(f"TF Serving at {url} answered {error.code}: {body.get('error', body)}") from error
    except urllib.error.URLError as error:
        raise ConnectionError(f"Cannot reach TF Serving at {url}: {error.reason}") from error
    return parse_rest_response(body, paths)


def grpc_request(images: list[bytes], model_name: str) -> Any:
    """A ``PredictRequest`` for the serving signature."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signatures.DEFAULT_SIGNATURE
    request.inputs[signatures.IMAGE_BYTES_INPUT].CopyFrom(
        tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)])
    )
    return request


def parse_grpc_response(response: Any, paths: list[str]) -> list[Prediction]:
    """Predictions from a ``PredictResponse``."""
    import tensorflow as tf

    classes = tf.make_ndarray(response.outputs[signatures.CLASSES_OUTPUT])
    scores = tf.make_ndarray(response.outputs[signatures.SCORES_OUTPUT])
    return [
        Prediction(
            path=path, classes=[name.decode("utf-8") for name in row_classes], scores=[float(s) for s in row_scores]
        )
        for path, row_classes, row_scores in zip(paths, classes, scores, strict=True)
    ]


def predict_grpc(
    target: str, model_name: str, paths: list[str], images: list[bytes], timeout: float = 30.0
) -> list[Prediction]:
    """Calls PredictionService/Predict at ``host:port``.

    Raises:
      ValueError: With TF Serving's message on INVALID_ARGUMENT (e.g. a bad image).
      ConnectionError: If the server cannot be reached.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(grpc_request(images, model_name), timeout=timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                raise ConnectionError(f"Cannot reach TF Serving at {target}: {error.details()}") from error
            raise ValueError(f"TF Serving at {target} answered {error.code().name}: {error.details()}") from error
    return parse_grpc_response(response, paths)
