"""The tuning: section, parsed once: presence, ranges, clear errors, and the values applied onto the Trainer."""

from __future__ import annotations

import json

import pytest
import yaml

from components.modules import tuning_settings
from components.modules.settings import TrainerSettings
from components.modules.tuning_settings import Range, TunerConfig, TuningSettings
from pipeline.config import pipeline_config as config_lib

SEARCHED = ["stage1_learning_rate", "stage2_learning_rate", "dropout", "fine_tune_fraction", "augmentation_strength"]


def _config(tuning: object = None, **trainer: object) -> config_lib.PipelineConfig:
    values: dict = {"data_root": "/d", "trainer": {"fine_tune_schedule": "top_n", **trainer}}
    if tuning != "absent":
        values["tuning"] = tuning
    return config_lib.build_config(values)


def test_off_without_a_section_on_by_presence_with_8_trials() -> None:
    assert not _config("absent").tuning.enabled
    for section in (None, {}, {"algorithm": "random"}):  # `tuning:` alone, or with any key
        tuning = _config(section).tuning
        assert tuning.enabled and tuning.trials == 8
    for off in ("none", {"trials": 0}, False):
        assert not _config(off).tuning.enabled
    assert _config({"algorithm": "hyperband", "trials": 3, "max_minutes": 30}).tuning.max_minutes == 30


def test_the_default_search_space_covers_rates_dropout_depth_and_augmentation() -> None:
    config = _config({})
    assert list(config.tuning.searched(config.trainer)) == SEARCHED
    space = config.tuning.search_space
    assert (space.stage1_learning_rate.min, space.stage1_learning_rate.max, space.stage1_learning_rate.log) == (
        1e-4,
        1e-2,
        True,
    )
    assert space.dropout == Range(min=0.0, max=0.5)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("1e-4..1e-2 log", Range(min=1e-4, max=1e-2, log=True)),
        ("0..0.4", Range(min=0.0, max=0.4)),
        ("0.1, 0.2, 0.4", Range(values=(0.1, 0.2, 0.4))),
        ([0.1, 0.2], Range(values=(0.1, 0.2))),
        ({"min": 0.1, "max": 0.9}, Range(min=0.1, max=0.9)),
    ],
)
def test_a_range_is_written_as_text_a_list_or_a_mapping(written: object, expected: Range) -> None:
    assert _config({"search_space": {"dropout": written}}).tuning.search_space.dropout == expected


def test_overridden_and_removed_ranges_round_trip_through_config_show_and_custom_config() -> None:
    config = _config({"trials": 3, "search_space": {"dropout": "0.1..0.3", "augmentation_strength": "none"}})
    assert "augmentation_strength" not in config.tuning.searched(config.trainer)
    shown = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    assert shown["tuning"]["search_space"]["dropout"] == "0.1..0.3"
    assert shown["tuning"]["search_space"]["stage1_learning_rate"] == "0.0001..0.01 log"
    assert config_lib.build_config(shown) == config
    custom_config = json.loads(
        json.dumps(TunerConfig(trainer=config.trainer, tuning=config.tuning).model_dump(mode="json"))
    )
    assert TunerConfig.model_validate(custom_config).tuning == config.tuning


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"algorithm": "grid"}, "tuning.algorithm: Input should be 'random', 'bayesian' or 'hyperband'"),
        ({"trials": -1}, "tuning.trials: Input should be greater than or equal to 0. Received: tuning.trials=-1"),
        ({"max_minutes": 0}, "tuning.max_minutes: Input should be greater than 0"),
        ({"search_space": {"depth": "0..1"}}, "Unknown config key 'tuning.search_space.depth'. Known keys of"),
        ({"search_space": {"dropot": "0..0.3"}}, "Did you mean 'tuning.search_space.dropout'?"),
        ({"search_space": {"dropout": "0.5..0.1"}}, "tuning.search_space.dropout: min must be below max"),
        ({"search_space": {"dropout": {"low": 0}}}, "tuning.search_space.dropout: unknown key 'low'"),
        ({"search_space": {"dropout": 0.3}}, "write a range MIN..MAX or a list of values"),
        ({"search_space": {"dropout": "0..0.9 linear"}}, "write MIN..MAX, MIN..MAX log or a list A,B,C"),
        ({"search_space": {"stage1_learning_rate": "0..0.1 log"}}, "a log range needs min > 0"),
        ({"search_space": {"dropout": "0..1"}}, "tuning.search_space.dropout reaches 1.0, which the Trainer"),
        ({"search_space": {"augmentation_strength": "0..20"}}, "trainer.augmentation.zoom: Input should be less"),
        ({"search_space": dict.fromkeys(SEARCHED)}, "tuning.search_space leaves nothing to search"),
    ],
)
def test_a_bad_tuning_section_is_one_clear_error(tuning: dict, message: str) -> None:
    with pytest.raises(config_lib.ConfigError) as error:
        _config(tuning)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_tuning_key_at_the_top_level_says_where_it_goes() -> None:
    with pytest.raises(config_lib.ConfigError, match="'trials' is a tuning setting: put it under 'tuning:'"):
        config_lib.build_config({"data_root": "/d", "trials": 3})


