"""The Tuner's user module and executor: oracles, trials of the Trainer's two stages, budgets, the record."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import standard_artifacts

from components.modules import train_loop, trainer, tuner, tuning_settings
from components.modules.settings import StageHistory, TrainerSettings
from components.modules.tuning_settings import TuningSettings
from components.tuner import executor as tuner_executor
from components.tuner import trials

SIZE = 32
TRAINER = TrainerSettings(
    image_size=SIZE,
    backbone_alpha=0.35,
    weights="none",
    stage1_epochs=2,
    stage2_epochs=2,
    fine_tune_schedule="top_n",
    dropout=0.2,
    seed=0,
)
PRETRAINED = TRAINER.model_copy(update={"weights": "imagenet"})


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 2)).batch(4)


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[TrainerSettings]:
    """Trials train nothing: the score is the trial's dropout, stage 2 is kept; returns each trial's settings."""
    seen: list[TrainerSettings] = []

    def train_two_stages(classifier: object, train: object, validation: object, settings: TrainerSettings, *_: object):
        seen.append(settings)
        return train_loop.StagesResult(
            stage1=StageHistory(),
            head_only_validation_accuracy=settings.dropout / 2,
            xla=False,
            fine_tuned_validation_accuracy=settings.dropout,
            kept_stage=2,
        )

    monkeypatch.setattr(tuner, "train_two_stages", train_two_stages)
    monkeypatch.setattr(tuner.training_setup, "build_classifier", lambda *_: None)
    return seen


def _search(tmp_path: object, tuning: TuningSettings, settings: TrainerSettings = PRETRAINED) -> tuner.TwoStageTuner:
    two_stage = tuner.TwoStageTuner(
        tuner.oracle(tuning, settings), settings, ("imagenet", 2), str(tmp_path), tuning.max_minutes
    )
    two_stage.oracle.verbose = 0
    two_stage.search(train=None, validation=None)
    return two_stage


def test_each_algorithm_is_its_keras_tuner_oracle_within_the_trial_budget() -> None:
    tuning = TuningSettings(trials=6, search_space={"augmentation_strength": None})
    random = tuner.oracle(tuning.model_copy(update={"algorithm": "random"}), PRETRAINED)
    assert isinstance(random, keras_tuner.oracles.RandomSearchOracle) and random.max_trials == 6
    bayesian = tuner.oracle(tuning, PRETRAINED)
    assert isinstance(bayesian, keras_tuner.oracles.BayesianOptimizationOracle)
    assert (bayesian.max_trials, bayesian.num_initial_points) == (6, 3)
    hyperband = tuner.oracle(tuning.model_copy(update={"algorithm": "hyperband"}), PRETRAINED)
    assert isinstance(hyperband, keras_tuner.oracles.HyperbandOracle)
    assert (hyperband.max_trials, hyperband.max_epochs) == (6, 4)
    space = {hp.name: hp for hp in bayesian.hyperparameters.space}
    assert list(space) == ["stage1_learning_rate", "stage2_learning_rate", "dropout", "fine_tune_fraction"]
    assert space["stage1_learning_rate"].sampling == "log" and space["dropout"].sampling == "linear"
    assert space["dropout"].default == 0.2  # the configured value


def test_a_search_runs_the_budget_applies_each_point_and_records_every_trial(
    tmp_path: object, fake_training: list[TrainerSettings]
) -> None:
    tuning = TuningSettings(trials=3, algorithm="random", search_space={"dropout": "0.1,0.3,0.45"})
    search = _search(tmp_path, tuning)
    assert len(fake_training) == 3
    values = [trial.hyperparameters.values for trial in search.oracle.trials.values()]
    for settings, point in zip(fake_training, values, strict=True):
        assert settings == tuning_settings.apply_hyperparameters(PRETRAINED, point)
        assert settings.fine_tune_schedule == "fraction"  # the trial samples the depth
    result = trials.from_oracle(search.oracle, tuning, tuning.epochs_per_trial(PRETRAINED), seconds=12.0)
    assert [trial.trial_id for trial in result.trials] == ["0", "1", "2"] and result.stopped_by == "trials"
    best = result.best
    assert best.score == max(point["dropout"] for point in values) == best.hyperparameters["dropout"]
    assert (best.kept_stage, best.head_only_validation_accuracy) == (2, best.score / 2)
    assert best.seconds is not None and best.epochs is None

    results, hyperparameters = standard_artifacts.TunerResults(), standard_artifacts.HyperParameters()
    results.uri, hyperparameters.uri = str(tmp_path / "results"), str(tmp_path / "best")
    os.makedirs(results.uri)
    trials.write(result, results, hyperparameters)
    assert trials.read(results.uri) == result
    assert results.get_int_custom_property(trials.TRIALS) == 3
    assert results.get_string_custom_property(trials.BEST_TRIAL) == best.trial_id
    assert hyperparameters.get_float_custom_property(trials.BEST_SCORE) == pytest.approx(best.score)
    recorded = json.loads(results.get_string_custom_property(trials.TRIALS_JSON))
    assert [trial["hyperparameters"]["dropout"] for trial in recorded] == [point["dropout"] for point in values]
    assert trials.recorded(results.mlmd_artifact.custom_properties)


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_trial_0_trains_the_configuration(
    tmp_path: object, fake_training: list[TrainerSettings], algorithm: str
) -> None:
    tuning = TuningSettings(trials=3, algorithm=algorithm, search_space={"augmentation_strength": None})
    search = _search(tmp_path, tuning)
    first = search.oracle.trials["0"].hyperparameters.values
    configured = {name: getattr(PRETRAINED, name) for name in first}
    assert first == configured and fake_training[0] == tuning_settings.apply_hyperparameters(PRETRAINED, first)
    assert len({tuple(trial.hyperparameters.values.items()) for trial in search.oracle.trials.values()}) == 3


def test_no_trial_starts_once_the_time_budget_is_spent(tmp_path: object, fake_training: list[TrainerSettings]) -> None:
    tuning = TuningSettings(trials=5, algorithm="random", max_minutes=1e-9)
    search = _search(tmp_path, tuning)
    assert len(search.oracle.trials) == len(fake_training) == 1  # the first trial always runs
    assert trials.from_oracle(search.oracle, tuning, 4, seconds=1.0).stopped_by == "time"


def test_hyperband_trials_train_their_rounds_epochs_within_the_budget(
    tmp_path: object, fake_training: list[TrainerSettings]
) -> None:
    tuning = TuningSettings(trials=4, algorithm="hyperband")
    search = _search(tmp_path, tuning)
    assert len(fake_training) == 4
    result = trials.from_oracle(search.oracle, tuning, 4, seconds=1.0)
    for settings, trial in zip(fake_training, result.trials, strict=True):
        assert settings.stage1_epochs + settings.stage2_epochs == trial.epochs <= 4
        assert settings.stage1_epochs >= 1


def test_a_trial_trains_both_stages_of_the_real_loop(tmp_path: object) -> None:
    tuning = TuningSettings(trials=1, algorithm="random")
    two_stage = tuner.TwoStageTuner(tuner.oracle(tuning, PRETRAINED), PRETRAINED, ("none", 2), str(tmp_path))
    trial = two_stage.oracle.create_trial(two_stage.tuner_id)
    metrics = two_stage.run_trial(trial, _data(), _data())
    assert 0.0 <= metrics[tuning_settings.OBJECTIVE] <= 1.0
    kept = metrics[tuning_settings.TrialMetric.KEPT_STAGE]
    accuracy = tuning_settings.TrialMetric.FINE_TUNED if kept == 2 else tuning_settings.TrialMetric.HEAD_ONLY
    assert metrics[tuning_settings.OBJECTIVE] == metrics[accuracy]
    assert os.path.isdir(os.path.join(two_stage.project_dir, f"trial_{trial.trial_id}", "logs"))


def test_a_search_without_a_completed_trial_fails_the_step(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    def failing_trial(trial_id: str) -> SimpleNamespace:
        metrics = SimpleNamespace(exists=lambda _: False)
        return SimpleNamespace(
            trial_id=trial_id,
            status="FAILED",
            score=None,
            hyperparameters=SimpleNamespace(values={"dropout": 0.1}),
            metrics=metrics,
            message="Traceback ...\nValueError: out of memory",
        )

    oracle = SimpleNamespace(start_order=["0", "1"], trials={"0": failing_trial("0"), "1": failing_trial("1")})
    monkeypatch.setattr(tuner_executor.tfx_tuner_executor, "search", lambda *_: SimpleNamespace(oracle=oracle))
    custom_config = tuning_settings.TunerConfig(trainer=TRAINER, tuning=TuningSettings(trials=2)).model_dump(
        mode="json"
    )
    with pytest.raises(RuntimeError, match=r"No tuning trial completed \(trial 0: ValueError: out of memory; trial 1"):
        executor = tuner_executor.TunerExecutor(
            base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path), unique_id="1")
        )
        executor.Do({}, {}, {"custom_config": json.dumps(custom_config)})


def test_the_trainer_applies_the_best_hyperparameters_and_records_them(tmp_path: object) -> None:
    fn_args = SimpleNamespace(
        hyperparameters={"space": [], "values": {"dropout": 0.4, "fine_tune_fraction": 0.5, "tuner/epochs": 3}},
        model_run_dir=str(tmp_path),
    )
    tuned = trainer._tuned(TRAINER, fn_args)
    assert (tuned.dropout, tuned.fine_tune_fraction, tuned.fine_tune_schedule) == (0.4, 0.5, "fraction")
    record = tuning_settings.read_tuned(str(tmp_path))
    assert record.hyperparameters == {"dropout": 0.4, "fine_tune_fraction": 0.5}
    assert record.settings == {"dropout": 0.4, "fine_tune_fraction": 0.5, "fine_tune_schedule": "fraction"}
    no_tuner = SimpleNamespace(hyperparameters=None, model_run_dir=str(tmp_path / "untuned"))
    assert trainer._tuned(TRAINER, no_tuner) == TRAINER
    assert tuning_settings.read_tuned(no_tuner.model_run_dir) is None
