"""Backbones from TF2 image feature-vector SavedModels: ``hub:<URL>`` and ``savedmodel:<path>``.

A feature-vector model takes a batch of images ``[batch, size, size, 3]`` (floats in
the range its publisher documents, ``backbone_input_range``) and returns
``[batch, features]``; the classifier puts its head on top.

Why a layer of our own (measured with TF 2.16.2, Keras 3.12.4; still so with TF 2.21.0,
Keras 3.15.1):

- ``hub.KerasLayer`` is a tf_keras layer: a Keras 3 model refuses it, and the
  tensorflow_hub that tfx pins (0.15) does not import under TF 2.16 or 2.21.
- ``keras.layers.TFSMLayer`` trains frozen, but names its Keras weights after the
  TF variables (``conv/kernel:0`` -> ``conv_kernel:0``). Keras 3 optimizers name
  their slot variables after the weight's path
  (``BaseOptimizer.add_variable_from_reference``: ``f"{path}_momentum"``), and a
  name scope cannot contain ``:``, so Adam fails with "'conv_kernel:0_momentum' is
  not a valid scope name" (plain SGD keeps no slots, which is why it trained). It
  also calls the SavedModel without ``training=False``.

:class:`SavedModelBackbone` loads the SavedModel with ``tf.saved_model.load`` and
wraps each of its own ``tf.Variable`` objects in a ``keras.Variable`` with a clean
name (``backbone/conv_kernel``): the restored functions keep using the very same
variables, so whatever the optimizer changes is what the model computes with and
what ``tf.saved_model.save`` exports. The model is always called in inference mode
(``training=False`` where its function takes that argument; Keras exports and
serving signatures are traced that way), so BatchNorm statistics stay fixed in
both stages and only the trainable variables (the SavedModel's own
``trainable_variables`` where it lists them) change in stage 2.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from components.modules import hub_cache
from components.modules.settings import DEFAULT_INPUT_RANGE, HUB_PREFIX, SAVEDMODEL_PREFIX

_SIGNATURE = "serving_default"


class SavedModelBackboneError(RuntimeError):
    """A ``hub:``/``savedmodel:`` backbone cannot be found, loaded or used as a feature extractor."""


def local_path(backbone: str) -> str:
    """The SavedModel folder (path or URI) of ``hub:``/``savedmodel:`` backbone; hub: handles resolve via the cache.

    Raises:
      hub_cache.HubError: If a hub: model is neither cached nor downloadable.
      SavedModelBackboneError: If a savedmodel: path does not exist.
    """
    if backbone.startswith(HUB_PREFIX):
        return hub_cache.resolve(backbone.removeprefix(HUB_PREFIX))
    path = backbone.removeprefix(SAVEDMODEL_PREFIX)
    if not tf.io.gfile.isdir(path):
        raise SavedModelBackboneError(f"backbone {backbone}: {path} is not a folder. Pass a SavedModel folder.")
    return path


class SavedModelBackbone(keras.layers.Layer):
    """A feature-vector SavedModel as a Keras 3 layer whose variables any optimizer can train.

    Args:
      backbone: ``hub:<URL>`` or ``savedmodel:<path or URI>``.
      image_size: Side of the square images it is fed; a model with a fixed
        input size must take this one.
      input_range: Pixel range the model expects (``0..1``, ``-1..1`` or ``0..255``);
        the classifier's preprocessing maps [0, 255] to it.
      name: Layer name (the classifier finds its backbone by it).

    Raises:
      SavedModelBackboneError: If it cannot be loaded, has no single-image feature
        function, or takes another input size.
      hub_cache.HubError: If a hub: model is neither cached nor downloadable.
    """

    def __init__(
        self, backbone: str, image_size: int, input_range: str = DEFAULT_INPUT_RANGE, name: str = "backbone"
    ) -> None:
        # float32 even under mixed precision: the restored graph has fixed dtypes.
        super().__init__(name=name, dtype="float32")
        self.source, self.image_size, self.input_range = backbone, image_size, input_range
        path = local_path(backbone)
        try:
            self._loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SavedModelBackboneError(
                f"backbone {backbone}: not a loadable TF2 SavedModel ({first_line})"
            ) from None
        self._function, spec, self.entry_point = _feature_function(self._loaded, backbone)
        _check_input(spec, image_size, backbone)
        trainable, others = _split_variables(self._loaded)
        with keras.name_scope(self.name):
            # keras.Variable keeps the tf.Variable it is given (no copy): training updates the SavedModel's own.
            self._own_trainable = [keras.Variable(v, trainable=True, name=_clean(v.name)) for v in trainable]
            self._own_fixed = [keras.Variable(v, trainable=False, name=_clean(v.name)) for v in others]
        self.built = True
        logging.info(
            "Backbone %s: %s, %d trainable and %d fixed variables",
            backbone,
            self.entry_point,
            len(trainable),
            len(others),
        )

    @property
    def trainable_variable_count(self) -> int:
        """How many variables stage 2 trains (the SavedModel's trainable ones)."""
        return len(self._own_trainable)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Features ``[batch, features]``, always in inference mode (BatchNorm statistics stay fixed)."""
        del training
        return _single_output(self._function(inputs), self.source)

    def get_config(self) -> dict[str, Any]:
        """The arguments that rebuild the layer (it is exported with tf.saved_model.save, not as .keras)."""
        return {
            **super().get_config(),
            "backbone": self.source,
            "image_size": self.image_size,
            "input_range": self.input_range,
        }


def check(backbone: str, image_size: int) -> int:
    """Loads the backbone and runs one black image through it (the preflight).

    Returns:
      The length of its feature vector.

    Raises:
      SavedModelBackboneError: If it cannot be used as a feature-vector backbone at ``image_size``.
      hub_cache.HubError: If a hub: model is neither cached nor downloadable.
    """
    layer = SavedModelBackbone(backbone, image_size)
    features = layer(np.zeros((1, image_size, image_size, 3), np.float32))
    if len(features.shape) != 2:
        raise SavedModelBackboneError(
            f"backbone {backbone} returns shape {tuple(features.shape)} for one image, not a feature vector "
            "[batch, features]: use the model's feature_vector variant."
        )
    return int(features.shape[-1])


def _clean(name: str) -> str:
    """``block_1/conv/kernel:0`` -> ``block_1_conv_kernel``: a name Keras paths and optimizer slots accept."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", re.sub(r":\d+$", "", name)) or "variable"


