"""Keras model building: backbone registry, classifier head and the two training stages.

The model takes float pixels in [0, 255] (``[batch, size, size, 3]``); each
backbone's own preprocessing runs inside the model, so serving only has to
decode and resize. Backbones are keras.applications models or TF2 feature-vector
SavedModels (``hub:``/``savedmodel:``, see ``saved_model_backbone.py``). We use
Keras 3 (``import keras``) throughout and never ``tf.keras``, so the outcome does
not depend on TF_USE_LEGACY_KERAS or import order.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable

import keras
import tensorflow as tf

from components.modules.saved_model_backbone import SavedModelBackbone
from components.modules.settings import (
    BACKBONES,
    DEFAULT_INPUT_RANGE,
    AugmentationSettings,
    TrainerSettings,
    is_saved_model_backbone,
)

BACKBONE_LAYER_NAME = "backbone"
OUTPUT_LAYER_NAME = "probabilities"
FROM_SCRATCH_BN_MOMENTUM = 0.9
# The Trainer saves the backbone under this name next to the serving model, so a
# later run can transfer it (weights=base_model).
BACKBONE_WEIGHTS = "backbone.weights.h5"
WEIGHTS_HELP = (
    "Pass a local weights file instead (--weights /path/to/backbone.weights.h5 or a Keras "
    "application .h5 file downloaded on a machine with network access, e.g. from "
    "https://storage.googleapis.com/tensorflow/keras-applications/), or --weights none to "
    "train from scratch."
)


class WeightsError(RuntimeError):
    """Pretrained weights could not be loaded."""


def backbone_weights_path(model_artifact_uri: str) -> str:
    """Where the Trainer saves the backbone of a Model artifact (next to ``Format-Serving``)."""
    return os.path.join(model_artifact_uri.rstrip("/"), BACKBONE_WEIGHTS)


def _scale_minus_one_to_one() -> keras.layers.Layer:
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")


def _identity() -> keras.layers.Layer:
    return keras.layers.Identity(name="preprocess")


def _caffe() -> keras.layers.Layer:
    # RGB -> BGR and ImageNet mean subtraction, as keras.applications.resnet50.preprocess_input.
    return keras.layers.Lambda(keras.applications.resnet50.preprocess_input, name="preprocess")


# Each backbone's input preprocessing ([0, 255] RGB in); names and limits are in settings.BACKBONES.
# MobileNetV3 and EfficientNet models rescale their [0, 255] input themselves.
PREPROCESSING: dict[str, Callable[[], keras.layers.Layer]] = {
    "MobileNetV2": _scale_minus_one_to_one,
    "MobileNetV3Small": _identity,
    "MobileNetV3Large": _identity,
    "EfficientNetB0": _identity,
    "EfficientNetB1": _identity,
    "EfficientNetB2": _identity,
    "EfficientNetB3": _identity,
    "ResNet50": _caffe,
    "ResNet50V2": _scale_minus_one_to_one,
    "Xception": _scale_minus_one_to_one,
    "VGG16": _caffe,
}


# What a SavedModel backbone expects, from the [0, 255] pixels the classifier takes.
INPUT_RANGE_PREPROCESSING: dict[str, Callable[[], keras.layers.Layer]] = {
    "0..1": lambda: keras.layers.Rescaling(1.0 / 255.0, name="preprocess"),
    "-1..1": _scale_minus_one_to_one,
    "0..255": _identity,
}


def backbone_constructor(name: str) -> Callable[..., keras.Model]:
    """The ``keras.applications`` function of a backbone named in ``settings.BACKBONES``."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Expected one of {sorted(BACKBONES)}. Received: backbone={name!r}")
    return getattr(keras.applications, name)


