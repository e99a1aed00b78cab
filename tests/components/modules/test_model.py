"""Backbones, weights sources and which layers train in each stage."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from components.modules import model as model_lib
from components.modules.settings import BACKBONES, AugmentationSettings, TrainerSettings

SIZE = 32


def _classifier(weights: str = "none", num_classes: int = 3) -> keras.Model:
    backbone = model_lib.build_backbone("MobileNetV2", SIZE, weights, alpha=0.35)
    return model_lib.build_classifier(backbone, "MobileNetV2", num_classes, dropout=0.2)


def _backbone(classifier: keras.Model) -> keras.Model:
    return classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)


FAMILY_REPRESENTATIVES = [
    "EfficientNetB0",
    "MobileNetV2",
    "MobileNetV3Small",
    "ResNet50",
    "ResNet50V2",
    "VGG16",
    "Xception",
]


# Each family's own preprocess_input, to check the model applies the right one.
FAMILY_PREPROCESS = {
    "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
    "MobileNetV3Small": keras.applications.mobilenet_v3.preprocess_input,
    "MobileNetV3Large": keras.applications.mobilenet_v3.preprocess_input,
    "EfficientNetB0": keras.applications.efficientnet.preprocess_input,
    "EfficientNetB1": keras.applications.efficientnet.preprocess_input,
    "EfficientNetB2": keras.applications.efficientnet.preprocess_input,
    "EfficientNetB3": keras.applications.efficientnet.preprocess_input,
    "ResNet50": keras.applications.resnet50.preprocess_input,
    "ResNet50V2": keras.applications.resnet_v2.preprocess_input,
    "Xception": keras.applications.xception.preprocess_input,
    "VGG16": keras.applications.vgg16.preprocess_input,
}


def test_every_registered_backbone_builds_with_its_family_preprocessing() -> None:
    assert set(FAMILY_PREPROCESS) == set(BACKBONES) == set(model_lib.PREPROCESSING)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for name, info in BACKBONES.items():
        classifier = model_lib.build_classifier(
            model_lib.build_backbone(name, info.min_size, "none"), name, num_classes=3, dropout=0.0
        )
        assert classifier.output_shape == (None, 3), name
        ours = np.array(classifier.get_layer("preprocess")(pixels))
        np.testing.assert_allclose(ours, np.array(FAMILY_PREPROCESS[name](pixels.copy())), atol=1e-4, err_msg=name)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_each_backbone_family_trains_a_step_and_outputs_probabilities(name: str) -> None:
    size = BACKBONES[name].min_size
    backbone = model_lib.build_backbone(name, size, "none")
    classifier = model_lib.build_classifier(backbone, name, num_classes=4, dropout=0.0)
    model_lib.freeze_backbone(classifier)
    model_lib.compile_model(classifier, 1e-2)
    images = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    head_before = np.array(classifier.get_layer(model_lib.OUTPUT_LAYER_NAME).weights[0])
    classifier.fit(images, np.arange(4), batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(head_before, np.array(classifier.get_layer(model_lib.OUTPUT_LAYER_NAME).weights[0]))
    probabilities = classifier.predict(images, verbose=0)
    assert probabilities.shape == (4, 4)
    assert np.allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-5)


def test_stage1_trains_only_the_head() -> None:
    classifier = _classifier()
    model_lib.freeze_backbone(classifier)
    trainable = {weight.path.split("/")[0] for weight in classifier.trainable_weights}
    assert trainable == {model_lib.OUTPUT_LAYER_NAME}


def test_stage2_unfreezes_top_layers_but_not_batchnorm() -> None:
    classifier = _classifier()
    model_lib.freeze_backbone(classifier)
    backbone = _backbone(classifier)
    names = model_lib.unfreeze_from(classifier, len(backbone.layers) - 10)
    top = backbone.layers[-10:]
    assert names == [
        layer.name for layer in top if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert names  # at least one conv layer in the top 10
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        elif layer not in top:
            assert not layer.trainable, layer.name
    assert all(not weight.trainable for layer in backbone.layers[:-10] for weight in layer.weights)


def test_backbone_runs_in_inference_mode_when_transferring() -> None:
    classifier = _classifier()
    model_lib.unfreeze_from(classifier, 0)
    batchnorm = next(
        layer for layer in _backbone(classifier).layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    before = [np.array(v) for v in batchnorm.non_trainable_weights]
    model_lib.compile_model(classifier, 1e-3)
    images = np.random.default_rng(1).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    classifier.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    after = [np.array(v) for v in batchnorm.non_trainable_weights]
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True)), "moving statistics must not change"


def test_weights_file_round_trip(tmp_path: object) -> None:
    source = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.35)
    path = f"{tmp_path}/source.weights.h5"
    source.save_weights(path)
    loaded = model_lib.build_backbone("MobileNetV2", SIZE, path, alpha=0.35)
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(source.weights, loaded.weights, strict=True))


def test_weights_errors_are_clear(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(model_lib.WeightsError, match="Weights file not found: /nope.weights.h5"):
        model_lib.build_backbone("MobileNetV2", SIZE, "/nope.weights.h5")
    other = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.5)
    path = f"{tmp_path}/wider.weights.h5"
    other.save_weights(path)
    with pytest.raises(model_lib.WeightsError, match="does not fit backbone"):
        model_lib.build_backbone("MobileNetV2", SIZE, path, alpha=0.35)

    def offline(**_: object) -> keras.Model:
        raise Exception("URL fetch failure: Name or service not known")  # what Keras raises offline

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(model_lib.WeightsError, match="--weights /path/to/backbone.weights.h5"):
        model_lib.build_backbone("MobileNetV2", SIZE, "imagenet")


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="Unknown backbone"):
        model_lib.build_backbone("AlexNet", SIZE, "none")
    with pytest.raises(ValueError, match="needs image_size >= 32"):
        model_lib.build_backbone("MobileNetV2", 16, "none")
    with pytest.raises(ValueError, match="at least 2 classes"):
        _classifier(num_classes=1)


def test_training_model_shares_weights_and_augments_only_in_training() -> None:
    classifier = _classifier()
    fitted = model_lib.training_model(classifier, AugmentationSettings(flip="both", rotation=0.2), seed=0)
    assert {id(w) for w in classifier.weights} <= {id(w) for w in fitted.weights}
    images = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(fitted(images, training=False), classifier(images, training=False), atol=1e-6)
    assert "augmentation" not in [layer.name for layer in classifier.layers]
    assert model_lib.training_model(classifier, AugmentationSettings.model_validate("none"), seed=0) is classifier


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"flip": "horizontal", "zoom": 0, "translation": 0}, {"flip": ("horizontal",)}),
        ({"flip": "vertical", "zoom": 0, "translation": 0}, {"flip": ("vertical",)}),
        ({"flip": "both", "zoom": 0, "translation": 0}, {"flip": ("horizontal_and_vertical",)}),
        ({"rotation": 0.25, "zoom": 0, "translation": 0}, {"rotation": (0.25,)}),
        ({"zoom": 0.3, "translation": 0}, {"zoom": (0.3,)}),
        ({"zoom": 0, "translation": 0.2}, {"translation": (0.2, 0.2)}),
        ({"zoom": 0, "translation": 0, "contrast": 0.4}, {"contrast": (0.4,)}),
        ({"zoom": 0, "translation": 0, "brightness": 0.3}, {"brightness": (0.3,)}),
        ({}, {"zoom": (0.1,), "translation": (0.1, 0.1)}),  # the default keeps orientation
    ],
)
def test_each_augmentation_option_builds_its_layer(settings: dict, expected: dict) -> None:
    layer = model_lib.augmentation(AugmentationSettings.model_validate(settings), seed=0)
    strengths = {
        "flip": lambda sub: (sub.mode,),
        "rotation": lambda sub: (sub.factor[1],),
        "zoom": lambda sub: (sub.height_factor,),
        "translation": lambda sub: (sub.height_factor, sub.width_factor),
        "contrast": lambda sub: (sub.factor[1],),
        "brightness": lambda sub: (sub.factor[1],),
    }
    assert {sub.name: strengths[sub.name](sub) for sub in layer.layers} == expected
    images = np.full((2, SIZE, SIZE, 3), 100.0, "float32")
    images[:, : SIZE // 2, : SIZE // 2] = 200.0  # a bright quadrant: every operation changes the image
    assert not np.allclose(np.array(layer(images, training=True)), images)
    np.testing.assert_array_equal(np.array(layer(images, training=False)), images)


def test_blocks_follow_the_architecture() -> None:
    backbone = _backbone(_classifier())
    blocks = model_lib.layer_blocks(backbone)
    names = [[backbone.layers[i].name for i in block] for block in blocks]
    assert names[-1][0] == "block_16_expand" and names[-1][-1] == "out_relu"  # the final conv joins block 16
    assert names[-2][0] == "block_15_expand" and "block_15_add" in names[-2]
    assert [i for block in blocks for i in block] == sorted(i for block in blocks for i in block)


def test_fine_tune_plans() -> None:
    backbone = _backbone(_classifier())
    count = len(backbone.layers)
    settings = TrainerSettings(
        fine_tune_schedule="top_n", stage2_epochs=5, fine_tune_layers=10, fine_tune_fraction=0.25, epochs_per_block=2
    )
    assert model_lib.fine_tune_plan(backbone, settings) == [(count - 10, 5)]
    fraction = settings.model_copy(update={"fine_tune_schedule": "fraction"})
    assert model_lib.fine_tune_plan(backbone, fraction) == [(count - round(0.25 * count), 5)]
    plan = model_lib.fine_tune_plan(backbone, settings.model_copy(update={"fine_tune_schedule": "progressive"}))
    blocks = model_lib.layer_blocks(backbone)
    assert plan == [(blocks[-1][0], 2), (blocks[-2][0], 2), (blocks[-3][0], 1)]


def test_weights_from_a_uri_are_copied_locally(tmp_path: object) -> None:
    source = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.35)
    path = f"{tmp_path}/source.weights.h5"
    source.save_weights(path)
    # file:// goes through tf.io.gfile like gs:// or s3:// would.
    loaded = model_lib.build_backbone("MobileNetV2", SIZE, f"file://{path}", alpha=0.35)
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(source.weights, loaded.weights, strict=True))
