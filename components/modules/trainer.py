"""TFX Trainer user module: two-stage transfer learning and a SavedModel for serving.

Stage 1 trains a new head on a frozen backbone; stage 2 unfreezes the top layers
(BatchNorm stays frozen, the backbone runs in inference mode) at a low learning
rate. The Trainer reads only the ``train`` and ``validation`` splits: validation
drives early stopping and picks the better stage. Judging the exported model is
the Evaluator's job, on the ``test`` split. The export serves raw encoded images
(``serving_default``) and tf.Examples (``serving_examples``), exposes the TFT
graph (``transform_features``) for the Evaluator, and takes decoded pixels
(``serve_pixels``, the signature the Pusher converts to TFLite).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.saved import saved_transform_io_v2
from tensorflow_transform.tf_metadata import schema_utils
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from components import splits
from components.modules import features, log_names, reports
from components.modules import model as model_lib
from components.modules.settings import Phase, PlanStep, StageHistory, TrainerSettings, TrainingSummary

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)
BACKBONE_WEIGHTS = model_lib.BACKBONE_WEIGHTS
WARMUP_IMAGES = 3
COUNT_BATCH = 1024
STATUS_LOGGER = log_names.STATUS_LOGGER
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


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch (stage, train and validation accuracy, seconds) and a batch status line.

    Every epoch line goes to the run's log file; the console shows the first and
    last epoch of each fit and one at least every ``CONSOLE_EVERY_SECONDS``, so a
    long stage still shows progress without a line per epoch. Batch progress goes
    to the :data:`STATUS_LOGGER` at DEBUG level, which only an interactive console
    enables (it rewrites one status line; see ``pipeline/console.py``).
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
    classifier: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    epochs: tuple[int, int],
    log_dir: str,
    patience: int = 0,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    stage: int = 1,
    last_epoch: int | None = None,
) -> StageHistory:
    """Runs epochs ``[first, last)`` and returns the per-epoch history.

    With ``patience`` > 0, stops after that many epochs without a better
    validation accuracy and restores the best epoch's weights. ``extra_callbacks``
    run after the Trainer's own (the training benchmark times epochs with one).
    ``stage`` and ``last_epoch`` (default: ``epochs[1]``) label the per-epoch log lines.
    """
    last_epoch = last_epoch or epochs[1]
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir=log_dir),
        EpochLog(stage, last_epoch),
    ]
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
            )
        )
    callbacks.extend(extra_callbacks)
    history = classifier.fit(
        train,
        validation_data=validation,
        initial_epoch=epochs[0],
        epochs=epochs[1],
        callbacks=callbacks,
        # The tf.data input shuffles (tfxio, shuffle=train); Keras ignores shuffle for a Dataset,
        # and Keras 3.15 warns when it is left at True.
        shuffle=False,
        verbose=0,
    )
    return StageHistory(**{key: [float(value) for value in values] for key, values in history.history.items()})


@dataclasses.dataclass
class ValidationCheck:
    """The classifier's current weights on the validation split: accuracy and confusion matrix."""

    accuracy: float
    confusion_matrix: np.ndarray


def validation_check(classifier: keras.Model, validation: tf.data.Dataset) -> ValidationCheck:
    """One compiled pass over validation: the accuracy that picks the stage and the kept stage's matrix.

    Rows of the matrix are true classes, columns predictions; its trace over its sum
    is the accuracy (the same number as Keras's ``evaluate``). Traced once per call
    (any batch size); under MirroredStrategy the pass runs on one replica.
    """
    image_spec = validation.element_spec[0]

    @tf.function(input_signature=[tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype)])
    def predicted(images: tf.Tensor) -> tf.Tensor:
        return tf.argmax(classifier(images, training=False), axis=-1)

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
    stage2_trainable_layers: list[str] = dataclasses.field(default_factory=list)
    fine_tuned_validation_accuracy: float | None = None
    kept_stage: int = 1
    validation_confusion_matrix: list[list[int]] = dataclasses.field(default_factory=list)


