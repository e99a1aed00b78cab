"""What a Trainer run and a tuning trial set up before they train: inputs, devices, precision, the classifier.

The Trainer (``trainer.py``) and the Tuner's trials (``tuner.py``) build their model
and read their splits the same way, so a trial measures what the Trainer will train.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components.modules import features, train_data
from components.modules import model as model_lib
from components.modules.settings import TrainerSettings


def strategy(distribution: str) -> tf.distribute.Strategy:
    """MirroredStrategy across visible GPUs (``auto``: only with several), else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "mirrored" or (distribution == "auto" and len(gpus) > 1):
        mirrored = tf.distribute.MirroredStrategy()
        logging.info("Training with MirroredStrategy on %d replicas", mirrored.num_replicas_in_sync)
        return mirrored
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """mixed_float16 compute (the output layer stays float32) for the block, then float32 again."""
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def backbone_weights(settings: TrainerSettings, base_model: str | None) -> str:
    """``imagenet``, ``none``, a file, or the backbone saved by an earlier run's Trainer."""
    if settings.weights_kind != "base_model":
        return settings.weights
    if not base_model:
        raise ValueError("weights=base_model needs the Trainer's base_model input (config base_model).")
    path = model_lib.backbone_weights_path(os.path.dirname(base_model.rstrip("/")))
    if not tf.io.gfile.exists(path):
        raise model_lib.WeightsError(
            f"The base model at {base_model} has no {model_lib.BACKBONE_WEIGHTS}: was it trained by this pipeline?"
        )
    logging.info("Transferring the backbone of the earlier model %s", base_model)
    return path


def build_classifier(settings: TrainerSettings, weights: str, num_classes: int) -> keras.Model:
    """The configured backbone with ``weights`` under a new head of ``num_classes`` outputs."""
    backbone = model_lib.build_backbone(
        settings.backbone, settings.image_size, weights, settings.backbone_alpha, settings.backbone_input_range
    )
    return model_lib.build_classifier(
        backbone, settings.backbone, num_classes, settings.dropout, backbone_inference_mode=not settings.from_scratch
    )


def class_names(tf_transform_output: tft.TFTransformOutput) -> list[str]:
    """The label vocabulary, in output order."""
    return [name.decode("utf-8") for name in tf_transform_output.vocabulary_by_name(features.LABEL_VOCAB_NAME)]


def train_and_validation(
    fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, settings: TrainerSettings
) -> tuple[tuple[tf.data.Dataset, int], tuple[tf.data.Dataset, int]]:
    """The ``train`` (shuffled) and ``validation`` batches, each with its example count."""
    train = train_data.split_dataset(fn_args, tf_transform_output, fn_args.train_files, settings, train=True)
    validation = train_data.split_dataset(fn_args, tf_transform_output, fn_args.eval_files, settings, train=False)
    return train, validation
