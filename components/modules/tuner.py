"""TFX Tuner user module: KerasTuner trials that each train the Trainer's own two stages.

``tuner_fn`` is the entry point the pipeline names (``components.modules.tuner.tuner_fn``).
Each trial applies one point of the search space onto the Trainer's settings
(``tuning_settings.apply_hyperparameters``), builds the classifier as the Trainer
does (``training_setup.py``) and runs ``train_loop.train_two_stages`` on ``train``,
choosing on ``validation``; its score is the kept stage's validation accuracy. The
Tuner never reads ``test``. TFX's executor writes the best trial's values
(``best_hyperparameters``), which the Trainer applies the same way; the pipeline's
executor (``components/tuner/executor.py``) records every trial in MLMD.
"""

from __future__ import annotations

import logging
import os
import time

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from components.modules import training_setup, tuning_settings
from components.modules.settings import TrainerSettings
from components.modules.train_loop import train_two_stages
from components.modules.tuning_settings import Range, TrialMetric, TuningSettings

HYPERBAND_FACTOR = 3


def search_space(space: dict[str, Range], trainer: TrainerSettings) -> keras_tuner.HyperParameters:
    """KerasTuner hyperparameters for the searched ranges; each one's default is the configured value, clipped."""
    hyperparameters = keras_tuner.HyperParameters()
    for name, searched in space.items():
        if searched.values:
            hyperparameters.Choice(name, list(searched.values))
            continue
        configured = 1.0 if name == tuning_settings.AUGMENTATION_STRENGTH else getattr(trainer, name)
        hyperparameters.Float(
            name,
            searched.min,
            searched.max,
            sampling="log" if searched.log else "linear",
            default=min(max(configured, searched.min), searched.max),
        )
    return hyperparameters