def _training_inputs(
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
    fitted, train = _training_inputs(classifier, train, settings)
    model_lib.compile_model(fitted, settings.stage1_learning_rate, jit_compile=settings.xla)
    first = settings.stage1_epochs
    with clock.phase(Phase.STAGE1):
        stage1 = fit_stage(fitted, train, validation, (0, first), log_dir, patience, last_epoch=first)
    with clock.phase(Phase.VALIDATION):
        head_only = validation_check(fitted, validation)
    result = StagesResult(
        stage1=stage1,
        head_only_validation_accuracy=head_only.accuracy,
        xla=bool(fitted.jit_compile),
        validation_confusion_matrix=head_only.confusion_matrix.tolist(),
    )
    logging.info("Stage 1 (head only): validation accuracy %.4f", result.head_only_validation_accuracy)
    if settings.from_scratch or settings.stage2_epochs == 0:
        return result
    stage1_weights = classifier.get_weights()
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    plan = model_lib.fine_tune_plan(backbone, settings)
    result.stage2_plan = [
        PlanStep(first_layer=model_lib.layer_name(backbone, index), epochs=epochs) for index, epochs in plan
    ]
    epoch = first
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
                patience,
                stage=2,
                last_epoch=first + settings.stage2_epochs,
            )
        result.stage2 = _joined(result.stage2, more)
        epoch += epochs
    with clock.phase(Phase.VALIDATION):
        fine_tuned = validation_check(fitted, validation)
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
    return result


def _pixels_spec(image_size: int) -> tf.TensorSpec:
    """float32 pixels [batch, size, size, 3] in [0, 255]: the classifier's traced input and ``serve_pixels``'s."""
    return tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=features.PIXELS_INPUT)


def classify_pixels(classifier: keras.Model, image_size: int) -> Any:
    """The classifier traced once, as a concrete function of float32 pixels in [0, 255].

    Every signature calls this one function, so Keras traces the model once per export
    instead of once per signature (benchmarks/README.md, "Model export").
    """

    @tf.function(input_signature=[_pixels_spec(image_size)], autograph=False)
    def classify(pixels: tf.Tensor) -> tf.Tensor:
        return classifier(pixels, training=False)

    return classify.get_concrete_function()


def pixel_signature(classify: Any, image_size: int) -> Any:
    """``serve_pixels``: float32 pixels [batch, size, size, 3] in [0, 255] -> ``probabilities``.

    No decode or TFT ops, so TFLite can convert it; ``features.model_pixels``
    makes its input from image bytes exactly as the serving signatures do.
    ``classify`` is the traced classifier (`classify_pixels`).
    """

    @tf.function(input_signature=[_pixels_spec(image_size)], autograph=False)
    def serve_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {features.PROBABILITIES_OUTPUT: classify(pixels)}

    return serve_pixels.get_concrete_function()


