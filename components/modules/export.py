"""The Trainer's export: the serving SavedModel, its signatures and TF Serving's warmup requests.

The export serves raw encoded images (``serving_default``) and tf.Examples
(``serving_examples``), exposes the TFT graph (``transform_features``) for the
Evaluator, and takes decoded pixels (``serve_pixels``, the signature the Pusher
converts to TFLite). The names are the serving contract in
``components/signatures.py``.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.saved import saved_transform_io_v2
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from components import signatures
from components.modules import features
from components.modules.settings import TrainerSettings

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)
WARMUP_IMAGES = 3


def _pixels_spec(image_size: int) -> tf.TensorSpec:
    """float32 pixels [batch, size, size, 3] in [0, 255]: the classifier's traced input and ``serve_pixels``'s."""
    return tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=signatures.PIXELS_INPUT)


def classify_pixels(classifier: keras.Model, image_size: int) -> Any:
    """The classifier traced once, as a concrete function of float32 pixels in [0, 255].

    Every signature calls this one function, so Keras traces the model once per export
    instead of once per signature (benchmarks/README.md, "Model export").
    """

    @tf.function(input_signature=[_pixels_spec(image_size)], autograph=False)
    def classify(pixels: tf.Tensor) -> tf.Tensor:
        return classifier(pixels, training=False)

    return classify.get_concrete_function()


def pixel_signature(classify: Any, image_size: int) -> Any:
    """``serve_pixels``: float32 pixels [batch, size, size, 3] in [0, 255] -> ``probabilities``.

    No decode or TFT ops, so TFLite can convert it; ``features.model_pixels``
    makes its input from image bytes exactly as the serving signatures do.
    ``classify`` is the traced classifier (`classify_pixels`).
    """

    @tf.function(input_signature=[_pixels_spec(image_size)], autograph=False)
    def serve_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {signatures.PROBABILITIES_OUTPUT: classify(pixels)}

    return serve_pixels.get_concrete_function()


def _serving_signatures(
    classifier: keras.Model,
    transform: TransformGraph,
    tf_transform_output: tft.TFTransformOutput,
    class_names: list[str],
    image_size: int,
    top_k: int,
) -> dict[str, Any]:
    """serving_default (encoded images), serving_examples, transform_features and serve_pixels."""
    names = tf.constant(class_names)
    k = min(top_k, len(class_names))
    raw_spec = tf_transform_output.raw_feature_spec()
    image_spec = {features.IMAGE_KEY: raw_spec[features.IMAGE_KEY]}
    classify = classify_pixels(classifier, image_size)

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = transform(raw_features)
        probabilities = classify(features.decode_transformed(transformed[IMAGE_XF], image_size))
        scores, class_ids = tf.math.top_k(probabilities, k=k)
        return {
            signatures.CLASSES_OUTPUT: tf.gather(names, class_ids),
            signatures.CLASS_IDS_OUTPUT: class_ids,
            signatures.SCORES_OUTPUT: scores,
            signatures.PROBABILITIES_OUTPUT: probabilities,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)], autograph=False)
    def serve_images(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict({features.IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)], autograph=False)
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(examples, image_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)], autograph=False)
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, raw_spec)
        return {LABEL_XF: transform(parsed)[LABEL_XF]}

    return {
        signatures.DEFAULT_SIGNATURE: serve_images.get_concrete_function(),
        signatures.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        signatures.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        signatures.PIXELS_SIGNATURE: pixel_signature(classify, image_size),
    }


class TransformGraph(tf.Module):
    """The Transform graph as the serving signatures call it, saved without a Keras trace.

    ``tft_output.transform_features_layer()`` is a tf_keras Model; saving one makes
    tf_keras trace its call again through AutoGraph for a default signature we never
    use (about 6 s of the export). This module applies the same loader the layer
    calls and tracks the same loaded graph (its vocabulary assets and tables), which
    is all the signatures capture.
    """

    def __init__(self, tft_output: tft.TFTransformOutput) -> None:
        super().__init__()
        self._loader = saved_transform_io_v2.SavedModelLoader(tft_output.transform_savedmodel_dir)
        if self._loader.load_v2_in_compat:
            raise ValueError(
                f"The Transform graph at {tft_output.transform_savedmodel_dir} was saved the TF1 way; this "
                "project's Transform writes TF2 graphs. Re-run Transform with this version."
            )
        self.transform_graph = self._loader._imported  # noqa: SLF001 (what TransformFeaturesLayer tracks)

    def __call__(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Transformed features for ``raw_features`` (missing raw features are pruned, as in the layer)."""
        return self._loader.apply_transform_model(raw_features)


def export_serving_model(
    classifier: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    class_names: list[str],
    settings: TrainerSettings,
    path: str,
) -> None:
    """Saves the serving SavedModel: the signatures, the classifier's weights and the TFT graph.

    The root is a plain ``tf.Module`` holding what the signatures capture, not the Keras
    model: saving the Keras object makes TensorFlow walk and trace its layers too, which
    doubled the save time and the load time (benchmarks/README.md, "Model export").
    Everything that loads the model (TF Serving, TFMA, ``predict``) uses the signatures.
    """
    root = tf.Module()
    root.transform = TransformGraph(tf_transform_output)
    # The tf.Variables under the Keras variables: the signatures capture these, and
    # saving them directly skips Keras's per-variable export hook (0.7 s of the save).
    root.model_variables = [variable.value for variable in classifier.variables]
    serving = _serving_signatures(
        classifier, root.transform, tf_transform_output, class_names, settings.image_size, settings.top_k
    )
    tf.saved_model.save(root, path, signatures=serving)


def write_warmup_requests(
    fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, count: int = WARMUP_IMAGES
) -> str:
    """``assets.extra/tf_serving_warmup_requests``: validation images as serving_default requests.

    TF Serving replays them when it loads a version, so the first real request
    does not pay for graph initialisation. One batch-1 request per image, then
    one request with all of them.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    dataset = fn_args.data_accessor.tf_dataset_factory(
        fn_args.eval_files,
        tfxio.TensorFlowDatasetOptions(batch_size=count, num_epochs=1, shuffle=False),
        tf_transform_output.transformed_metadata.schema,
    )
    images = [bytes(image) for image in next(iter(dataset))[IMAGE_XF].numpy().ravel()]
    path = os.path.join(fn_args.serving_model_dir, signatures.WARMUP_REQUESTS_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for batch in [[image] for image in images] + [images]:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signatures.DEFAULT_SIGNATURE
            request.inputs[signatures.IMAGE_BYTES_INPUT].CopyFrom(
                tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)])
            )
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
