"""preprocessing_fn run by tf.Transform on a handful of examples."""

from __future__ import annotations

import io
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.modules import features, transform
from tests.helpers import encode, solid

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)


def _run(raw: list[dict], image_size: int) -> tuple[list[dict], str]:
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.string),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    output_dir = tempfile.mkdtemp()
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform.preprocessing_fn(inputs, {"image_size": image_size})
        )
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    return transformed, output_dir


def test_images_are_resized_jpegs_and_labels_use_the_vocabulary() -> None:
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 230
    raw = [
        {features.IMAGE_KEY: [encode(Image.fromarray(red), "PNG")], features.LABEL_KEY: [b"red"]},
        {features.IMAGE_KEY: [encode(solid((20, 20, 220)), "BMP")], features.LABEL_KEY: [b"blue"]},
        {features.IMAGE_KEY: [encode(solid((20, 20, 220)), "GIF")], features.LABEL_KEY: [b"blue"]},
        {features.IMAGE_KEY: [encode(solid((20, 200, 20), mode="L"), "JPEG")], features.LABEL_KEY: [b"gray"]},
    ]
    transformed, output_dir = _run(raw, image_size=32)

    vocabulary = tft.TFTransformOutput(output_dir).vocabulary_by_name(features.LABEL_VOCAB_NAME)
    assert vocabulary[0] == b"blue" and sorted(vocabulary) == [b"blue", b"gray", b"red"]
    labels = [vocabulary[row[LABEL_XF]] for row in transformed]
    assert labels == [b"red", b"blue", b"blue", b"gray"]

    images = [Image.open(io.BytesIO(row[IMAGE_XF])) for row in transformed]
    assert all((image.format, image.size, image.mode) == ("JPEG", (32, 32), "RGB") for image in images)
    pixels = np.asarray(images[0], np.float32)
    assert np.allclose(pixels.mean(axis=(0, 1)), [230, 0, 0], atol=4)
    decoded = features.decode_transformed(tf.constant([row[IMAGE_XF] for row in transformed]), 32)
    assert decoded.shape == (4, 32, 32, 3) and decoded.dtype == tf.float32


def test_transformed_jpeg_is_compact() -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((224, 224))
    transformed, _ = _run([{features.IMAGE_KEY: [encode(photo, "PNG")], features.LABEL_KEY: [b"x"]}] * 2, 224)
    float32_bytes = 224 * 224 * 3 * 4
    assert len(transformed[0][IMAGE_XF]) < float32_bytes / 10
