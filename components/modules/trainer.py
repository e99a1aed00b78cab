"""TFX Trainer user module: two-stage transfer learning and a SavedModel for serving.

``run_fn`` is the entry point the pipeline names (``components.modules.trainer.run_fn``).
Stage 1 trains a new head on a frozen backbone; stage 2 unfreezes the top layers
(BatchNorm stays frozen, the backbone runs in inference mode) at a low learning
rate. The Trainer reads only the ``train`` and ``validation`` splits: validation
drives early stopping and picks the better stage. Judging the exported model is
the Evaluator's job, on the ``test`` split. The parts live beside this file (TFX
packages the whole folder with the module file): the input in ``train_data.py``,
the two stages in ``train_loop.py`` and the serving SavedModel, with the
signatures named in ``components/signatures.py``, in ``export.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components.ingest import splits
from components.modules import export, features, log_names, reports, train_data
from components.modules import model as model_lib
from components.modules.settings import Phase, TrainerSettings, TrainingSummary
from components.modules.train_loop import PhaseClock, train_two_stages

BACKBONE_WEIGHTS = model_lib.BACKBONE_WEIGHTS
# Details of the run that belong in its log file, not on the console.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.trainer")


def _strategy(distribution: str) -> tf.distribute.Strategy:
    """MirroredStrategy across visible GPUs (``auto``: only with several), else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "mirrored" or (distribution == "auto" and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
        logging.info("Training with MirroredStrategy on %d replicas", strategy.num_replicas_in_sync)
        return strategy
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def _precision(mixed: bool) -> Iterator[None]:
    """mixed_float16 compute (the output layer stays float32) for the block, then float32 again."""
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _backbone_weights(settings: TrainerSettings, base_model: str | None) -> str:
    """``imagenet``, ``none``, a file, or the backbone saved by an earlier run's Trainer."""
    if settings.weights_kind != "base_model":
        return settings.weights
    if not base_model:
        raise ValueError("weights=base_model needs the Trainer's base_model input (config base_model).")
    path = model_lib.backbone_weights_path(os.path.dirname(base_model.rstrip("/")))
    if not tf.io.gfile.exists(path):
        raise model_lib.WeightsError(
            f"The base model at {base_model} has no {BACKBONE_WEIGHTS}: was it trained by this pipeline?"
        )
    logging.info("Transferring the backbone of the earlier model %s", base_model)
    return path


def _classifier(settings: TrainerSettings, weights: str, num_classes: int) -> keras.Model:
    backbone = model_lib.build_backbone(
        settings.backbone, settings.image_size, weights, settings.backbone_alpha, settings.backbone_input_range
    )
    return model_lib.build_classifier(
        backbone, settings.backbone, num_classes, settings.dropout, backbone_inference_mode=not settings.from_scratch
    )


def _train(
    fn_args: FnArgs,
    settings: TrainerSettings,
    class_names: list[str],
    tf_transform_output: tft.TFTransformOutput,
    clock: PhaseClock,
) -> tuple[keras.Model, TrainingSummary]:
    """Builds and trains the classifier on ``train``, selecting on ``validation``."""
    with clock.phase(Phase.COUNT):
        train, train_count = train_data.split_dataset(
            fn_args, tf_transform_output, fn_args.train_files, settings, train=True
        )
        validation, validation_count = train_data.split_dataset(
            fn_args, tf_transform_output, fn_args.eval_files, settings, train=False
        )
    logging.info(
        "Training on %d classes %s: %d train images (%d batches of %d), %d validation images",
        len(class_names),
        class_names,
        train_count,
        len(train),
        settings.batch_size,
        validation_count,
    )
    weights = _backbone_weights(settings, fn_args.base_model)
    log_dir = os.path.join(fn_args.model_run_dir, "logs")
    with _precision(settings.mixed_precision), _strategy(settings.distribution).scope():
        with clock.phase(Phase.BUILD):
            classifier = _classifier(settings, weights, len(class_names))
        result = train_two_stages(classifier, train, validation, settings, log_dir, clock)
    summary = TrainingSummary(
        class_names=class_names,
        settings=settings,
        split_sizes={splits.TRAIN: train_count, splits.VALIDATION: validation_count},
        trainable_params=int(np.sum([np.prod(w.shape) for w in classifier.trainable_weights])),
        **dataclasses.asdict(result),
    )
    return classifier, summary


# TFX Trainer will call this function.
def run_fn(fn_args: FnArgs) -> None:
    """Trains the classifier in two stages and exports the serving SavedModel.

    Args:
      fn_args: TFX Trainer arguments; ``custom_config`` is a :class:`TrainerSettings`
        as a dict (see ``pipeline/graph/pipeline.py``).
    """
    settings = TrainerSettings.model_validate(fn_args.custom_config)
    keras.utils.set_random_seed(settings.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = [name.decode("utf-8") for name in tf_transform_output.vocabulary_by_name(features.LABEL_VOCAB_NAME)]
    clock = PhaseClock()
    classifier, summary = _train(fn_args, settings, class_names, tf_transform_output, clock)
    try:
        with clock.phase(Phase.EXPORT):
            model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
            model_lib.save_backbone_weights(classifier, model_dir)
            export.export_serving_model(
                classifier, tf_transform_output, class_names, settings, fn_args.serving_model_dir
            )
            export.write_warmup_requests(fn_args, tf_transform_output)
    finally:  # the training reports stay, with the time the export took, even if it failed
        summary.phase_seconds = clock.seconds
        reports.write_reports(summary, fn_args.model_run_dir)
    logging.info(
        "Exported the serving model to %s (export %.1f s)", fn_args.serving_model_dir, clock.seconds[Phase.EXPORT]
    )
    _file_log.info("Trainer time: %s", reports.phase_line(clock.seconds))
