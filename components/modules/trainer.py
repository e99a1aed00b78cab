"""TFX Trainer user module: two-stage transfer learning and a SavedModel for serving.

Stage 1 trains a new head on a frozen backbone; stage 2 unfreezes the top layers
(BatchNorm stays frozen, the backbone runs in inference mode) at a low learning
rate. The model keeps the better stage by eval accuracy. The export serves raw
encoded images (``serving_default``) and tf.Examples (``serving_examples``), and
exposes the TFT graph (``transform_features``) for the Evaluator.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import schema_utils
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components.modules import features, reports
from components.modules import model as model_lib

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)
BACKBONE_WEIGHTS = model_lib.BACKBONE_WEIGHTS
WARMUP_IMAGES = 3
COUNT_BATCH = 1024


def _count_examples(
    fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput, file_pattern: list[str]
) -> int:
    """Examples in a split, from one pass over the labels only (images are not parsed)."""
    label_spec = {LABEL_XF: tf_transform_output.transformed_feature_spec()[LABEL_XF]}
    labels = fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=COUNT_BATCH, num_epochs=1, shuffle=False),
        schema_utils.schema_from_feature_spec(label_spec),
    )
    return int(labels.reduce(np.int64(0), lambda count, batch: count + tf.shape(batch[LABEL_XF], tf.int64)[0]))


def _dataset(
    fn_args: tfx.components.FnArgs,
    tf_transform_output: tft.TFTransformOutput,
    file_pattern: list[str],
    config: dict[str, Any],
    train: bool,
) -> tf.data.Dataset:
    """Batches of (float pixels [b, s, s, 3], class index [b]) for one pass.

    The dataset's length is known (the split is counted first): with an unknown
    length Keras ends every epoch on an end-of-sequence error, which made epochs
    up to 4x slower on CPU (benchmarks/README.md, "Training loop").
    """
    split = "train" if train else "eval"
    examples = _count_examples(fn_args, tf_transform_output, file_pattern)
    if examples == 0:
        raise ValueError(f"The {split} split has no examples ({file_pattern}); add images or change the split.")
    batches = -(-examples // config["batch_size"])
    logging.info("%s split: %d examples, %d batches of %d", split, examples, batches, config["batch_size"])
    dataset = fn_args.data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=config["batch_size"],
            label_key=LABEL_XF,
            num_epochs=1,
            shuffle=train,
            shuffle_seed=config["seed"],
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    size = config["image_size"]
    return (
        dataset.map(
            lambda xf, label: (features.decode_transformed(xf[IMAGE_XF], size), tf.reshape(label, [-1])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .apply(tf.data.experimental.assert_cardinality(batches))
        .prefetch(tf.data.AUTOTUNE)
    )


def _fit_stage(
    classifier: keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    epochs: tuple[int, int],
    log_dir: str,
    patience: int = 0,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> dict[str, list[float]]:
    """Runs epochs ``[first, last)`` and returns the per-epoch history.

    With ``patience`` > 0, stops after that many epochs without a better eval
    accuracy and restores the best epoch's weights. ``extra_callbacks`` run
    after the Trainer's own (the training benchmark times epochs with one).
    """
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TensorBoard(log_dir=log_dir)]
    if patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
            )
        )
    callbacks.extend(extra_callbacks)
    history = classifier.fit(
        train,
        validation_data=evaluation,
        initial_epoch=epochs[0],
        epochs=epochs[1],
        callbacks=callbacks,
        verbose=2,
    )
    return {key: [float(value) for value in values] for key, values in history.history.items()}


def _eval_accuracy(classifier: keras.Model, evaluation: tf.data.Dataset) -> float:
    return float(classifier.evaluate(evaluation, verbose=0, return_dict=True)["accuracy"])


def _append(history: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for key, values in more.items():
        history.setdefault(key, []).extend(values)


def train_two_stages(
    classifier: keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    config: dict[str, Any],
    log_dir: str,
) -> dict[str, Any]:
    """Stage 1 (head), stage 2 (fine-tuning schedule); keeps the better stage.

    Args:
      classifier: The model from ``model.build_classifier``; trained in place.
      train: Training batches.
      evaluation: Eval batches (also used to pick the stage).
      config: The trainer settings.
      log_dir: TensorBoard log folder.

    Returns:
      The training summary: histories, eval accuracy per stage, the stage kept,
      the stage 2 plan and the layers trained in stage 2.
    """
    from_scratch = config["weights"] == "none"
    patience = config.get("early_stopping_patience", 0)
    jit = config.get("xla", False)
    if from_scratch:
        logging.info("weights=none: the whole network trains from scratch; stage 2 is skipped.")
    else:
        model_lib.freeze_backbone(classifier)
    # Keras cannot XLA-compile the random augmentation layers: with XLA they run in
    # the input pipeline instead, so the compiled step stays XLA.
    augment_in_data = config["augment"] and jit
    fitted = model_lib.training_model(classifier, config["augment"] and not jit, config["seed"])
    if augment_in_data:
        layer = model_lib.augmentation(config["seed"])
        train = train.map(lambda x, y: (layer(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    model_lib.compile_model(fitted, config["stage1_learning_rate"], jit_compile=jit)
    first = config["stage1_epochs"]
    summary: dict[str, Any] = {"stage1": _fit_stage(fitted, train, evaluation, (0, first), log_dir, patience)}
    summary["head_only_eval_accuracy"] = _eval_accuracy(fitted, evaluation)
    summary["kept_stage"] = 1
    summary["xla"] = bool(fitted.jit_compile)
    logging.info("Stage 1 eval accuracy: %.4f", summary["head_only_eval_accuracy"])
    if from_scratch or config["stage2_epochs"] == 0:
        return summary
    stage1_weights = classifier.get_weights()
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    plan = model_lib.fine_tune_plan(backbone, config.get("fine_tune_schedule", "top_n"), config)
    summary["stage2_plan"] = [{"first_layer": backbone.layers[index].name, "epochs": epochs} for index, epochs in plan]
    summary["stage2"] = {}
    epoch = first
    for first_index, epochs in plan:
        summary["stage2_trainable_layers"] = model_lib.unfreeze_from(classifier, first_index)
        logging.info(
            "Stage 2: %d epochs with %d backbone layers trainable (from %s)",
            epochs,
            len(summary["stage2_trainable_layers"]),
            backbone.layers[first_index].name,
        )
        model_lib.compile_model(fitted, config["stage2_learning_rate"], jit_compile=jit)
        _append(summary["stage2"], _fit_stage(fitted, train, evaluation, (epoch, epoch + epochs), log_dir, patience))
        epoch += epochs
    summary["fine_tuned_eval_accuracy"] = _eval_accuracy(fitted, evaluation)
    logging.info("Stage 2 eval accuracy: %.4f", summary["fine_tuned_eval_accuracy"])
    if summary["fine_tuned_eval_accuracy"] < summary["head_only_eval_accuracy"]:
        logging.warning(
            "Fine-tuning lowered eval accuracy from %.4f to %.4f; keeping the stage 1 (head-only) model.",
            summary["head_only_eval_accuracy"],
            summary["fine_tuned_eval_accuracy"],
        )
        classifier.set_weights(stage1_weights)
    else:
        summary["kept_stage"] = 2
    return summary


def _serving_signatures(
    classifier: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    class_names: list[str],
    image_size: int,
    top_k: int,
) -> dict[str, Any]:
    """serving_default (encoded images), serving_examples and transform_features."""
    classifier.tft_layer = tf_transform_output.transform_features_layer()
    names = tf.constant(class_names)
    k = min(top_k, len(class_names))
    raw_spec = tf_transform_output.raw_feature_spec()
    image_spec = {features.IMAGE_KEY: raw_spec[features.IMAGE_KEY]}

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = classifier.tft_layer(raw_features)
        probabilities = classifier(features.decode_transformed(transformed[IMAGE_XF], image_size), training=False)
        scores, class_ids = tf.math.top_k(probabilities, k=k)
        return {
            "classes": tf.gather(names, class_ids),
            "class_ids": class_ids,
            "scores": scores,
            "probabilities": probabilities,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict({features.IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(examples, image_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, raw_spec)
        return {LABEL_XF: classifier.tft_layer(parsed)[LABEL_XF]}

    return {
        "serving_default": serve_images.get_concrete_function(),
        "serving_examples": serve_examples.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }


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


def _backbone_weights(config: dict[str, Any], base_model: str | None) -> str:
    """``imagenet``, ``none``, a file, or the backbone saved by an earlier run's Trainer."""
    if config["weights"] != "base_model":
        return config["weights"]
    if not base_model:
        raise ValueError("weights=base_model needs the Trainer's base_model input (config base_model).")
    path = os.path.join(os.path.dirname(base_model.rstrip("/")), BACKBONE_WEIGHTS)
    if not tf.io.gfile.exists(path):
        raise model_lib.WeightsError(
            f"The base model at {base_model} has no {BACKBONE_WEIGHTS}: was it trained by this pipeline?"
        )
    local = os.path.join(tempfile.mkdtemp(), BACKBONE_WEIGHTS)
    tf.io.gfile.copy(path, local)
    logging.info("Transferring the backbone of the earlier model %s", base_model)
    return local