def _feature_function(loaded: Any, backbone: str) -> tuple[Callable[[tf.Tensor], Any], tf.TensorSpec | None, str]:
    """The function that maps images to features, its input spec, and a name for the logs.

    In order: the object's ``__call__`` (TF Hub's reusable SavedModel API; with
    ``training=False`` where it takes that argument), ``serve`` (Keras 3
    ``model.export``), and the ``serving_default`` signature with one input.
    """
    if callable(loaded) and hasattr(loaded, "__call__"):  # noqa: B004 (restored objects: both checks needed)
        function = loaded.__call__
        spec = getattr(function, "function_spec", None)
        arguments = (spec.fullargspec.args + spec.fullargspec.kwonlyargs) if spec else []
        if "training" in arguments:
            return (lambda images: loaded(images, training=False)), _first_input(function), "__call__(training=False)"
        return (lambda images: loaded(images)), _first_input(function), "__call__"
    serve = getattr(loaded, "serve", None)
    if serve is not None and callable(serve):
        return serve, _first_input(serve), "serve"
    signature = getattr(loaded, "signatures", {}).get(_SIGNATURE)
    if signature is not None:
        inputs = signature.structured_input_signature[1]
        if len(inputs) == 1:
            ((key, spec),) = inputs.items()
            return (lambda images: signature(**{key: images})), spec, f"signature {_SIGNATURE}({key})"
    raise SavedModelBackboneError(
        f"backbone {backbone}: the SavedModel has no __call__ function, serve endpoint or one-input "
        f"{_SIGNATURE} signature: is it a TF2 feature-vector SavedModel (not a TF1 Hub module)?"
    )


def _first_input(function: Any) -> tf.TensorSpec | None:
    for concrete in getattr(function, "concrete_functions", []):
        args = concrete.structured_input_signature[0]
        if args and isinstance(args[0], tf.TensorSpec):
            return args[0]
    return None


def _check_input(spec: tf.TensorSpec | None, image_size: int, backbone: str) -> None:
    if spec is None or spec.shape.rank is None:
        return
    if spec.shape.rank != 4 or spec.shape[-1] not in (None, 3):
        raise SavedModelBackboneError(
            f"backbone {backbone} takes inputs of shape {spec.shape}, not a batch of RGB images [batch, size, size, 3]."
        )
    height, width = spec.shape[1], spec.shape[2]
    if (height, width) != (None, None) and (height, width) != (image_size, image_size):
        raise SavedModelBackboneError(
            f"backbone {backbone} takes {height}x{width} images: set image_size {height}. "
            f"Received: image_size={image_size}"
        )


def _split_variables(loaded: Any) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, fixed) variables: the SavedModel's own lists where it has them (TF Hub, Keras export)."""
    variables = list(getattr(loaded, "variables", []) or [])
    if not variables:  # a signature-only SavedModel: the variables its graph captures
        signature = getattr(loaded, "signatures", {}).get(_SIGNATURE)
        variables = list(signature.variables) if signature is not None else []
    listed = getattr(loaded, "trainable_variables", None)
    trainable_ids = {id(v) for v in listed} if listed is not None else {id(v) for v in variables if v.trainable}
    trainable = [v for v in variables if id(v) in trainable_ids]
    return trainable, [v for v in variables if id(v) not in trainable_ids]


def _single_output(outputs: Any, backbone: str) -> tf.Tensor:
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise SavedModelBackboneError(
                f"backbone {backbone} returns several outputs ({', '.join(sorted(outputs))}); a feature-vector "
                "model returns one."
            )
        return next(iter(outputs.values()))
    return outputs
