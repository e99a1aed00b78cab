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

import dataclasses
import logging
import os

import keras
import numpy as np
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from components.ingest import splits
from components.modules import export, log_names, reports, training_setup, tuning_settings
from components.modules import model as model_lib
from components.modules.settings import Phase, TrainerSettings, TrainingSummary
from components.modules.train_loop import PhaseClock, train_two_stages

BACKBONE_WEIGHTS = model_lib.BACKBONE_WEIGHTS
# Details of the run that belong in its log file, not on the console.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.trainer")


def _train(
    fn_args: FnArgs,
    settings: TrainerSettings,
    class_names: list[str],
    tf_transform_output: tft.TFTransformOutput,
    clock: PhaseClock,
) -> tuple[keras.Model, TrainingSummary]:
    """Builds and trains the classifier on ``train``, selecting on ``validation``."""
    with clock.phase(Phase.COUNT):
        (train, train_count), (validation, validation_count) = training_setup.train_and_validation(
            fn_args, tf_transform_output, settings
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
    weights = training_setup.backbone_weights(settings, fn_args.base_model)
    log_dir = os.path.join(fn_args.model_run_dir, "logs")
    with training_setup.precision(settings.mixed_precision), training_setup.strategy(settings.distribution).scope():
        with clock.phase(Phase.BUILD):
            classifier = training_setup.build_classifier(settings, weights, len(class_names))
        result = train_two_stages(classifier, train, validation, settings, log_dir, clock)
    summary = TrainingSummary(
        class_names=class_names,
        settings=settings,
        split_sizes={splits.TRAIN: train_count, splits.VALIDATION: validation_count},
        trainable_params=int(np.sum([np.prod(w.shape) for w in classifier.trainable_weights])),
        **dataclasses.asdict(result),
    )
    return classifier, summary


def _tuned(settings: TrainerSettings, fn_args: FnArgs) -> TrainerSettings:
    """The settings with the Tuner's best hyperparameters applied, recorded in ``tuned_settings.json``.

    Without a Tuner (``fn_args.hyperparameters`` None) the settings are returned as they are.
    """
    values = tuning_settings.best_values(fn_args.hyperparameters)
    if not values:
        return settings
    update = tuning_settings.settings_update(settings, values)
    tuned = tuning_settings.apply_hyperparameters(settings, values)
    logging.info(
        "Training with the Tuner's best hyperparameters: %s",
        ", ".join(
            f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}" for key, value in update.items()
        ),
    )
    tuning_settings.write_tuned(
        tuning_settings.TunedSettings(hyperparameters=values, settings=update), fn_args.model_run_dir
    )
    return tuned


# TFX Trainer will call this function.
def run_fn(fn_args: FnArgs) -> None:
    """Trains the classifier in two stages and exports the serving SavedModel.

    Args:
      fn_args: TFX Trainer arguments; ``custom_config`` is a :class:`TrainerSettings`
        as a dict (see ``pipeline/graph/pipeline.py``); ``hyperparameters``, with a
        Tuner before the Trainer, its best values (applied onto the settings).
    """
    settings = _tuned(TrainerSettings.model_validate(fn_args.custom_config), fn_args)
    keras.utils.set_random_seed(settings.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = training_setup.class_names(tf_transform_output)
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