def test_what_cannot_apply_is_not_searched() -> None:
    tuning = TuningSettings()
    assert list(tuning.searched(TrainerSettings(weights="none"))) == [
        "stage1_learning_rate",
        "dropout",
        "augmentation_strength",
    ]
    assert "fine_tune_fraction" not in tuning.searched(
        TrainerSettings(backbone="savedmodel:/models/features", image_size=224)
    )
    assert "augmentation_strength" not in tuning.searched(TrainerSettings(augmentation="none"))
    assert "stage2_learning_rate" not in tuning.searched(TrainerSettings(stage2_epochs=0))
    # By default the depth and stage 2's learning rate are searched (trials use fraction), auto or not; without
    # the depth, auto fine-tuning (the default schedule) chooses both inside each trial.
    auto = TrainerSettings()
    assert {"stage2_learning_rate", "fine_tune_fraction"} <= set(tuning.searched(auto))
    no_depth = TuningSettings(search_space={"fine_tune_fraction": None})
    assert not {"stage2_learning_rate", "fine_tune_fraction"} & set(no_depth.searched(auto))
    top_n = TrainerSettings(fine_tune_schedule="top_n")
    assert "stage2_learning_rate" in no_depth.searched(top_n)


def test_hyperparameters_apply_onto_the_trainer_settings() -> None:
    trainer = TrainerSettings(fine_tune_schedule="top_n", augmentation={"zoom": 0.1, "translation": 0.2})
    values = {
        "stage1_learning_rate": 0.003,
        "stage2_learning_rate": 2e-4,
        "dropout": 0.35,
        "fine_tune_fraction": 0.6,
        "augmentation_strength": 1.5,
        "tuner/epochs": 4,  # KerasTuner's own entries are not settings
    }
    tuned = tuning_settings.apply_hyperparameters(trainer, values)
    assert (tuned.stage1_learning_rate, tuned.stage2_learning_rate, tuned.dropout) == (0.003, 2e-4, 0.35)
    assert (tuned.fine_tune_schedule, tuned.fine_tune_fraction) == ("fraction", 0.6)
    assert tuned.augmentation.zoom == pytest.approx(0.15) and tuned.augmentation.translation == pytest.approx(0.3)
    assert tuned.augmentation.flip == trainer.augmentation.flip and tuned.stage1_epochs == trainer.stage1_epochs
    assert tuning_settings.settings_update(trainer, {"fine_tune_fraction": 0.6}) == {
        "fine_tune_fraction": 0.6,
        "fine_tune_schedule": "fraction",
    }
    assert tuning_settings.apply_hyperparameters(trainer, {}) == trainer


def test_an_unknown_or_refused_hyperparameter_is_named() -> None:
    with pytest.raises(ValueError, match="Unknown hyperparameter 'momentum'"):
        tuning_settings.apply_hyperparameters(TrainerSettings(), {"momentum": 0.9})
    with pytest.raises(ValueError, match=r"trainer\.dropout: Input should be less than 1"):
        tuning_settings.apply_hyperparameters(TrainerSettings(), {"dropout": 1.2})


def test_best_values_leave_out_keras_tuners_own_entries() -> None:
    config = {"space": [], "values": {"dropout": 0.25, "tuner/epochs": 2, "tuner/trial_id": "3"}}
    assert tuning_settings.best_values(config) == {"dropout": 0.25}
    assert tuning_settings.best_values(None) == {}


@pytest.mark.parametrize(("epochs", "stages"), [(10, (5, 5)), (4, (2, 2)), (3, (2, 1)), (1, (1, 0)), (20, (5, 5))])
def test_a_hyperband_round_splits_its_epochs_between_the_stages(epochs: int, stages: tuple[int, int]) -> None:
    trainer = tuning_settings.trial_epochs(TrainerSettings(stage1_epochs=5, stage2_epochs=5), epochs)
    assert (trainer.stage1_epochs, trainer.stage2_epochs) == stages


def test_epochs_per_trial_count_both_stages() -> None:
    assert TuningSettings().epochs_per_trial(TrainerSettings(stage1_epochs=3, stage2_epochs=4)) == 7
    assert TuningSettings().epochs_per_trial(TrainerSettings(weights="none", stage1_epochs=3, stage2_epochs=4)) == 3


def test_the_trainer_records_what_it_took_from_the_tuner(tmp_path: object) -> None:
    record = tuning_settings.TunedSettings(
        hyperparameters={"dropout": 0.3}, settings={"dropout": 0.3, "fine_tune_schedule": "fraction"}
    )
    tuning_settings.write_tuned(record, str(tmp_path / "model_run"))
    assert tuning_settings.read_tuned(str(tmp_path / "model_run")) == record
    assert tuning_settings.read_tuned(str(tmp_path / "other")) is None
