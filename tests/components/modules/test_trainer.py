"""Two-stage training: what trains when, which stage is kept, what is logged."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from components.modules import features, train_data, train_loop, training_setup
from components.modules import model as model_lib
from components.modules.settings import TrainerSettings
from pipeline.demo import demo

SIZE = 32


def _config(**overrides: object) -> TrainerSettings:
    values = {
        "image_size": SIZE,
        "weights": "/pretrained/backbone.weights.h5",
        "stage1_epochs": 1,
        "stage2_epochs": 1,
        "stage1_learning_rate": 1e-3,
        "stage2_learning_rate": 1e-5,
        "fine_tune_schedule": "top_n",
        "fine_tune_layers": 8,
        "augmentation": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1},
        "seed": 0,
    }
    values.update(overrides)
    return TrainerSettings.model_validate(values)


def _data(batch: int = 4) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (12, SIZE, SIZE, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, np.arange(12) % 3)).batch(batch)


def _classifier() -> keras.Model:
    backbone = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.35)
    return model_lib.build_classifier(backbone, "MobileNetV2", 3, dropout=0.1)


def _patch_eval(monkeypatch: pytest.MonkeyPatch, accuracies: list[float]) -> None:
    """Each fit's kept validation reports the next accuracy, with a matrix that tells the fits apart."""
    checks = iter(train_loop.ValidationCheck(value, np.full((3, 3), index)) for index, value in enumerate(accuracies))
    monkeypatch.setattr(train_loop, "kept_validation", lambda *_: next(checks))


def test_worse_fine_tuning_restores_stage1_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    classifier = _classifier()
    _patch_eval(monkeypatch, [0.9, 0.5])
    captured = {}
    original_unfreeze = model_lib.unfreeze_from

    def unfreeze(model: keras.Model, first_index: int) -> list[str]:
        captured["stage1"] = [np.array(w) for w in model.weights]
        return original_unfreeze(model, first_index)

    monkeypatch.setattr(model_lib, "unfreeze_from", unfreeze)
    with caplog.at_level(logging.WARNING):
        summary = train_loop.train_two_stages(
            classifier, _data(), _data(), _config(stage2_learning_rate=0.5), str(tmp_path)
        )
    assert summary.kept_stage == 1
    assert (summary.head_only_validation_accuracy, summary.fine_tuned_validation_accuracy) == (0.9, 0.5)
    assert summary.validation_confusion_matrix == np.full((3, 3), 0).tolist()  # the kept stage's pass
    assert "keeping the stage 1 (head-only) model" in caplog.text
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(captured["stage1"], classifier.weights, strict=True))
    assert len(summary.stage1.accuracy) == 1 and len(summary.stage2.val_accuracy) == 1


def test_better_fine_tuning_is_kept_and_trains_top_layers(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    classifier = _classifier()
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    frozen_before = [np.array(w) for w in backbone.layers[1].weights]
    _patch_eval(monkeypatch, [0.5, 0.7])
    summary = train_loop.train_two_stages(classifier, _data(), _data(), _config(stage2_epochs=2), str(tmp_path))
    assert summary.kept_stage == 2
    assert summary.validation_confusion_matrix == np.full((3, 3), 1).tolist()  # the kept stage's pass
    assert summary.stage2_trainable_layers and all(
        not isinstance(backbone.get_layer(name), keras.layers.BatchNormalization)
        for name in summary.stage2_trainable_layers
    )
    assert len(summary.stage2.loss) == 2
    # Layers below the top N never changed.
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(frozen_before, backbone.layers[1].weights, strict=True))


def test_validation_check_matches_keras_evaluate_and_counts_every_image() -> None:
    classifier = _classifier()
    model_lib.compile_model(classifier, 1e-3)
    classifier.fit(_data(), epochs=2, verbose=0)
    uneven = _data(batch=5)  # a short last batch
    check = train_loop.validation_check(classifier, uneven)
    assert check.confusion_matrix.shape == (3, 3) and check.confusion_matrix.sum() == 12
    assert check.confusion_matrix.sum(axis=1).tolist() == [4, 4, 4]  # rows are the true classes
    expected = classifier.evaluate(uneven, verbose=0, return_dict=True)["accuracy"]
    assert check.accuracy == pytest.approx(expected)