def _serving_signatures(
    classifier: keras.Model,
    transform: TransformGraph,
    tf_transform_output: tft.TFTransformOutput,
    class_names: list[str],
    image_size: int,
    top_k: int,
) -> dict[str, Any]:
    """serving_default (encoded images), serving_examples, transform_features and serve_pixels."""
    names = tf.constant(class_names)
    k = min(top_k, len(class_names))
    raw_spec = tf_transform_output.raw_feature_spec()
    image_spec = {features.IMAGE_KEY: raw_spec[features.IMAGE_KEY]}
    classify = classify_pixels(classifier, image_size)

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = transform(raw_features)
        probabilities = classify(features.decode_transformed(transformed[IMAGE_XF], image_size))
        scores, class_ids = tf.math.top_k(probabilities, k=k)
        return {
            "classes": tf.gather(names, class_ids),
            "class_ids": class_ids,
            "scores": scores,
            "probabilities": probabilities,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")], autograph=False)
    def serve_images(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict({features.IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(examples, image_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False)
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, raw_spec)
        return {LABEL_XF: transform(parsed)[LABEL_XF]}

    return {
        "serving_default": serve_images.get_concrete_function(),
        "serving_examples": serve_examples.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
        features.PIXELS_SIGNATURE: pixel_signature(classify, image_size),
    }


class TransformGraph(tf.Module):
    """The Transform graph as the serving signatures call it, saved without a Keras trace.

    ``tft_output.transform_features_layer()`` is a tf_keras Model; saving one makes
    tf_keras trace its call again through AutoGraph for a default signature we never
    use (about 6 s of the export). This module applies the same loader the layer
    calls and tracks the same loaded graph (its vocabulary assets and tables), which
    is all the signatures capture.
    """

    def __init__(self, tft_output: tft.TFTransformOutput) -> None:
        super().__init__()
        self._loader = saved_transform_io_v2.SavedModelLoader(tft_output.transform_savedmodel_dir)
        if self._loader.load_v2_in_compat:
            raise ValueError(
                f"The Transform graph at {tft_output.transform_savedmodel_dir} was saved the TF1 way; this "
                "project's Transform writes TF2 graphs. Re-run Transform with this version."
            )
        self.transform_graph = self._loader._imported  # noqa: SLF001 (what TransformFeaturesLayer tracks)

    def __call__(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Transformed features for ``raw_features`` (missing raw features are pruned, as in the layer)."""
        return self._loader.apply_transform_model(raw_features)


def export_serving_model(
    classifier: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    class_names: list[str],
    settings: TrainerSettings,
    path: str,
) -> None:
    """Saves the serving SavedModel: the signatures, the classifier's weights and the TFT graph.

    The root is a plain ``tf.Module`` holding what the signatures capture, not the Keras
    model: saving the Keras object makes TensorFlow walk and trace its layers too, which
    doubled the save time and the load time (benchmarks/README.md, "Model export").
    Everything that loads the model (TF Serving, TFMA, ``predict``) uses the signatures.
    """
    root = tf.Module()
    root.transform = TransformGraph(tf_transform_output)
    # The tf.Variables under the Keras variables: the signatures capture these, and
    # saving them directly skips Keras's per-variable export hook (0.7 s of the save).
    root.model_variables = [variable.value for variable in classifier.variables]
    signatures = _serving_signatures(
        classifier, root.transform, tf_transform_output, class_names, settings.image_size, settings.top_k
    )
    tf.saved_model.save(root, path, signatures=signatures)


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
        train, train_count = split_dataset(fn_args, tf_transform_output, fn_args.train_files, settings, train=True)
        validation, validation_count = split_dataset(
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


def _write_warmup_requests(
    fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, count: int = WARMUP_IMAGES
) -> str:
    """``assets.extra/tf_serving_warmup_requests``: validation images as serving_default requests.

    TF Serving replays them when it loads a version, so the first real request
    does not pay for graph initialisation. One batch-1 request per image, then
    one request with all of them.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    dataset = fn_args.data_accessor.tf_dataset_factory(
        fn_args.eval_files,
        tfxio.TensorFlowDatasetOptions(batch_size=count, num_epochs=1, shuffle=False),
        tf_transform_output.transformed_metadata.schema,
    )
    images = [bytes(image) for image in next(iter(dataset))[IMAGE_XF].numpy().ravel()]
    path = os.path.join(fn_args.serving_model_dir, "assets.extra", "tf_serving_warmup_requests")
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for batch in [[image] for image in images] + [images]:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = "serving_default"
            request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


# TFX Trainer will call this function.
def run_fn(fn_args: FnArgs) -> None:
    """Trains the classifier in two stages and exports the serving SavedModel.

    Args:
      fn_args: TFX Trainer arguments; ``custom_config`` is a :class:`TrainerSettings`
        as a dict (see ``pipeline/pipeline.py``).
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
            export_serving_model(classifier, tf_transform_output, class_names, settings, fn_args.serving_model_dir)
            _write_warmup_requests(fn_args, tf_transform_output)
    finally:  # the training reports stay, with the time the export took, even if it failed
        summary.phase_seconds = clock.seconds
        reports.write_reports(summary, fn_args.model_run_dir)
    logging.info(
        "Exported the serving model to %s (export %.1f s)", fn_args.serving_model_dir, clock.seconds[Phase.EXPORT]
    )
    _file_log.info("Trainer time: %s", reports.phase_line(clock.seconds))
