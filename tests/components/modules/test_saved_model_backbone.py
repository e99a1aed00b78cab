"""SavedModel feature-vector backbones (savedmodel:/hub:): what trains in each stage, export, clear errors."""

from __future__ import annotations

import logging
import os
import shutil
import typing

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.modules import model as model_lib
from components.modules import saved_model_backbone, train_loop, training_setup
from components.modules.settings import InputRange, PlanStep, TrainerSettings
from tests import saved_models

SIZE = 32
STYLES = ("hub", "keras", "signature")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same tiny feature extractor as TF Hub publishes it, as Keras 3 exports it, and as a bare signature."""
    root = tmp_path_factory.mktemp("feature_vectors")
    return {
        "hub": saved_models.export_hub_style(saved_models.tiny_feature_extractor(SIZE), str(root / "hub")),
        "keras": saved_models.export_keras(saved_models.tiny_feature_extractor(SIZE), str(root / "keras")),
        "signature": saved_models.export_signature_only(
            saved_models.tiny_feature_extractor(SIZE), str(root / "signature")
        ),
    }


def _settings(path: str, **overrides: object) -> TrainerSettings:
    values = {
        "backbone": f"savedmodel:{path}",
        "image_size": SIZE,
        "stage1_epochs": 1,
        "stage2_epochs": 2,
        "stage2_learning_rate": 1e-2,
        "augmentation": "none",
        "seed": 0,
    }
    values.update(overrides)
    return TrainerSettings.model_validate(values)


def _classifier(settings: TrainerSettings) -> keras.Model:
    backbone = model_lib.build_backbone(
        settings.backbone, settings.image_size, settings.weights, input_range=settings.backbone_input_range
    )
    return model_lib.build_classifier(backbone, settings.backbone, 3, dropout=0.1)


def _data() -> tf.data.Dataset:
    images = np.random.default_rng(0).uniform(0, 255, (12, SIZE, SIZE, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, np.arange(12) % 3)).batch(4)


def _variables(loaded: object) -> list[tf.Variable]:
    """A loaded SavedModel's own tf.Variables, the ones its restored functions compute with."""
    return list(getattr(loaded, "variables", None) or loaded.signatures["serving_default"].variables)


def _saved_model_values(classifier: keras.Model) -> dict[str, np.ndarray]:
    loaded = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)._loaded
    return {variable.name: variable.numpy().copy() for variable in _variables(loaded)}


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {name for name in before if not np.array_equal(before[name], after[name])}


@pytest.mark.parametrize("style", STYLES)
def test_stage1_freezes_the_saved_model_and_stage2_trains_it_with_adam_but_not_batchnorm_statistics(
    exported: dict[str, str], style: str
) -> None:
    classifier = _classifier(_settings(exported[style]))
    assert classifier.output_shape == (None, 3)
    assert "pool" not in [layer.name for layer in classifier.layers]  # a feature vector needs no pooling
    before = _saved_model_values(classifier)
    model_lib.freeze_backbone(classifier)
    model_lib.compile_model(classifier, 1e-2)
    classifier.fit(_data(), epochs=1, verbose=0)
    after_stage1 = _saved_model_values(classifier)
    assert _changed(before, after_stage1) == set()
    assert model_lib.unfreeze_from(classifier, 0) == [model_lib.BACKBONE_LAYER_NAME]
    model_lib.compile_model(classifier, 1e-2)  # Adam: TFSMLayer's weight names made this fail
    classifier.fit(_data(), epochs=1, verbose=0)
    after_stage2 = _saved_model_values(classifier)
    assert _changed(after_stage1, after_stage2) == {"conv/kernel:0", "conv/bias:0", "bn/gamma:0", "bn/beta:0"}
    # BatchNorm moving statistics are neither trained nor updated by forward passes in training mode.
    assert not [name for name in _changed(before, after_stage2) if "moving" in name]


