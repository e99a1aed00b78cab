"""The Trainer's input: the transformed ``train`` and ``validation`` splits as Keras batches.

Each split is counted first (one pass over the labels), so every epoch has a
known length; the configured augmentation is added here when XLA compiles the
training step (the random layers cannot be compiled).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import schema_utils
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from components.modules import features, log_names
from components.modules import model as model_lib
from components.modules.settings import TrainerSettings

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)
COUNT_BATCH = 1024
# Details of the run that belong in its log file, not on the console.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.trainer")


def _count_examples(fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, file_pattern: list[str]) -> int:
    """Examples in a split, from one pass over the labels only (images are not parsed)."""
    label_spec = {LABEL_XF: tf_transform_output.transformed_feature_spec()[LABEL_XF]}
    labels = fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=COUNT_BATCH, num_epochs=1, shuffle=False),
        schema_utils.schema_from_feature_spec(label_spec),
    )
    return int(labels.reduce(np.int64(0), lambda count, batch: count + tf.shape(batch[LABEL_XF], tf.int64)[0]))


def split_dataset(
    fn_args: FnArgs,
    tf_transform_output: tft.TFTransformOutput,
    file_pattern: list[str],
    settings: TrainerSettings,
    train: bool,
) -> tuple[tf.data.Dataset, int]:
    """Batches of (float pixels [b, s, s, 3], class index [b]) for one pass, and the example count.

    The dataset's length is known (the split is counted first): with an unknown
    length Keras ends every epoch on an end-of-sequence error, which made epochs
    up to 4x slower on CPU (benchmarks/README.md, "Training loop").
    """
    split = "train" if train else "validation"
    examples = _count_examples(fn_args, tf_transform_output, file_pattern)
    if examples == 0:
        raise ValueError(f"The {split} split has no examples ({file_pattern}); add images or change the split.")
    batches = -(-examples // settings.batch_size)
    _file_log.info("%s split: %d examples, %d batches of %d", split, examples, batches, settings.batch_size)
    dataset = fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=settings.batch_size,
            label_key=LABEL_XF,
            num_epochs=1,
            shuffle=train,
            shuffle_seed=settings.seed,
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    size = settings.image_size
    dataset = (
        dataset.map(
            lambda xf, label: (features.decode_transformed(xf[IMAGE_XF], size), tf.reshape(label, [-1])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .apply(tf.data.experimental.assert_cardinality(batches))
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, examples


def training_inputs(
    classifier: keras.Model, train: tf.data.Dataset, settings: TrainerSettings
) -> tuple[keras.Model, tf.data.Dataset]:
    """The model to fit and its training data, with the configured augmentation.

    Keras cannot XLA-compile the random augmentation layers: with XLA they run in
    the input pipeline instead, so the compiled step stays XLA.
    """
    augment = settings.augmentation
    if augment.enabled and settings.xla:
        layer = model_lib.augmentation(augment, settings.seed)
        train = train.map(lambda x, y: (layer(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return classifier, train
    return model_lib.training_model(classifier, augment, settings.seed), train