def oracle(tuning: TuningSettings, trainer: TrainerSettings) -> keras_tuner.Oracle:
    """The configured KerasTuner oracle over the searched ranges, at most ``tuning.trials`` trials."""
    objective = keras_tuner.Objective(tuning_settings.OBJECTIVE, direction="max")
    space = search_space(tuning.searched(trainer), trainer)
    common = {"objective": objective, "hyperparameters": space, "seed": trainer.seed}
    if tuning.algorithm == "random":
        return _configuration_first(keras_tuner.oracles.RandomSearchOracle(max_trials=tuning.trials, **common))
    if tuning.algorithm == "bayesian":
        # Half the trials (at most 3 per dimension) explore at random before the Gaussian process leads.
        initial = max(2, min(tuning.trials // 2, 3 * len(space.space)))
        return _configuration_first(
            keras_tuner.oracles.BayesianOptimizationOracle(
                max_trials=tuning.trials, num_initial_points=initial, **common
            )
        )
    hyperband = keras_tuner.oracles.HyperbandOracle(
        max_epochs=tuning.epochs_per_trial(trainer), factor=HYPERBAND_FACTOR, **common
    )
    hyperband.max_trials = tuning.trials  # Hyperband sizes its brackets by epochs; the trial budget still holds
    return hyperband


def _configuration_first(search: keras_tuner.Oracle) -> keras_tuner.Oracle:
    """Trial 0 trains the configured value of each searched hyperparameter (its range's default, clipped),
    a known point to compare the others with; later trials come from the oracle as usual."""
    populate = search.populate_space

    def populate_space(trial_id: str) -> dict:
        if search.trials:
            return populate(trial_id)
        return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": dict(search.hyperparameters.values)}

    search.populate_space = populate_space
    return search


class TwoStageTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial as the Trainer trains: both stages, the better one kept on validation.

    With ``max_minutes``, no trial starts once that much time has passed since the
    search began (the running trial finishes).
    """

    def __init__(
        self,
        search: keras_tuner.Oracle,
        trainer: TrainerSettings,
        model_inputs: tuple[str, int],
        directory: str,
        max_minutes: float | None = None,
    ) -> None:
        """A tuner for ``trainer`` whose trials build the classifier from (backbone weights, class count)."""
        super().__init__(oracle=search, directory=directory, project_name="tuning", overwrite=True)
        self._trainer = trainer
        self._weights, self._num_classes = model_inputs
        self._max_seconds = max_minutes * 60 if max_minutes else None
        self._started = time.monotonic()

    def on_search_begin(self) -> None:
        """Starts the time budget's clock."""
        self._started = time.monotonic()

    def pre_create_trial(self) -> None:
        """Past the time budget, the trials run so far are the budget: the oracle starts no more."""
        spent = time.monotonic() - self._started
        started = len(self.oracle.trials)
        if self._max_seconds is None or spent < self._max_seconds or not started:
            return
        if self.oracle.max_trials is None or started < self.oracle.max_trials:
            logging.info(
                "Tuning: the time budget (%.0f min) is spent after %d trials.", self._max_seconds / 60, started
            )
            self.oracle.max_trials = started

    def run_trial(
        self, trial: keras_tuner.engine.trial.Trial, train: tf.data.Dataset, validation: tf.data.Dataset
    ) -> dict[str, float]:
        """Trains both stages with the trial's values; returns the kept stage's validation accuracy and details."""
        values = dict(trial.hyperparameters.values)
        settings = tuning_settings.apply_hyperparameters(self._trainer, values)
        if tuning_settings.HYPERBAND_EPOCHS in values:
            settings = tuning_settings.trial_epochs(settings, int(values[tuning_settings.HYPERBAND_EPOCHS]))
        keras.backend.clear_session()
        keras.utils.set_random_seed(settings.seed)  # every trial starts from the same initialisation and order
        started = time.monotonic()
        log_dir = os.path.join(self.project_dir, f"trial_{trial.trial_id}", "logs")
        with training_setup.precision(settings.mixed_precision), training_setup.strategy(settings.distribution).scope():
            classifier = training_setup.build_classifier(settings, self._weights, self._num_classes)
            result = train_two_stages(classifier, train, validation, settings, log_dir)
        kept = result.fine_tuned_validation_accuracy if result.kept_stage == 2 else result.head_only_validation_accuracy
        metrics = {
            tuning_settings.OBJECTIVE: float(kept),
            TrialMetric.HEAD_ONLY: result.head_only_validation_accuracy,
            TrialMetric.KEPT_STAGE: float(result.kept_stage),
            TrialMetric.SECONDS: round(time.monotonic() - started, 2),
        }
        if result.fine_tuned_validation_accuracy is not None:
            metrics[TrialMetric.FINE_TUNED] = result.fine_tuned_validation_accuracy
        logging.info(
            "Tuning trial %s: %s: validation accuracy %.4f (stage %d kept, %.0f s)",
            trial.trial_id,
            ", ".join(f"{name} {value:.3g}" for name, value in tuning_settings.best_values({"values": values}).items()),
            kept,
            result.kept_stage,
            metrics[TrialMetric.SECONDS],
        )
        return metrics


# TFX Tuner will call this function.
def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """The search over ``train``/``validation`` that the Tuner runs.

    Args:
      fn_args: TFX Tuner arguments; ``custom_config`` is a :class:`TunerConfig` as a
        dict (the Trainer's settings and ``tuning:``, see ``pipeline/graph/pipeline.py``).

    Returns:
      The tuner and its ``search`` arguments: the train and validation batches.
    """
    config = tuning_settings.TunerConfig.model_validate(fn_args.custom_config)
    trainer, tuning = config.trainer, config.tuning
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    class_names = training_setup.class_names(tf_transform_output)
    (train, train_count), (validation, validation_count) = training_setup.train_and_validation(
        fn_args, tf_transform_output, trainer
    )
    logging.info(
        "Tuning: %d %s trials of %d epochs each on %d train images, scored on %d validation images; searching %s",
        tuning.trials,
        tuning.algorithm,
        tuning.epochs_per_trial(trainer),
        train_count,
        validation_count,
        ", ".join(f"{name} {searched}" for name, searched in tuning.searched(trainer).items()),
    )
    weights = training_setup.backbone_weights(trainer, fn_args.base_model)
    tuner = TwoStageTuner(
        oracle(tuning, trainer), trainer, (weights, len(class_names)), fn_args.working_dir, tuning.max_minutes
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={"train": train, "validation": validation})
