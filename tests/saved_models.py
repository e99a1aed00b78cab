"""Small feature-vector SavedModels made on the fly, as TF Hub and Keras export them (tests cannot download)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

FEATURES = 8


def tiny_feature_extractor(size: int, seed: int = 0) -> keras.Model:
    """conv -> BatchNorm (non-trivial moving statistics) -> ReLU -> global pooling: ``[b, size, size, 3] -> [b, 8]``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(FEATURES, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs, name="tiny_features")
    bn = model.get_layer("bn")
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.normal(0.0, 0.1, FEATURES).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 1.5, FEATURES).astype("float32"))
    return model


def export_hub_style(model: keras.Model, path: str) -> str:
    """TF Hub's reusable SavedModel: ``obj(images, training=...)``, ``variables``, ``trainable_variables``.

    The call in training mode would update the BatchNorm statistics; the backbone must never use it.
    """
    size = model.input_shape[1]
    root = tf.__internal__.tracking.AutoTrackable()
    root.model = model
    root.variables = list(model.variables)
    root.trainable_variables = list(model.trainable_variables)
    root.regularization_losses = []

    @tf.function
    def call(images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return model(images, training=training)

    spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    for training in (False, True):
        call.get_concrete_function(spec, training)
    root.__call__ = call
    tf.saved_model.save(root, path)
    return path


def export_keras(model: keras.Model, path: str) -> str:
    """Keras 3 ``model.export``: a ``serve`` endpoint, traced in inference mode."""
    model.export(path, verbose=False)
    return path


def export_signature_only(model: keras.Model, path: str) -> str:
    """Only a ``serving_default`` signature (one named input, a dict out), as many TF2 SavedModels are."""
    size = model.input_shape[1]
    root = tf.Module()
    root.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"feature_vector": model(images, training=False)}

    tf.saved_model.save(root, path, signatures={"serving_default": serve.get_concrete_function()})
    return path
