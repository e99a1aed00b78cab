"""The BulkInferrer's test predictions: TFX's executor writes them as the graph configures it, the reader reads them."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf
from tfx.components.bulk_inferrer import executor as bulk_inferrer
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import signatures
from components.evaluation import inference_result
from components.evaluation.inference_result import ImagePrediction
from components.modules import features
from tests.helpers import encode, solid

CLASSES = ("red", "green", "blue")
COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


class _ColourModel(tf.Module):
    """The project's ``serving_examples`` contract on a model that answers the image's strongest channel."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        images = tf.map_fn(
            lambda encoded: tf.cast(tf.io.decode_png(encoded, channels=3), tf.float32),
            parsed[features.IMAGE_KEY],
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32),
        )
        probabilities = tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]) / 50.0)
        scores, class_ids = tf.math.top_k(probabilities, k=2)
        return {
            signatures.CLASSES_OUTPUT: tf.gather(tf.constant(CLASSES), class_ids),
            signatures.CLASS_IDS_OUTPUT: class_ids,
            signatures.SCORES_OUTPUT: scores,
            signatures.PROBABILITIES_OUTPUT: probabilities,
        }


def _example(path: str, label: str, colour: str) -> bytes:
    values = {
        features.IMAGE_KEY: encode(solid(COLOURS[colour], size=8), "PNG"),
        features.LABEL_KEY: label.encode(),
        features.PATH_KEY: path.encode(),
    }
    feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])) for key, value in values.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# (path, true label, colour the image shows): the model answers the colour.
TEST_IMAGES = [
    ("red/a.png", "red", "red"),
    ("red/b.png", "red", "blue"),  # wrong
    ("green/a.png", "green", "green"),
    ("green/b.png", "green", "green"),
    ("green/c.png", "green", "red"),  # wrong
    ("blue/a.png", "blue", "blue"),
    ("blue/b.png", "blue", "green"),  # wrong
]


def _run_bulk_inferrer(root: str, test_images: list[tuple[str, str, str]]) -> str:
    """TFX's BulkInferrer executor with the graph's specs, on a raw Examples artifact; returns the result's URI."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "test"])
    for split, images in (("test", test_images), ("train", [("red/t.png", "green", "red")])):
        folder = os.path.join(examples.uri, f"Split-{split}")
        os.makedirs(folder)
        with tf.io.TFRecordWriter(os.path.join(folder, "data.gz"), options="GZIP") as writer:
            for image in images:
                writer.write(_example(*image))
    model = standard_artifacts.Model()
    model.uri = os.path.join(root, "model")
    module = _ColourModel()
    tf.saved_model.save(
        module,
        os.path.join(model.uri, "Format-Serving"),
        signatures={signatures.EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function()},
    )
    result = standard_artifacts.InferenceResult()
    result.uri = os.path.join(root, "inference")
    bulk_inferrer.Executor().Do(
        {"examples": [examples], "model": [model]},
        {"inference_result": [result]},
        {
            "data_spec": proto_utils.proto_to_json(inference_result.data_spec()),
            "model_spec": proto_utils.proto_to_json(inference_result.model_spec()),
        },
    )
    return result.uri


@pytest.fixture(scope="module")
def inference_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _run_bulk_inferrer(str(tmp_path_factory.mktemp("bulk")), TEST_IMAGES)


def test_reader_returns_every_test_prediction_with_its_image(inference_uri: str) -> None:
    predictions = {p.path: p for p in inference_result.read_predictions(inference_uri, CLASSES)}
    assert sorted(predictions) == sorted(path for path, _, _ in TEST_IMAGES)  # test only, each once
    for path, label, colour in TEST_IMAGES:
        prediction = predictions[path]
        assert (prediction.label, prediction.predicted) == (label, colour)
        assert prediction.misclassified == (label != colour)
        assert 0.5 < prediction.probability <= 1.0
        assert prediction.image == encode(solid(COLOURS[colour], size=8), "PNG")
        if label == colour:
            assert prediction.label_probability == pytest.approx(prediction.probability)
        else:
            assert prediction.label_probability < 0.5
    unknown = next(iter(inference_result.read_predictions(inference_uri)))
    assert unknown.label_probability is None  # no class names: the true class's probability is unknown


def test_summary_counts_all_keeps_the_worst_mistakes_and_examples_per_class(inference_uri: str) -> None:
    predictions = list(inference_result.read_predictions(inference_uri, CLASSES))
    summary = inference_result.summarize(predictions, max_mistakes=2, per_class=2, max_classes=2)
    assert (summary.total, summary.misclassified, summary.not_shown, summary.classes) == (7, 3, 1, 3)
    wrong = sorted((p for p in predictions if p.misclassified), key=lambda p: p.label_probability)
    assert summary.mistakes == wrong[:2]
    assert summary.mistakes[0].label_probability <= summary.mistakes[1].label_probability
    assert {label: [p.path for p in kept] for label, kept in summary.examples.items()} == {
        "blue": ["blue/a.png", "blue/b.png"],
        "green": ["green/a.png", "green/b.png"],
    }
    everything = inference_result.summarize(predictions)
    assert len(everything.mistakes) == everything.misclassified == 3 and everything.not_shown == 0
    assert [p.path for p in everything.examples["green"]] == ["green/a.png", "green/b.png", "green/c.png"]


def test_worst_first_without_class_names_is_the_most_confident_mistake() -> None:
    def wrong(path: str, probability: float) -> ImagePrediction:
        return ImagePrediction(path=path, label="cat", predicted="dog", probability=probability)

    summary = inference_result.summarize([wrong("a", 0.6), wrong("b", 0.9), wrong("c", 0.7)], max_mistakes=2)
    assert [p.path for p in summary.mistakes] == ["b", "c"] and summary.not_shown == 1


def test_an_empty_result_names_the_artifact(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError, match=f"prediction_logs-\\* in the InferenceResult {tmp_path}"):
        list(inference_result.read_predictions(str(tmp_path)))