class _SpoilLastEpoch(keras.callbacks.Callback):
    """Before the last epoch: the head always answers class 0, and nothing trains (1/3 on these images)."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self._last = last

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self._last:
            head = self.model.layers[-1]
            kernel, bias = head.get_weights()
            head.set_weights([np.zeros_like(kernel), np.eye(len(bias), dtype=bias.dtype)[0]])
            self.model.optimizer.learning_rate.assign(0.0)


@pytest.mark.parametrize("patience", [0, 2])
def test_fit_keeps_the_validation_of_the_weights_it_ends_with(tmp_path: object, patience: int) -> None:
    """The kept epoch's matrix (from Keras's own pass after it) is what a new pass on the final weights gives:
    the last epoch's, or with patience the restored best epoch's (the last one is made the worst)."""
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 3
    images = (rng.uniform(0, 30, (12, SIZE, SIZE, 3)) + labels[:, None, None, None] * 100).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(5)  # a short last batch
    backbone = model_lib.build_backbone("MobileNetV2", SIZE, demo.SHIPPED_WEIGHTS, alpha=demo.ALPHA)
    classifier = model_lib.build_classifier(backbone, "MobileNetV2", 3, dropout=0.0)
    model_lib.freeze_backbone(classifier)  # the head alone separates three brightness levels in a few epochs
    model_lib.compile_model(classifier, 0.1)
    fitted = train_loop.fit_stage(
        classifier, data, data, (0, 6), str(tmp_path), patience + 4 * bool(patience), (_SpoilLastEpoch(5),)
    )
    history = fitted.history.val_accuracy
    assert len(history) == 6 and history[-1] == pytest.approx(1 / 3)
    assert max(history[:-1]) > history[-1]  # an earlier epoch was better: with patience, it is restored
    again = train_loop.validation_check(classifier, data)
    assert fitted.kept.confusion_matrix.tolist() == again.confusion_matrix.tolist()
    assert fitted.kept.confusion_matrix.sum() == 12
    assert fitted.kept.accuracy == again.accuracy
    assert fitted.kept.accuracy == pytest.approx(max(history) if patience else history[-1])


def test_confusion_accuracy_is_sparse_categorical_accuracy() -> None:
    rng = np.random.default_rng(1)
    labels, scores = rng.integers(0, 4, 50), rng.uniform(size=(50, 4)).astype("float32")
    ours, keras_own = model_lib.ConfusionAccuracy(4), keras.metrics.SparseCategoricalAccuracy()
    for start in range(0, 50, 16):  # batches, a short last one
        ours.update_state(labels[start : start + 16], scores[start : start + 16])
        keras_own.update_state(labels[start : start + 16], scores[start : start + 16])
    assert float(ours.result()) == pytest.approx(float(keras_own.result()))
    matrix = ours.matrix.numpy()
    assert matrix.sum() == 50 and matrix[labels[0], scores[0].argmax()] >= 1
    ours.reset_state()
    assert ours.matrix.numpy().sum() == 0


def test_from_scratch_trains_everything_in_one_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    backbone = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.35)
    classifier = model_lib.build_classifier(backbone, "MobileNetV2", 3, 0.1, backbone_inference_mode=False)
    first_conv = [np.array(w) for w in backbone.layers[1].weights]
    _patch_eval(monkeypatch, [0.4])
    summary = train_loop.train_two_stages(classifier, _data(), _data(), _config(weights="none"), str(tmp_path))
    assert summary.stage2 is None and summary.kept_stage == 1
    assert not all(np.array_equal(a, np.array(b)) for a, b in zip(first_conv, backbone.layers[1].weights, strict=True))


def test_progressive_unfreezing_grows_block_by_block(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    classifier = _classifier()
    unfrozen: list[int] = []
    original = model_lib.unfreeze_from

    def record(model: keras.Model, first_index: int) -> list[str]:
        names = original(model, first_index)
        unfrozen.append(len(names))
        return names

    monkeypatch.setattr(model_lib, "unfreeze_from", record)
    _patch_eval(monkeypatch, [0.5, 0.52, 0.55, 0.6])  # stage 1, then each of stage 2's three fits
    config = _config(fine_tune_schedule="progressive", stage2_epochs=3, epochs_per_block=1)
    summary = train_loop.train_two_stages(classifier, _data(), _data(), config, str(tmp_path))
    assert summary.fine_tuned_validation_accuracy == 0.6  # the last fit's: the weights stage 2 ends with
    assert len(summary.stage2_plan) == 3 and len(summary.stage2.loss) == 3
    assert unfrozen == sorted(unfrozen) and unfrozen[0] < unfrozen[-1]
    assert [step.first_layer for step in summary.stage2_plan][:2] == ["block_16_expand", "block_15_expand"]


def test_early_stopping_ends_a_stalled_stage(tmp_path: object) -> None:
    classifier = _classifier()
    same = np.full((8, SIZE, SIZE, 3), 128.0, "float32")
    data = tf.data.Dataset.from_tensor_slices((same, np.zeros(8, "int64"))).batch(4)
    # Identical eval images get one prediction, so eval accuracy can improve at most once.
    config = _config(stage1_epochs=6, stage2_epochs=0, early_stopping_patience=1, augmentation="none")
    summary = train_loop.train_two_stages(classifier, data, data, config, str(tmp_path))
    assert 2 <= len(summary.stage1.loss) <= 3


def test_mixed_precision_xla_and_mirrored_strategy_run_on_cpu(tmp_path: object) -> None:
    with training_setup.precision(True), training_setup.strategy("mirrored").scope():
        classifier = _classifier()
        config = _config(stage2_epochs=1, xla=True)
        summary = train_loop.train_two_stages(classifier, _data(), _data(), config, str(tmp_path))
        conv = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME).get_layer("Conv1")
        assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
        assert classifier.output.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert len(summary.stage2.loss) == 1
    assert summary.xla is True  # augmentation moved to tf.data, so Keras kept XLA on


def test_base_model_weights_come_from_the_earlier_run(tmp_path: object) -> None:
    classifier = _classifier()
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    model_dir = tmp_path / "Trainer" / "model" / "7"
    (model_dir / "Format-Serving").mkdir(parents=True)
    # What run_fn writes next to Format-Serving.
    saved = model_lib.save_backbone_weights(classifier, str(model_dir))
    assert saved == model_lib.backbone_weights_path(str(model_dir))
    base = _config(weights="base_model")
    local = training_setup.backbone_weights(base, str(model_dir / "Format-Serving"))
    loaded = model_lib.build_backbone("MobileNetV2", SIZE, local, alpha=0.35)
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(backbone.weights, loaded.weights, strict=True))
    with pytest.raises(model_lib.WeightsError, match="has no backbone.weights.h5"):
        training_setup.backbone_weights(base, str(tmp_path / "Format-Serving"))
    assert training_setup.backbone_weights(_config(weights="imagenet"), None) == "imagenet"


def _transformed_split(folder: str, count: int) -> tuple[SimpleNamespace, SimpleNamespace, list[str]]:
    """``count`` transformed examples in two gzipped shards, as Transform writes them,
    and stand-ins for the Trainer's data accessor and TFT output reading them."""
    spec = {
        train_data.IMAGE_XF: tf.io.FixedLenFeature([], tf.string),
        train_data.LABEL_XF: tf.io.FixedLenFeature([], tf.int64),
    }
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard in range(2):
        with tf.io.TFRecordWriter(os.path.join(folder, f"transformed-{shard}.gz"), options) as writer:
            for index in range(shard, count, 2):
                pixels = np.full((1, SIZE, SIZE, 3), index, np.uint8)
                feature = {
                    train_data.IMAGE_XF: tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[features.encode_transformed(pixels)[0].numpy()])
                    ),
                    train_data.LABEL_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 3])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    schema = schema_utils.schema_from_feature_spec(spec)
    accessor = SimpleNamespace(
        tf_dataset_factory=lambda files, options, schema: tfxio.TFExampleRecord(files, schema=schema).TensorFlowDataset(
            options
        )
    )
    output = SimpleNamespace(transformed_metadata=SimpleNamespace(schema=schema), transformed_feature_spec=lambda: spec)
    return SimpleNamespace(data_accessor=accessor), output, [os.path.join(folder, "transformed-*.gz")]


