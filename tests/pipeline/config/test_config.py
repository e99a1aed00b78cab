"""The typed config: defaults, file + flag precedence, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from components.modules.settings import TrainerSettings
from pipeline.config import pipeline_config as config_lib


def test_defaults_and_derived_paths() -> None:
    config = config_lib.build_config({"data_root": "/data"})
    assert config.trainer.image_size == 224
    assert config.trainer.backbone == "MobileNetV2"
    assert config.trainer.weights == "imagenet" and config.trainer.weights_kind == "imagenet"
    assert config.metadata_path == "tfx_root/metadata.sqlite"
    assert config.model_push_dir == "serving/image_classifier"
    assert config.split_percents.as_dict() == {"train": 70, "validation": 15, "test": 15}
    # The default augmentation keeps orientation: no flips, no rotation.
    augmentation = config.trainer.augmentation
    assert (augmentation.flip, augmentation.rotation) == ("none", 0.0) and augmentation.enabled


def test_file_then_flags_override(tmp_path: object) -> None:
    path = f"{tmp_path}/config.yaml"
    with open(path, "w") as handle:
        handle.write("data_root: /images\ntrainer:\n  image_size: 128\n  stage1_epochs: 3\n  augmentation: none\n")
    config = config_lib.load_config(path, {"trainer.image_size": 96, "trainer.stage2_epochs": None})
    assert (config.data_root, config.trainer.image_size, config.trainer.stage1_epochs) == ("/images", 96, 3)
    assert not config.trainer.augmentation.enabled
    assert config.trainer.stage2_epochs == 5  # None (unset flag) keeps the default


def test_json_file_and_dash_keys(tmp_path: object) -> None:
    path = f"{tmp_path}/config.json"
    with open(path, "w") as handle:
        json.dump(
            {
                "data-root": "/d",
                "trainer": {"weights": "/w/backbone.weights.h5", "augmentation": {"flip": "vertical"}},
                "beam_args": ["--direct_num_workers=2"],
            },
            handle,
        )
    config = config_lib.load_config(path, {})
    assert config.trainer.weights_kind == "file"
    assert config.trainer.augmentation.flip == "vertical"
    assert config.beam_args == ("--direct_num_workers=2",)


def test_trainer_settings_round_trip_through_custom_config() -> None:
    config = config_lib.build_config({"data_root": "/d", "trainer": {"weights": "none", "top_k": 3}})
    custom_config = json.loads(json.dumps(config.trainer.model_dump(mode="json")))
    assert TrainerSettings.model_validate(custom_config) == config.trainer
    scratch = config.trainer.from_scratch_comparison()
    assert (scratch.weights, scratch.stage1_epochs, scratch.stage2_epochs) == ("none", 10, 0)


def test_saved_model_backbones_from_a_yaml_file(tmp_path: object) -> None:
    path = f"{tmp_path}/config.yaml"
    with open(path, "w") as handle:
        handle.write(
            "data_root: /d\ntrainer:\n  backbone: hub:https://www.kaggle.com/models/google/x/TensorFlow2/y/1\n"
            "  backbone_input_range: -1..1\n  image_size: 40\n"
        )
    config = config_lib.load_config(path, {})
    # No keras.applications minimum size applies; the preflight checks the model's own input size.
    assert (config.trainer.backbone_input_range, config.trainer.image_size) == ("-1..1", 40)
    assert config.trainer.saved_model_backbone and not config.trainer.from_scratch
    assert config_lib.build_config(config.to_dict()) == config  # custom_config and config show round-trip
    assert not config_lib.build_config({"data_root": "/d"}).trainer.saved_model_backbone


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "data_root is required"),
        ({"data_root": "/d", "imgsize": 3}, "Unknown config key 'imgsize'. Known keys: "),
        ({"data_root": "/d", "min_acuracy": 0.9}, "Unknown config key 'min_acuracy'. Did you mean 'min_accuracy'?"),
        ({"data_root": "/d", "trainer": {"stage1_epoch": 2}}, "Did you mean 'trainer.stage1_epochs'?"),
        ({"data_root": "/d", "image_size": 96}, "'image_size' is a Trainer setting: put it under 'trainer:'"),
        ({"data_root": "/d", "eval_percent": 20}, "'eval_percent' was replaced by validation_percent and test_percent"),
        ({"data_root": "/d", "trainer": {"image_size": "big"}}, "trainer.image_size: Input should be a valid integer"),
        ({"data_root": "/d", "trainer": {"image_size": 16}}, "trainer.image_size: Input should be greater than"),
        ({"data_root": "/d", "trainer": {"backbone": "Xception", "image_size": 64}}, "Xception needs image_size >= 71"),
        ({"data_root": "/d", "trainer": {"backbone": "AlexNet"}}, "Unknown backbone. Expected one of MobileNetV2,"),
        ({"data_root": "/d", "trainer": {"backbone": "hub:google/x/1"}}, "hub: takes a model URL (https://tfhub.dev"),
        ({"data_root": "/d", "trainer": {"backbone": "savedmodel: "}}, "names no model: write savedmodel:<location>"),
        (
            {"data_root": "/d", "trainer": {"backbone": "savedmodel:/m", "weights": "none"}},
            "weights='none' does not apply to backbone savedmodel:/m: a SavedModel brings its own",
        ),
        (
            {"data_root": "/d", "trainer": {"backbone": "savedmodel:/m", "backbone_input_range": "0_1"}},
            "trainer.backbone_input_range: Input should be '0..1', '0..255' or '-1..1'",
        ),
        (
            {"data_root": "/d", "compare_from_scratch": True, "trainer": {"backbone": "savedmodel:/m"}},
            "compare_from_scratch needs a keras.applications backbone",
        ),
        ({"data_root": "/d", "trainer": {"augmentation": {"flip": "upside"}}}, "trainer.augmentation.flip"),
        ({"data_root": "/d", "min_accuracy": 1.5}, "min_accuracy: Input should be less than or equal to 1"),
        ({"data_root": "/d", "runner": "spark"}, "runner: Input should be 'local' or 'beam'"),
        ({"data_root": "/d", "pipeline_name": "My_Pipeline"}, "pipeline_name: String should match pattern"),
        ({"data_root": "/d", "enable_cache": "maybe"}, "enable_cache: Input should be a valid boolean"),
        ({"data_root": "/d", "trainer": {"stage1_learning_rate": 0}}, "stage1_learning_rate: Input should be greater"),
        ({"data_root": "/d", "validation_percent": 45}, "validation_percent must be in [1, 40]"),
        ({"data_root": "/d", "validation_percent": 30, "test_percent": 30}, "leave 40% for training"),
        ({"data_root": "/d", "trainer": {"weights": "base_model"}}, "weights=base_model and base_model="),
    ],
)
def test_errors_name_the_value(values: dict, message: str) -> None:
    with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
        config_lib.build_config(values)


def test_missing_and_malformed_files(tmp_path: object) -> None:
    with pytest.raises(config_lib.ConfigError, match="Config file not found"):
        config_lib.load_config(f"{tmp_path}/nope.yaml", {})
    path = f"{tmp_path}/list.yaml"
    with open(path, "w") as handle:
        handle.write("- a\n- b\n")
    with pytest.raises(config_lib.ConfigError, match="must hold a mapping"):
        config_lib.load_config(path, {})