def _classifier(config: dict[str, Any], weights: str, num_classes: int) -> keras.Model:
    backbone = model_lib.build_backbone(config["backbone"], config["image_size"], weights, config["backbone_alpha"])
    return model_lib.build_classifier(
        backbone, config["backbone"], num_classes, config["dropout"], backbone_inference_mode=weights != "none"
    )


def _from_scratch_accuracy(
    config: dict[str, Any], num_classes: int, train: tf.data.Dataset, evaluation: tf.data.Dataset, log_dir: str
) -> float:
    """The comparison run: same data and epochs, all layers from random weights."""
    scratch_config = {**config, "weights": "none", "stage1_epochs": config["stage1_epochs"] + config["stage2_epochs"]}
    logging.info("Comparison run: training from scratch for %d epochs", scratch_config["stage1_epochs"])
    summary = train_two_stages(
        _classifier(scratch_config, "none", num_classes), train, evaluation, scratch_config, log_dir
    )
    return summary["head_only_eval_accuracy"]


def _eval_confusion_matrix(classifier: keras.Model, evaluation: tf.data.Dataset, num_classes: int) -> np.ndarray:
    labels, predictions = [], []
    for images, batch_labels in evaluation:
        labels.append(batch_labels.numpy())
        predictions.append(np.argmax(classifier(images, training=False), axis=1))
    return reports.confusion_matrix(np.concatenate(labels), np.concatenate(predictions), num_classes)


