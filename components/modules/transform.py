"""TFX Transform user module: decode, resize and re-encode images; label vocabulary."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from components.modules import features
from components.modules.settings import TransformSettings


# TFX Transform will call this function.
def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any] | None = None) -> dict[str, tf.Tensor]:
    """Maps raw features to the model's features.

    Args:
      inputs: Raw features from the ImageFolder ExampleGen; ``image`` and ``label``
        are ``[batch, 1]`` strings (see ``schemas/schema.pbtxt``).
      custom_config: :class:`TransformSettings` as a dict, from the pipeline config.

    Returns:
      ``image_xf``: the image resized to ``image_size`` squared, JPEG-encoded
      (see ``features.py``); ``label_xf``: the class index in the TFT vocabulary
      ``label_vocab``, which travels with the model so serving returns class names.
      The pipeline analyzes every split, so every ingested class has its own
      index whichever split its images fell in (``default_value`` is never used).
    """
    image_size = TransformSettings.model_validate(custom_config or {}).image_size
    image_bytes = tf.reshape(inputs[features.IMAGE_KEY], [-1])
    resized = features.decode_and_resize(image_bytes, image_size)
    outputs = {features.transformed_name(features.IMAGE_KEY): features.encode_transformed(resized)}
    label = tf.reshape(inputs[features.LABEL_KEY], [-1])
    outputs[features.transformed_name(features.LABEL_KEY)] = tft.compute_and_apply_vocabulary(
        label, vocab_filename=features.LABEL_VOCAB_NAME, num_oov_buckets=0, default_value=-1
    )
    return outputs