def build_backbone(
    name: str, image_size: int, weights: str, alpha: float = 1.0, input_range: str = DEFAULT_INPUT_RANGE
) -> keras.Model | SavedModelBackbone:
    """Builds a headless backbone with ``imagenet``, ``none`` or file weights.

    ``hub:``/``savedmodel:`` backbones load their SavedModel with its own weights
    (``weights`` and ``alpha`` do not apply; ``input_range`` is its pixel range).

    Raises:
      ValueError: On an unknown backbone or an input size below its minimum.
      WeightsError: If the weights cannot be downloaded or loaded.
      saved_model_backbone.SavedModelBackboneError, hub_cache.HubError: If a SavedModel backbone cannot be used.
    """
    if is_saved_model_backbone(name):
        return SavedModelBackbone(name, image_size, input_range, name=BACKBONE_LAYER_NAME)
    constructor = backbone_constructor(name)
    info = BACKBONES[name]
    if image_size < info.min_size:
        raise ValueError(f"{name} needs image_size >= {info.min_size}. Received: image_size={image_size}")
    kwargs = {"input_shape": (image_size, image_size, 3), "include_top": False}
    if info.has_alpha:
        kwargs["alpha"] = alpha
    if weights == "imagenet":
        try:
            backbone = constructor(weights="imagenet", **kwargs)
        except Exception as error:  # Keras raises bare Exception on a failed download.
            raise WeightsError(f"Could not load ImageNet weights for {name}: {error}. {WEIGHTS_HELP}") from error
    else:
        backbone = constructor(weights=None, **kwargs)
        if weights == "none":
            _speed_up_batchnorm_statistics(backbone)
        else:
            load_weights_file(backbone, weights)
    backbone.name = BACKBONE_LAYER_NAME
    return backbone


def save_backbone_weights(classifier: keras.Model, model_dir: str) -> str | None:
    """Saves the backbone as ``backbone.weights.h5`` in ``model_dir`` (for ``weights: base_model``).

    Returns:
      The file written, or None for a SavedModel backbone: its fine-tuned weights
      are in the serving SavedModel, and weights=base_model applies only to
      keras.applications backbones (the config refuses the combination).
    """
    backbone = classifier.get_layer(BACKBONE_LAYER_NAME)
    if isinstance(backbone, SavedModelBackbone):
        logging.info(
            "No %s for the SavedModel backbone %s (weights=base_model is for keras.applications).",
            BACKBONE_WEIGHTS,
            backbone.source,
        )
        return None
    path = backbone_weights_path(model_dir)
    backbone.save_weights(path)
    return path


