"""The serving contract's names: the exported SavedModel's signatures, inputs and outputs.

The Trainer's export (``components/modules/export.py``) writes these names; the
Evaluator's config, the Pusher's TFLite conversion, ``predict`` and the TF Serving
client read them. This is their one home. Plain constants, no imports from the
project (and no TensorFlow), so every layer may import it.

Signatures of the exported model:

* :data:`DEFAULT_SIGNATURE`: encoded images (:data:`IMAGE_BYTES_INPUT`) -> :data:`PREDICTION_OUTPUTS`.
* :data:`EXAMPLES_SIGNATURE`: serialized tf.Examples (:data:`EXAMPLES_INPUT`) -> :data:`PREDICTION_OUTPUTS`;
  the Evaluator's model signature.
* :data:`TRANSFORM_SIGNATURE`: serialized tf.Examples -> the transformed label; the
  Evaluator's preprocessing function.
* :data:`PIXELS_SIGNATURE`: float32 pixels [batch, size, size, 3] in [0, 255]
  (:data:`PIXELS_INPUT`) -> :data:`PROBABILITIES_OUTPUT`; no decode ops, so TFLite can
  convert it (the TFLite file keeps its input and output names).
"""

from __future__ import annotations

from typing import Final

# Signature names.
DEFAULT_SIGNATURE: Final = "serving_default"
EXAMPLES_SIGNATURE: Final = "serving_examples"
TRANSFORM_SIGNATURE: Final = "transform_features"
PIXELS_SIGNATURE: Final = "serve_pixels"

# Input names.
IMAGE_BYTES_INPUT: Final = "image_bytes"
EXAMPLES_INPUT: Final = "examples"
PIXELS_INPUT: Final = "pixels"

# Output names of the prediction signatures (default and examples); the pixel
# signature returns only the probabilities.
CLASSES_OUTPUT: Final = "classes"
CLASS_IDS_OUTPUT: Final = "class_ids"
SCORES_OUTPUT: Final = "scores"
PROBABILITIES_OUTPUT: Final = "probabilities"
PREDICTION_OUTPUTS: Final = (CLASSES_OUTPUT, CLASS_IDS_OUTPUT, SCORES_OUTPUT, PROBABILITIES_OUTPUT)

# A SavedModel's extra-assets folder: copied with the version, not loaded as part of the model;
# TF Serving reads its tf_serving_warmup_requests (tensorflow/cc/saved_model/constants.h,
# kSavedModelAssetsExtraDirectory; tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc;
# TFX spells it EXTRA_ASSETS_DIRECTORY in tfx/components/trainer/rewriting/tflite_rewriter.py).
# The version folder layout built on it is components/serving/repository.py's.
ASSETS_EXTRA: Final = "assets.extra"
# TF Serving replays the requests in this file of the SavedModel when it loads a version.
WARMUP_REQUESTS_FILE: Final = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"
