"""The typed config: defaults, file + flag precedence, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from pipeline import config as config_lib


def test_defaults_and_derived_paths() -> None:
    config = config_lib.build_config({"data_root": "/data"})
    assert config.image_size == 224
    assert config.backbone == "MobileNetV2"
    assert config.weights == "imagenet" and config.weights_kind == "imagenet"
    assert config.metadata_path == "tfx_root/metadata.sqlite"
    assert config.model_push_dir == "serving/image_classifier"


def test_file_then_flags_override(tmp_path: object) -> None:
    path = f"{tmp_path}/config.yaml"
    with open(path, "w") as handle:
        handle.write("data_root: /images\nimage_size: 128\nstage1_epochs: 3\naugment: false\n")
    config = config_lib.load_config(path, {"image_size": 96, "stage2_epochs": None})
    assert (config.data_root, config.image_size, config.stage1_epochs, config.augment) == ("/images", 96, 3, False)
    assert config.stage2_epochs == 5  # None (unset flag) keeps the default


def test_json_file_and_dash_keys(tmp_path: object) -> None:
    path = f"{tmp_path}/config.json"
    with open(path, "w") as handle:
        json.dump(
            {"data-root": "/d", "weights": "/w/backbone.weights.h5", "beam_args": ["--direct_num_workers=2"]}, handle
        )
    config = config_lib.load_config(path, {})
    assert config.weights_kind == "file"
    assert config.beam_args == ("--direct_num_workers=2",)


def test_trainer_config_is_json_serialisable() -> None:
    config = config_lib.build_config({"data_root": "/d", "weights": "none"})
    trainer_config = config.trainer_config()
    assert json.loads(json.dumps(trainer_config)) == trainer_config
    assert trainer_config["weights"] == "none" and trainer_config["top_k"] == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "data_root is required"),
        ({"data_root": "/d", "imgsize": 3}, "Unknown config key 'imgsize'"),
        ({"data_root": "/d", "image_size": "big"}, "image_size must be of type int"),
        ({"data_root": "/d", "image_size": 16}, "image_size must be in [32, 1024]"),
        ({"data_root": "/d", "min_accuracy": 1.5}, "min_accuracy must be in [0, 1]"),
        ({"data_root": "/d", "runner": "spark"}, "Unknown runner"),
        ({"data_root": "/d", "pipeline_name": "My_Pipeline"}, "pipeline_name must match"),
        ({"data_root": "/d", "augment": "maybe"}, "augment must be of type bool"),
        ({"data_root": "/d", "stage1_learning_rate": 0}, "stage1_learning_rate must be in (0, 1)"),
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