@pytest.mark.parametrize("train", [True, False])
def test_split_dataset_has_its_length_and_every_example(tmp_path: object, train: bool) -> None:
    fn_args, output, pattern = _transformed_split(str(tmp_path), 11)
    dataset, count = train_data.split_dataset(fn_args, output, pattern, _config(batch_size=4), train=train)
    assert count == 11
    # Known length: Keras would otherwise end every epoch on an end-of-sequence error.
    assert int(dataset.cardinality()) == 3
    batches = list(dataset)
    assert [int(labels.shape[0]) for _, labels in batches] == [4, 4, 3]
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    assert images.shape == (11, SIZE, SIZE, 3) and images.dtype == np.float32
    values = np.round(images[:, 0, 0, 0]).astype(int)
    assert sorted(values) == list(range(11)) and list(labels) == [value % 3 for value in values]
    file_order = list(range(0, 11, 2)) + list(range(1, 11, 2))  # shard 0, then shard 1
    assert (values.tolist() != file_order) == train  # shuffled for training only


def test_empty_split_is_a_clear_error(tmp_path: object) -> None:
    fn_args, output, pattern = _transformed_split(str(tmp_path), 0)
    with pytest.raises(ValueError, match="validation split has no examples"):
        train_data.split_dataset(fn_args, output, pattern, _config(batch_size=4), train=False)


def test_console_gets_first_last_and_slow_epochs_the_log_file_every_epoch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock = iter(np.arange(0.0, 1000.0, 1.0))  # each clock read advances 1 s: an epoch reads it 5 times
    monkeypatch.setattr(train_loop.time, "monotonic", lambda: float(next(clock)))
    classifier = _classifier()
    model_lib.compile_model(classifier, 1e-3)
    status = logging.getLogger(train_loop.STATUS_LOGGER)
    monkeypatch.setattr(status, "level", logging.DEBUG)  # as on an interactive console
    with caplog.at_level(logging.DEBUG):
        train_loop.fit_stage(classifier, _data(), _data(), (0, 6), os.path.join(str(tmp_path), "logs"))
    epochs = [r for r in caplog.records if r.getMessage().startswith("Epoch ") and r.name != train_loop.STATUS_LOGGER]
    assert [r.getMessage().split(" ")[1] for r in epochs] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    on_console = [r.getMessage().split(" ")[1] for r in epochs if not r.name.startswith("image_pipeline.file_only")]
    assert on_console == ["1/6", "3/6", "5/6", "6/6"]  # first, >= 10 s after the last shown, last
    batches = [r.getMessage() for r in caplog.records if r.name == train_loop.STATUS_LOGGER]
    assert batches and all(": batch " in message and "/3, loss " in message for message in batches)
