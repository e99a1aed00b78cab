"""The Trainer's training loop: two stages of Keras fits, validation passes and their timing.

Stage 1 trains a new head on a frozen backbone; stage 2 unfreezes the top layers
(BatchNorm stays frozen, the backbone runs in inference mode) at a low learning
rate. Validation drives early stopping and picks the better stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from components.modules import auto_schedule, log_names, reports, train_data
from components.modules import model as model_lib
from components.modules.saved_model_backbone import SavedModelBackbone
from components.modules.settings import AutoChoice, Phase, PlanStep, StageHistory, TrainerSettings

STATUS_LOGGER = log_names.STATUS_LOGGER
# Details of the run that belong in its log file, not on the console.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.trainer")


@dataclasses.dataclass
class ValidationCheck:
    """The classifier's weights on the validation split: accuracy and confusion matrix."""

    accuracy: float
    confusion_matrix: np.ndarray


def kept_validation(matrix: np.ndarray) -> ValidationCheck:
    """The validation check of a pass's confusion matrix: its trace over its sum is the accuracy."""
    matrix = np.rint(matrix).astype(np.int64)
    return ValidationCheck(accuracy=float(np.trace(matrix) / max(matrix.sum(), 1)), confusion_matrix=matrix)


class EpochMatrices(keras.callbacks.Callback):
    """Each epoch's validation confusion matrix, from the compiled :class:`model.ConfusionAccuracy`.

    Keras runs the validation pass before ``on_epoch_end`` and resets the metrics only
    when the next epoch begins, so the metric then holds that pass's matrix.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_epoch: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # noqa: D102
        if "val_accuracy" not in (logs or {}):
            return  # no validation pass this epoch: the metric holds the training batches
        # Keras builds the compiled metrics in the first step, so the metric is looked up now.
        metric = model_lib.confusion_accuracy(self.model)
        if metric is None:
            raise ValueError("fit_stage needs a model compiled with model.compile_model (model.ConfusionAccuracy).")
        self.by_epoch[epoch] = np.array(metric.matrix.numpy())


@dataclasses.dataclass
class Fitted:
    """One fit: its per-epoch history, and the validation of the weights the model kept."""

    history: StageHistory
    kept: ValidationCheck


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch (stage, train and validation accuracy, seconds) and a batch status line.

    Every epoch line goes to the run's log file; the console shows the first and
    last epoch of each fit and one at least every ``CONSOLE_EVERY_SECONDS``, so a
    long stage still shows progress without a line per epoch. Batch progress goes
    to the :data:`STATUS_LOGGER` at DEBUG level, which only an interactive console
    enables (it rewrites one status line; see ``pipeline/local/console.py``).
    """

    CONSOLE_EVERY_SECONDS = 10.0
    STATUS_EVERY_SECONDS = 0.5

    def __init__(self, stage: int, last_epoch: int) -> None:
        super().__init__()
        self._stage, self._last = stage, last_epoch
        self._shown_at = -float("inf")
        self._status_at = -float("inf")
        self._status = logging.getLogger(STATUS_LOGGER)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.monotonic()
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if now - self._status_at < self.STATUS_EVERY_SECONDS or not self._status.isEnabledFor(logging.DEBUG):
            return
        self._status_at = now
        steps = self.params.get("steps") or "?"
        loss = (logs or {}).get("loss", float("nan"))
        self._status.debug(
            "Epoch %d/%d (stage %d): batch %d/%s, loss %.3f",
            self._epoch + 1,
            self._last,
            self._stage,
            batch + 1,
            steps,
            loss,
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        now = time.monotonic()
        last_of_fit = epoch + 1 == self.params.get("epochs")
        shown = (
            epoch == self.params.get("initial_epoch", 0)
            or last_of_fit
            or now - self._shown_at >= self.CONSOLE_EVERY_SECONDS
        )
        if shown:
            self._shown_at = now
        (logging if shown else _file_log).info(
            "Epoch %d/%d (stage %d): train accuracy %.3f, validation accuracy %.3f, loss %.3f (%.1f s)",
            epoch + 1,
            self._last,
            self._stage,
            logs.get("accuracy", float("nan")),
            logs.get("val_accuracy", float("nan")),
            logs.get("loss", float("nan")),
            now - self._started,
        )


def fit_stage(
    fitted: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    epochs: tuple[int, int],
    log_dir: str,
    patience: int = 0,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    stage: int = 1,
    last_epoch: int | None = None,
    steps_per_epoch: int | None = None,
) -> Fitted:
    """Runs epochs ``[first, last)``; returns the per-epoch history and the kept epoch's validation.

    With ``patience`` > 0, stops after that many epochs without a better
    validation accuracy and restores the best epoch's weights. ``extra_callbacks``
    run after the Trainer's own (the training benchmark times epochs with one).
    ``stage`` and ``last_epoch`` (default: ``epochs[1]``) label the per-epoch log lines.
    ``steps_per_epoch`` (default: the whole of ``train``) shortens each epoch.

    The validation of the weights the model keeps (the restored epoch's, else the
    last epoch's) comes from the pass Keras ran after that epoch, on exactly those
    weights: ``fitted`` compiled with ``model.ConfusionAccuracy`` keeps its matrix
    (:class:`EpochMatrices`), so no pass of its own is needed.

    Raises:
      ValueError: If ``fitted`` was not compiled with ``model.ConfusionAccuracy`` (``model.compile_model``).
    """
    last_epoch = last_epoch or epochs[1]
    matrices = EpochMatrices()
    callbacks: list[keras.callbacks.Callback] = [
        matrices,
        keras.callbacks.TensorBoard(log_dir=log_dir),
        EpochLog(stage, last_epoch),
    ]
    stopper = None
    if patience > 0:
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
        )
        callbacks.append(stopper)
    callbacks.extend(extra_callbacks)
    history = fitted.fit(
        train,
        validation_data=validation,
        initial_epoch=epochs[0],
        epochs=epochs[1],
        callbacks=callbacks,
        steps_per_epoch=steps_per_epoch,
        # The tf.data input shuffles (tfxio, shuffle=train); Keras ignores shuffle for a Dataset,
        # and Keras 3.15 warns when it is left at True.
        shuffle=False,
        verbose=0,
    )
    # EarlyStopping restores the weights of its best epoch (Keras 3 does so at the end of every fit).
    kept = stopper.best_epoch if stopper is not None and stopper.best_weights is not None else max(matrices.by_epoch)
    return Fitted(
        history=StageHistory(**{key: [float(value) for value in values] for key, values in history.history.items()}),
        kept=kept_validation(matrices.by_epoch[kept]),
    )


