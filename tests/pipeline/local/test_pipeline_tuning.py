"""The pipeline with tuning on, on tiny data: the Tuner's trials in MLMD and the card, the best values trained."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx import v1 as tfx

from components.modules import tuning_settings
from components.tuner import trials as tuner_trials
from pipeline.config import preflight
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.demo import demo
from pipeline.graph import node_ids
from pipeline.local import runner as local_runner
from pipeline.report import html_report
from tests.helpers import encode, tiny_run_config, write

pytestmark = pytest.mark.slow

TRIALS = 3
COLORS = {"red": (210, 30, 30), "blue": (30, 30, 210)}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run: 3 random trials of 1 + 1 epochs (the demo's small source backbone at 32 px), then a rerun."""
    root = str(tmp_path_factory.mktemp("tuning"))
    rng = np.random.default_rng(0)
    for label, color in COLORS.items():
        for index in range(12):  # the class's colour under noise: learnable, and no two images are copies
            pixels = np.clip(np.array(color) * 0.7 + rng.integers(0, 90, (32, 32, 3)), 0, 255).astype(np.uint8)
            write(os.path.join(root, "data", label, f"{index:03d}.png"), encode(Image.fromarray(pixels), "PNG"))
    config = tiny_run_config(
        root,
        trainer={
            "backbone": demo.BACKBONE,
            "backbone_alpha": demo.ALPHA,
            "weights": demo.SHIPPED_WEIGHTS,
            "stage2_epochs": 1,
            "fine_tune_schedule": "top_n",
        },
        tuning={"trials": TRIALS, "algorithm": "random"},
        user_code="installed",  # the cache key holds the function path, not a wheel of the module folder
    )
    local_runner.preflight(config)
    report = local_runner.run(config)
    card = html_report.write_run_report(report, config.pipeline_root, config.to_dict())
    with open(card) as handle:
        html = handle.read()
    return {"config": config, "report": report, "html": html, "rerun": local_runner.run(config)}


def _first(config: PipelineConfig, type_name: str) -> metadata_store_pb2.Artifact:
    """The first run's artifact of ``type_name`` (the rerun reuses it)."""
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    return min(store.get_artifacts_by_type(type_name), key=lambda artifact: artifact.id)


def test_the_preflight_states_the_trial_budget(tuned: dict) -> None:
    budget = preflight.tuning_budget(tuned["config"])
    assert budget.startswith(f"Tuning budget: {TRIALS} random trials x 2 epochs (1 + 1) = at most 6 training epochs")
    assert "stage1_learning_rate 0.0001..0.01 log" in budget and "fine_tune_fraction 0.1..1.0" in budget


def test_the_tuner_ran_before_the_trainer(tuned: dict) -> None:
    report = tuned["report"]
    assert report.component_states[node_ids.TUNER] == "ran"
    names = [step.name for step in report.steps]
    assert names.index(node_ids.TUNER) < names.index(node_ids.TRAINER)
    assert report.tuning is not None and len(report.tuning.trials) == TRIALS
    assert report.tuning.stopped_by == "trials"


def test_every_trial_is_in_mlmd_with_its_values_and_score(tuned: dict) -> None:
    results = _first(tuned["config"], "TunerResults")
    properties = results.custom_properties
    assert properties[tuner_trials.TRIALS].int_value == TRIALS
    assert properties[tuner_trials.COMPLETED_TRIALS].int_value == TRIALS
    recorded = json.loads(properties[tuner_trials.TRIALS_JSON].string_value)
    assert [trial["trial_id"] for trial in recorded] == ["0", "1", "2"]
    searched = {
        "stage1_learning_rate",
        "stage2_learning_rate",
        "dropout",
        "fine_tune_fraction",
        "augmentation_strength",
    }
    for trial in recorded:
        assert trial["status"] == "COMPLETED" and 0.0 <= trial["score"] <= 1.0
        assert set(trial["hyperparameters"]) == searched
        assert trial["kept_stage"] in (1, 2) and trial["seconds"] > 0
    best = max(recorded, key=lambda trial: trial["score"])
    assert properties[tuner_trials.BEST_TRIAL].string_value == best["trial_id"]
    assert properties[tuner_trials.BEST_SCORE].double_value == pytest.approx(best["score"])
    hyperparameters = _first(tuned["config"], "HyperParameters")
    assert hyperparameters.custom_properties[tuner_trials.BEST_TRIAL].string_value == best["trial_id"]


def test_the_trainer_trained_with_the_best_hyperparameters(tuned: dict) -> None:
    report, config = tuned["report"], tuned["config"]
    best = report.tuning.best
    assert report.tuned is not None and report.tuned.hyperparameters == pytest.approx(best.hyperparameters)
    expected = tuning_settings.apply_hyperparameters(config.trainer, best.hyperparameters)
    assert report.training.settings == expected
    assert report.training.settings.fine_tune_schedule == "fraction"  # the depth was tuned
    assert report.training.settings.stage1_learning_rate == pytest.approx(best.hyperparameters["stage1_learning_rate"])
    assert "tuned_settings.json" in report.training_files
    hyperparameters = _first(config, "HyperParameters")
    with open(os.path.join(hyperparameters.uri, "best_hyperparameters.txt")) as handle:
        assert tuning_settings.best_values(json.load(handle)) == pytest.approx(best.hyperparameters)
    assert f"tuning: {TRIALS} of {TRIALS} random trials" in report.format()
    assert f"best validation accuracy {best.score:.3f} (trial {best.trial_id})" in report.format()


def test_the_card_lists_the_trials(tuned: dict) -> None:
    html, best = tuned["html"], tuned["report"].tuning.best
    assert '<h2 id="tuning">Tuning</h2>' in html
    assert re.findall(r'<tr data-trial="(\d+)"', html) == ["0", "1", "2"]
    assert f'<tr data-trial="{best.trial_id}" data-score="{best.score}" class="total" data-best="true">' in html
    assert 'id="tuned-settings"' in html and "<code>fine_tune_schedule</code> fraction" in html


def test_an_unchanged_rerun_reuses_the_tuner_and_the_trainer(tuned: dict) -> None:
    rerun = tuned["rerun"]
    assert rerun.component_states[node_ids.TUNER] == "cached"
    assert rerun.component_states[node_ids.TRAINER] == "cached"
    assert rerun.tuning == tuned["report"].tuning