def _speed_up_batchnorm_statistics(backbone: keras.Model) -> None:
    """From scratch, BatchNorm moving statistics start at 0/1; with the
    applications' momentum of 0.999 they take thousands of steps to follow the
    data, and eval outputs stay near uniform meanwhile. 0.9 tracks within tens."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = FROM_SCRATCH_BN_MOMENTUM


def load_weights_file(backbone: keras.Model, path: str) -> None:
    """Loads a weights file (local path or gs://, s3://... URI) into ``backbone``.

    Raises:
      WeightsError: If the file is missing or does not fit the backbone.
    """
    if not tf.io.gfile.exists(path):
        raise WeightsError(f"Weights file not found: {path}. {WEIGHTS_HELP}")
    with tempfile.TemporaryDirectory() as folder:
        local = path
        if "://" in path:  # Keras reads local files only.
            local = os.path.join(folder, os.path.basename(path))
            tf.io.gfile.copy(path, local)
        try:
            backbone.load_weights(local)
        except Exception as error:  # noqa: BLE001 (h5py and Keras raise many types)
            raise WeightsError(
                f"Weights file {path} does not fit backbone {backbone.name!r} "
                f"({len(backbone.weights)} weight tensors): {error}"
            ) from error
    logging.debug("Loaded backbone weights from %s", path)


_FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}


def augmentation(settings: AugmentationSettings, seed: int) -> keras.Sequential:
    """The configured random operations as Keras layers (they act only when training).

    Raises:
      ValueError: If no operation is on (leave the layer out instead).
    """
    layers: list[keras.layers.Layer] = []
    if settings.flip != "none":
        layers.append(keras.layers.RandomFlip(_FLIP_MODES[settings.flip], seed=seed, name="flip"))
    if settings.rotation:
        layers.append(keras.layers.RandomRotation(settings.rotation, seed=seed, name="rotation"))
    if settings.zoom:
        layers.append(keras.layers.RandomZoom(settings.zoom, seed=seed, name="zoom"))
    if settings.translation:
        layers.append(
            keras.layers.RandomTranslation(settings.translation, settings.translation, seed=seed, name="translation")
        )
    if settings.contrast:
        layers.append(keras.layers.RandomContrast(settings.contrast, seed=seed, name="contrast"))
    if settings.brightness:
        layers.append(
            keras.layers.RandomBrightness(settings.brightness, value_range=(0.0, 255.0), seed=seed, name="brightness")
        )
    if not layers:
        raise ValueError("augmentation() needs at least one operation; leave the layer out for 'none'.")
    return keras.Sequential(layers, name="augmentation")


def build_classifier(
    backbone: keras.Model,
    backbone_name: str,
    num_classes: int,
    dropout: float,
    backbone_inference_mode: bool = True,
) -> keras.Model:
    """The inference model: pixels -> preprocessing -> backbone -> pooling -> dropout -> Dense.

    A SavedModel backbone returns a feature vector already: no pooling layer.

    Args:
      backbone: A headless backbone from :func:`build_backbone`.
      backbone_name: Its registry name (selects the preprocessing; a SavedModel
        backbone's comes from its ``input_range``).
      num_classes: Number of output classes.
      dropout: Dropout rate before the output layer.
      backbone_inference_mode: Call the backbone with ``training=False`` so its
        BatchNorm layers use their moving statistics (transfer learning). Use
        False only when training from scratch.

    Returns:
      The classifier; its output layer is a float32 softmax named ``probabilities``.
    """
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    saved_model = isinstance(backbone, SavedModelBackbone)
    size = backbone.image_size if saved_model else backbone.input_shape[1]
    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    preprocessing = INPUT_RANGE_PREPROCESSING[backbone.input_range] if saved_model else PREPROCESSING[backbone_name]
    x = preprocessing()(inputs)
    x = backbone(x, training=False) if backbone_inference_mode else backbone(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"Backbone {backbone_name} returns shape {x.shape}: expected feature maps or vectors.")
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER_NAME)(x)
    return keras.Model(inputs, outputs, name="classifier")


def training_model(classifier: keras.Model, augment: AugmentationSettings, seed: int) -> keras.Model:
    """The model to fit: the classifier behind the augmentation layers, if any are on.

    The augmentation layers are left out of the exported classifier, so serving
    never sees them; the training model shares the classifier's weights.
    """
    if not augment.enabled:
        return classifier
    size = classifier.input_shape[1]
    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    return keras.Model(inputs, classifier(augmentation(augment, seed)(inputs)), name="classifier_training")


def freeze_backbone(model: keras.Model) -> None:
    """Stage 1: only the head trains."""
    model.get_layer(BACKBONE_LAYER_NAME).trainable = False


_BLOCK_NAME = re.compile(r"^(block_?\d+[a-z]?|conv\d+_block\d+|expanded_conv(?:_\d+)?)_")


def layer_blocks(backbone: keras.Model) -> list[list[int]]:
    """Backbone layer indices grouped into the architecture's blocks, bottom to top.

    Blocks come from the Keras applications' layer names (``block_3_*`` in
    MobileNetV2, ``conv4_block2_*`` in ResNets, ``block6a_*`` in EfficientNets,
    ``expanded_conv_5_*`` in MobileNetV3, ``block5_*`` in VGG/Xception); layers
    between blocks (adds, the final conv) join the block before them.
    """
    blocks: list[list[int]] = []
    current = None
    for index, layer in enumerate(backbone.layers):
        match = _BLOCK_NAME.match(layer.name)
        key = match.group(1) if match else current
        if key != current or not blocks:
            blocks.append([])
            current = key
        blocks[-1].append(index)
    return [block for block in blocks if any(backbone.layers[i].weights for i in block)]


def fine_tune_plan(backbone: keras.Model | SavedModelBackbone, settings: TrainerSettings) -> list[tuple[int, int]]:
    """Stage 2 as a list of (first unfrozen layer index, epochs).

    ``top_n``: the top ``fine_tune_layers`` layers for all ``stage2_epochs``.
    ``fraction``: the top ``fine_tune_fraction`` of the layers.
    ``progressive``: one more block from the top every ``epochs_per_block`` epochs.
    A SavedModel backbone has no layers to pick: all of it for all ``stage2_epochs``.
    """
    epochs = settings.stage2_epochs
    if isinstance(backbone, SavedModelBackbone):
        logging.info(
            "Stage 2: a SavedModel backbone has no layers to pick, so fine_tune_schedule=%s does not apply: all "
            "%d of its trainable variables fine-tune for %d epochs at learning rate %g, in inference mode "
            "(BatchNorm statistics fixed).",
            settings.fine_tune_schedule,
            backbone.trainable_variable_count,
            epochs,
            settings.stage2_learning_rate,
        )
        return [(0, epochs)]
    if settings.fine_tune_schedule == "auto":
        raise ValueError("fine_tune_schedule=auto has no fixed plan: auto_schedule.select chooses it on validation.")
    count = len(backbone.layers)
    if settings.fine_tune_schedule == "top_n":
        return [(max(count - settings.fine_tune_layers, 0), epochs)]
    if settings.fine_tune_schedule == "fraction":
        return [(count - max(1, round(settings.fine_tune_fraction * count)), epochs)]
    plan = []
    remaining = epochs
    for block in reversed(layer_blocks(backbone)):
        if remaining <= 0:
            break
        step = min(settings.epochs_per_block, remaining)
        plan.append((block[0], step))
        remaining -= step
    return plan


def layer_name(backbone: keras.Model | SavedModelBackbone, index: int) -> str:
    """Name of the backbone's layer ``index`` (a SavedModel backbone is one layer: its own name)."""
    return backbone.name if isinstance(backbone, SavedModelBackbone) else backbone.layers[index].name


def unfreeze_from(model: keras.Model, first_index: int) -> list[str]:
    """Unfreezes backbone layers from ``first_index`` up, BatchNorm excepted.

    A SavedModel backbone unfreezes whole (its trainable variables; BatchNorm
    statistics are not among them and it runs in inference mode).

    Returns:
      Names of the backbone layers with weights that are now trainable.
    """
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    backbone.trainable = True
    if isinstance(backbone, SavedModelBackbone):
        return [backbone.name]
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= first_index and not isinstance(layer, keras.layers.BatchNormalization)
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]