def _train(
    fn_args: tfx.components.FnArgs,
    config: dict[str, Any],
    class_names: list[str],
    tf_transform_output: tft.TFTransformOutput,
) -> tuple[keras.Model, dict[str, Any]]:
    """Builds and trains the classifier (and the optional comparison run)."""
    train = _dataset(fn_args, tf_transform_output, fn_args.train_files, config, train=True)
    evaluation = _dataset(fn_args, tf_transform_output, fn_args.eval_files, config, train=False)
    weights = _backbone_weights(config, fn_args.base_model)
    log_dir = os.path.join(fn_args.model_run_dir, "logs")
    with _precision(config.get("mixed_precision", False)), _strategy(config.get("distribution", "auto")).scope():
        classifier = _classifier(config, weights, len(class_names))
        summary = train_two_stages(classifier, train, evaluation, config, log_dir)
        if config.get("compare_from_scratch") and weights != "none":
            best = max(summary["head_only_eval_accuracy"], summary.get("fine_tuned_eval_accuracy", 0.0))
            summary["from_scratch_eval_accuracy"] = _from_scratch_accuracy(
                config, len(class_names), train, evaluation, os.path.join(log_dir, "from_scratch")
            )
            summary["negative_transfer"] = summary["from_scratch_eval_accuracy"] > best
            if summary["negative_transfer"]:
                logging.warning(
                    "Negative transfer: from scratch reached %.4f eval accuracy, the pretrained model %.4f.",
                    summary["from_scratch_eval_accuracy"],
                    best,
                )
    summary["confusion_matrix"] = _eval_confusion_matrix(classifier, evaluation, len(class_names))
    return classifier, summary


def _write_warmup_requests(
    fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput, count: int = WARMUP_IMAGES
) -> str:
    """``assets.extra/tf_serving_warmup_requests``: eval images as serving_default requests.

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
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the classifier in two stages and exports the serving SavedModel.

    Args:
      fn_args: TFX Trainer arguments; ``custom_config`` holds the pipeline
        config's trainer settings (see ``PipelineConfig.trainer_config``).
    """
    config = dict(fn_args.custom_config)
    keras.utils.set_random_seed(config["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = [name.decode("utf-8") for name in tf_transform_output.vocabulary_by_name(features.LABEL_VOCAB_NAME)]
    logging.info("Training on %d classes: %s", len(class_names), class_names)
    classifier, summary = _train(fn_args, config, class_names, tf_transform_output)
    matrix = summary.pop("confusion_matrix")
    summary.update(
        class_names=class_names,
        config=config,
        trainable_params=int(np.sum([np.prod(w.shape) for w in classifier.trainable_weights])),
    )
    reports.write_reports(summary, matrix, fn_args.model_run_dir)
    classifier.get_layer(model_lib.BACKBONE_LAYER_NAME).save_weights(
        os.path.join(os.path.dirname(fn_args.serving_model_dir.rstrip("/")), BACKBONE_WEIGHTS)
    )
    signatures = _serving_signatures(
        classifier, tf_transform_output, class_names, config["image_size"], config["top_k"]
    )
    tf.saved_model.save(classifier, fn_args.serving_model_dir, signatures=signatures)
    _write_warmup_requests(fn_args, tf_transform_output)
    logging.info("Exported the serving model to %s", fn_args.serving_model_dir)