def test_train_two_stages_fine_tunes_the_whole_saved_model_and_says_so(
    exported: dict[str, str], tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(exported["hub"], fine_tune_schedule="progressive")
    classifier = _classifier(settings)
    with caplog.at_level(logging.INFO):
        result = train_loop.train_two_stages(classifier, _data(), _data(), settings, str(tmp_path))
    assert result.stage2_plan == [PlanStep(first_layer=model_lib.BACKBONE_LAYER_NAME, epochs=2)]
    assert result.stage2_trainable_layers == [model_lib.BACKBONE_LAYER_NAME]
    assert len(result.stage2.loss) == 2
    assert "fine_tune_schedule=progressive does not apply: all 4 of its trainable variables fine-tune" in caplog.text


def test_kept_stage1_weights_are_restored_into_the_saved_model(exported: dict[str, str]) -> None:
    """get_weights/set_weights (stage choice, early stopping) reach the SavedModel's own variables."""
    classifier = _classifier(_settings(exported["keras"]))
    stage1 = classifier.get_weights()
    before = _saved_model_values(classifier)
    model_lib.unfreeze_from(classifier, 0)
    model_lib.compile_model(classifier, 1e-1)
    classifier.fit(_data(), epochs=1, verbose=0)
    assert _changed(before, _saved_model_values(classifier))
    classifier.set_weights(stage1)
    assert _changed(before, _saved_model_values(classifier)) == set()


def test_exported_classifier_serves_the_fine_tuned_weights(exported: dict[str, str], tmp_path: object) -> None:
    backbone_copy = os.path.join(str(tmp_path), "backbone")
    shutil.copytree(exported["hub"], backbone_copy)
    classifier = _classifier(_settings(backbone_copy))
    model_lib.unfreeze_from(classifier, 0)
    model_lib.compile_model(classifier, 1e-1)
    classifier.fit(_data(), epochs=1, verbose=0)
    assert model_lib.save_backbone_weights(classifier, str(tmp_path)) is None  # no backbone.weights.h5
    assert not os.path.exists(model_lib.backbone_weights_path(str(tmp_path)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda data: tf.cast(tf.io.decode_png(data, 3), tf.float32),
            image_bytes,
            fn_output_signature=tf.TensorSpec([SIZE, SIZE, 3], tf.float32),
        )
        return {"probabilities": classifier(pixels, training=False)}

    path = os.path.join(str(tmp_path), "serving")
    tf.saved_model.save(classifier, path, signatures={"serving_default": serve.get_concrete_function()})
    pixels = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    expected = classifier(pixels.astype(np.float32), training=False).numpy()
    shutil.rmtree(backbone_copy)  # the export holds the backbone: its source folder is not needed
    reloaded = tf.saved_model.load(path)
    images = tf.stack([tf.io.encode_png(image) for image in pixels])
    served = reloaded.signatures["serving_default"](image_bytes=images)["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    exported_kernel = next(v for v in _variables(reloaded) if v.name == "conv/kernel:0")
    original_kernel = next(v for v in _variables(tf.saved_model.load(exported["hub"])) if v.name == "conv/kernel:0")
    assert not np.array_equal(exported_kernel.numpy(), original_kernel.numpy())


@pytest.mark.parametrize(("input_range", "low", "high"), [("0..1", 0.0, 1.0), ("-1..1", -1.0, 1.0), ("0..255", 0, 255)])
def test_pixels_are_mapped_to_the_range_the_model_expects(
    exported: dict[str, str], input_range: str, low: float, high: float
) -> None:
    assert set(typing.get_args(InputRange)) == set(model_lib.INPUT_RANGE_PREPROCESSING)
    classifier = _classifier(_settings(exported["hub"], backbone_input_range=input_range))
    mapped = np.array(classifier.get_layer("preprocess")(np.array([0.0, 255.0], np.float32).reshape(1, 1, 2, 1)))
    np.testing.assert_allclose(mapped.ravel(), [low, high], atol=1e-6)


def test_mixed_precision_keeps_the_saved_model_in_float32(exported: dict[str, str], tmp_path: object) -> None:
    with training_setup.precision(True):
        settings = _settings(exported["keras"], stage2_epochs=1)
        classifier = _classifier(settings)
        result = train_loop.train_two_stages(classifier, _data(), _data(), settings, str(tmp_path))
        assert classifier.get_layer(model_lib.BACKBONE_LAYER_NAME).compute_dtype == "float32"
        assert classifier.output.dtype == "float32"
    assert len(result.stage2.loss) == 1


def test_check_returns_the_feature_length_and_errors_are_one_clear_line(
    exported: dict[str, str], tmp_path: object
) -> None:
    assert saved_model_backbone.check(f"savedmodel:{exported['hub']}", SIZE) == saved_models.FEATURES
    errors = []
    for backbone, size in (
        (f"savedmodel:{exported['keras']}", 64),
        (f"savedmodel:{tmp_path}/missing", SIZE),
        (f"savedmodel:{tmp_path}", SIZE),  # a folder without a SavedModel
    ):
        with pytest.raises(saved_model_backbone.SavedModelBackboneError) as raised:
            saved_model_backbone.check(backbone, size)
        errors.append(str(raised.value))
    assert "takes 32x32 images: set image_size 32" in errors[0]
    assert "missing is not a folder" in errors[1]
    assert "not a loadable TF2 SavedModel" in errors[2]
    assert all("\n" not in error for error in errors)


def test_feature_maps_are_refused(tmp_path: object) -> None:
    inputs = keras.Input((SIZE, SIZE, 3))
    maps = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    path = saved_models.export_keras(maps, str(tmp_path / "maps"))
    with pytest.raises(saved_model_backbone.SavedModelBackboneError, match="not a feature vector"):
        saved_model_backbone.check(f"savedmodel:{path}", SIZE)