class ConfusionAccuracy(keras.metrics.Metric):
    """Accuracy, as ``SparseCategoricalAccuracy`` computes it, that also keeps the pass's confusion matrix.

    The matrix (rows: true classes, columns: predictions) sums every batch of one pass
    (Keras resets metrics before each epoch and each validation pass); the accuracy is
    its trace over its sum. Compiled as the ``accuracy`` metric, the validation pass
    Keras runs after each epoch leaves the matrix of the model as it was then, so the
    Trainer needs no pass of its own (``train_loop.fit_stage``).
    """

    def __init__(self, num_classes: int, name: str = "accuracy", **kwargs: object) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.matrix = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="matrix"
        )

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> None:  # noqa: D102
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        predicted = tf.reshape(tf.argmax(y_pred, axis=-1, output_type=tf.int32), [-1])
        # One-hot rows times one-hot columns: XLA compiles it (bincount's output shape is data-dependent), and
        # it has none of tf.math.confusion_matrix's per-step range assertions.
        truth = tf.one_hot(labels, self.num_classes, dtype=self.matrix.dtype)
        guess = tf.one_hot(predicted, self.num_classes, dtype=self.matrix.dtype)
        self.matrix.assign_add(tf.matmul(truth, guess, transpose_a=True))

    def result(self) -> tf.Tensor:  # noqa: D102
        return tf.linalg.trace(self.matrix) / tf.maximum(tf.reduce_sum(self.matrix), 1.0)

    def reset_state(self) -> None:  # noqa: D102
        self.matrix.assign(tf.zeros_like(self.matrix))

    def get_config(self) -> dict:  # noqa: D102
        return {**super().get_config(), "num_classes": self.num_classes}


def confusion_accuracy(model: keras.Model) -> ConfusionAccuracy | None:
    """The model's compiled :class:`ConfusionAccuracy`, if it has one."""
    pending = list(model.metrics)
    while pending:
        metric = pending.pop()
        if isinstance(metric, ConfusionAccuracy):
            return metric
        pending.extend(getattr(metric, "metrics", []) if metric is not model else [])
    return None


def compile_model(
    model: keras.Model,
    learning_rate: float,
    jit_compile: bool = False,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> None:
    """Adam (or ``optimizer``) + sparse categorical cross-entropy, :class:`ConfusionAccuracy` as metric; optional XLA.

    The metric keeps each validation pass's confusion matrix, which ``train_loop.fit_stage`` reads.
    """
    model.compile(
        jit_compile=jit_compile,
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[ConfusionAccuracy(int(model.outputs[0].shape[-1]))],
    )