_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predictor(classifier: keras.Model, image_spec: tf.TensorSpec) -> Callable[[tf.Tensor], tf.Tensor]:
    """The classifier's predicted classes as one traced function per model and image spec (a trace costs
    about a second; ``auto`` validates after every rung)."""
    cached = _PREDICTORS.setdefault(classifier, {})
    key = (tuple(image_spec.shape[1:]), image_spec.dtype)
    if key not in cached:
        model = weakref.ref(classifier)  # the cache must not keep the model alive (the Tuner builds many)

        @tf.function(input_signature=[tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype)])
        def predicted(images: tf.Tensor) -> tf.Tensor:
            return tf.argmax(model()(images, training=False), axis=-1)

        cached[key] = predicted
    return cached[key]


def validation_check(classifier: keras.Model, validation: tf.data.Dataset) -> ValidationCheck:
    """One compiled pass over validation: the accuracy that picks the stage and the kept stage's matrix.

    Rows of the matrix are true classes, columns predictions; its trace over its sum
    is the accuracy (the same number as Keras's ``evaluate``). Traced once per model
    (any batch size); under MirroredStrategy the pass runs on one replica.
    """
    predicted = _predictor(classifier, validation.element_spec[0])
    labels, predictions = [], []
    for images, batch_labels in validation:
        labels.append(batch_labels.numpy())
        predictions.append(predicted(images).numpy())
    matrix = reports.confusion_matrix(
        np.concatenate(labels), np.concatenate(predictions), int(classifier.outputs[0].shape[-1])
    )
    return ValidationCheck(accuracy=float(np.trace(matrix) / max(matrix.sum(), 1)), confusion_matrix=matrix)


