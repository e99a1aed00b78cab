"""Feature keys and the image encodings shared by ingest, Transform, Trainer and serving.

This is the one home of feature names. The transformed image format is chosen
here too (see README, "Transformed format"): the resized image is stored as a
JPEG at quality 95, about 25x smaller than float32 pixels. Serving runs the same
TFT graph, so training and serving see the same pixels.
"""

from __future__ import annotations

import tensorflow as tf

# Raw features written by the ImageFolder ExampleGen.
IMAGE_KEY = "image"
LABEL_KEY = "label"
PATH_KEY = "path"

# Name of the TFT vocabulary holding the class names (ordered by class index).
LABEL_VOCAB_NAME = "label_vocab"
TRANSFORMED_JPEG_QUALITY = 95
# The exported signatures' names (the pixel signature included) are in components/signatures.py.


def transformed_name(key: str) -> str:
    """Name of a feature after Transform."""
    return f"{key}_xf"


def decode_and_resize(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes encoded images (JPEG/PNG/GIF/BMP) and resizes them.

    Args:
      image_bytes: String tensor of shape [batch] with encoded images.
      image_size: Side of the square output.

    Returns:
      uint8 tensor [batch, image_size, image_size, 3]. GIFs use their first frame,
      grayscale and RGBA become RGB.
    """

    def _one(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        resized = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    return tf.map_fn(
        _one,
        image_bytes,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
    )


def encode_transformed(images: tf.Tensor) -> tf.Tensor:
    """uint8 [batch, h, w, 3] -> JPEG strings [batch] (the transformed format)."""
    return tf.map_fn(
        lambda image: tf.io.encode_jpeg(image, quality=TRANSFORMED_JPEG_QUALITY),
        images,
        fn_output_signature=tf.TensorSpec([], tf.string),
    )


def decode_transformed(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG strings [batch] -> float32 pixels in [0, 255], [batch, size, size, 3]."""

    def _one(image: tf.Tensor) -> tf.Tensor:
        decoded = tf.io.decode_jpeg(image, channels=3)
        return tf.cast(tf.reshape(decoded, [image_size, image_size, 3]), tf.float32)

    return tf.map_fn(
        _one,
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )


def model_pixels(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded images [batch] -> the pixels the classifier sees at serving time.

    The serving signatures run Transform's graph (``decode_and_resize``, then
    ``encode_transformed``) and the Trainer's ``decode_transformed``; this is the
    same chain outside the TFT graph, for models that take pixels (the TFLite
    file's ``serve_pixels``), so they see exactly the pixels training saw.

    Returns:
      float32 [batch, image_size, image_size, 3] in [0, 255].
    """
    return decode_transformed(encode_transformed(decode_and_resize(image_bytes, image_size)), image_size)