def _joined(first: StageHistory | None, more: StageHistory) -> StageHistory:
    if first is None:
        return more
    return StageHistory(**{key: getattr(first, key) + getattr(more, key) for key in StageHistory.model_fields})


class PhaseClock:
    """Wall seconds per named phase, in the order the phases ran (``TrainingSummary.phase_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the ``with`` body as ``name`` (added to an earlier phase of the same name)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - started, 2)


@dataclasses.dataclass
class StagesResult:
    """What :func:`train_two_stages` did (the classifier holds the kept stage's weights)."""

    stage1: StageHistory
    head_only_validation_accuracy: float
    xla: bool
    stage2: StageHistory | None = None
    stage2_plan: list[PlanStep] = dataclasses.field(default_factory=list)
    stage2_auto: AutoChoice | None = None
    stage2_trainable_layers: list[str] = dataclasses.field(default_factory=list)
    fine_tuned_validation_accuracy: float | None = None
    kept_stage: int = 1
    validation_confusion_matrix: list[list[int]] = dataclasses.field(default_factory=list)


def train_two_stages(
    classifier: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    settings: TrainerSettings,
    log_dir: str,
    clock: PhaseClock | None = None,
) -> StagesResult:
    """Stage 1 (head), stage 2 (fine-tuning schedule); keeps the better stage on validation.

    Args:
      classifier: The model from ``model.build_classifier``; trained in place.
      train: Training batches.
      validation: Validation batches (early stopping and the choice of stage).
      settings: The trainer settings.
      log_dir: TensorBoard log folder.
      clock: Times the stages and the validation passes that choose between them.

    Returns:
      Histories, validation accuracy per stage, the stage kept and the stage 2 plan.
    """
    patience = settings.early_stopping_patience
    if settings.from_scratch:
        logging.info("weights=none: the whole network trains from scratch; stage 2 is skipped.")
    else:
        model_lib.freeze_backbone(classifier)
    clock = clock or PhaseClock()
    fitted, train = train_data.training_inputs(classifier, train, settings)
    model_lib.compile_model(fitted, settings.stage1_learning_rate, jit_compile=settings.xla)
    first = settings.stage1_epochs
    with clock.phase(Phase.STAGE1):
        stage1 = fit_stage(fitted, train, validation, (0, first), log_dir, patience, last_epoch=first)
    head_only = stage1.kept
    result = StagesResult(
        stage1=stage1.history,
        head_only_validation_accuracy=head_only.accuracy,
        xla=bool(fitted.jit_compile),
        validation_confusion_matrix=head_only.confusion_matrix.tolist(),
    )
    logging.info("Stage 1 (head only): validation accuracy %.4f", result.head_only_validation_accuracy)
    if settings.from_scratch or settings.stage2_epochs == 0:
        return result
    stage1_weights = classifier.get_weights()
    fine_tuned = _fine_tune(classifier, fitted, (train, validation), settings, log_dir, clock, result)
    _keep_better_stage(classifier, stage1_weights, fine_tuned, result)
    return result


def _fine_tune(
    classifier: keras.Model,
    fitted: keras.Model,
    data: tuple[tf.data.Dataset, tf.data.Dataset],
    settings: TrainerSettings,
    log_dir: str,
    clock: PhaseClock,
    result: StagesResult,
) -> ValidationCheck:
    """Stage 2: one fit per step of the fine-tuning plan; records the plan and history in ``result``.

    Args:
      classifier: The classifier whose backbone layers the plan unfreezes.
      fitted: The model that trains (``classifier``, or it behind augmentation layers).
      data: Training and validation batches.
      settings: The trainer settings.
      log_dir: TensorBoard log folder.
      clock: Times the fits.
      result: Stage 1's result; gets ``stage2``, ``stage2_plan`` and ``stage2_trainable_layers``.

    Returns:
      The validation of the weights stage 2 ends with (its last fit's kept epoch).
    """
    train, validation = data
    first = settings.stage1_epochs
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    if settings.fine_tune_schedule == "auto" and not isinstance(backbone, SavedModelBackbone):
        return _auto_fine_tune(classifier, fitted, data, settings, (log_dir, clock), result)
    plan = model_lib.fine_tune_plan(backbone, settings)
    result.stage2_plan = [
        PlanStep(first_layer=model_lib.layer_name(backbone, index), epochs=epochs) for index, epochs in plan
    ]
    epoch = first
    kept = None
    for first_index, epochs in plan:
        result.stage2_trainable_layers = model_lib.unfreeze_from(classifier, first_index)
        logging.info(
            "Stage 2: %d epochs with %d backbone layers trainable (from %s)",
            epochs,
            len(result.stage2_trainable_layers),
            model_lib.layer_name(backbone, first_index),
        )
        model_lib.compile_model(fitted, settings.stage2_learning_rate, jit_compile=settings.xla)
        with clock.phase(Phase.STAGE2):
            more = fit_stage(
                fitted,
                train,
                validation,
                (epoch, epoch + epochs),
                log_dir,
                settings.early_stopping_patience,
                stage=2,
                last_epoch=first + settings.stage2_epochs,
            )
        result.stage2 = _joined(result.stage2, more.history)
        kept = more.kept
        epoch += epochs
    return kept if plan else validation_check(fitted, validation)


def _auto_fine_tune(
    classifier: keras.Model,
    fitted: keras.Model,
    data: tuple[tf.data.Dataset, tf.data.Dataset],
    settings: TrainerSettings,
    log_and_clock: tuple[str, PhaseClock],
    result: StagesResult,
) -> ValidationCheck:
    """Stage 2 with ``fine_tune_schedule: auto``: the rungs choose, then the winner trains its epochs (returns
    the validation of the weights it ends with)."""
    train, validation = data
    log_dir, clock = log_and_clock
    with clock.phase(Phase.STAGE2):
        choice = auto_schedule.select(
            classifier, fitted, train, settings, lambda: validation_check(fitted, validation).accuracy
        )
        auto_schedule.train_only_the_winner(classifier, fitted, choice, settings.xla)
        first = settings.stage1_epochs
        more = fit_stage(
            fitted,
            train,
            validation,
            (first, first + choice.final_epochs),
            log_dir,
            settings.early_stopping_patience,
            stage=2,
            steps_per_epoch=choice.final_steps,
        )
    chosen = choice.chosen
    result.stage2_auto = choice
    result.stage2_plan = [PlanStep(first_layer=chosen.first_layer, epochs=choice.final_epochs)]
    result.stage2_trainable_layers = model_lib.unfreeze_from(classifier, chosen.first_index)
    result.stage2 = more.history
    return more.kept


def _keep_better_stage(
    classifier: keras.Model, stage1_weights: list[np.ndarray], fine_tuned: ValidationCheck, result: StagesResult
) -> None:
    """Keeps stage 2 unless it lowered validation accuracy (then restores ``stage1_weights``)."""
    result.fine_tuned_validation_accuracy = fine_tuned.accuracy
    logging.info("Stage 2 (fine-tuned): validation accuracy %.4f", result.fine_tuned_validation_accuracy)
    if result.fine_tuned_validation_accuracy < result.head_only_validation_accuracy:
        logging.warning(
            "Fine-tuning lowered validation accuracy from %.4f to %.4f; keeping the stage 1 (head-only) model.",
            result.head_only_validation_accuracy,
            result.fine_tuned_validation_accuracy,
        )
        classifier.set_weights(stage1_weights)
    else:
        result.kept_stage = 2
        result.validation_confusion_matrix = fine_tuned.confusion_matrix.tolist()
