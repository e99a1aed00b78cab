"""The run report's own judgements, on hand-made numbers."""

from __future__ import annotations

import pytest

from components.evaluation.metrics import GateResult
from components.modules.tuning_settings import TunedSettings
from components.tuner.trials import TrialRecord, TuningResult
from pipeline.report.run_report import RunReport


@pytest.mark.parametrize(
    ("transfer", "scratch", "expected"),
    [(0.9, 0.5, False), (0.5, 0.9, True), (0.7, 0.7, False), (None, 0.7, None)],
)
def test_negative_transfer_is_scratch_beating_transfer(transfer: object, scratch: float, expected: object) -> None:
    comparison = GateResult(blessed=False, candidate_accuracy=transfer, baseline_accuracy=scratch)
    assert RunReport("r", comparison=comparison).negative_transfer is expected


def test_no_comparison_no_verdict() -> None:
    assert RunReport("r").negative_transfer is None


def test_the_summary_says_what_tuning_ran_and_what_the_trainer_took() -> None:
    trials = [
        TrialRecord(trial_id="0", status="COMPLETED", score=0.7, hyperparameters={"dropout": 0.1}),
        TrialRecord(trial_id="1", status="COMPLETED", score=0.85, hyperparameters={"dropout": 0.3}),
        TrialRecord(trial_id="2", status="FAILED", hyperparameters={"dropout": 0.2}),
    ]
    tuning = TuningResult(
        algorithm="random",
        trial_budget=3,
        max_minutes=20,
        epochs_per_trial=2,
        trials=trials,
        seconds=61.4,
        stopped_by="trials",
    )
    tuned = TunedSettings(hyperparameters={"dropout": 0.3}, settings={"dropout": 0.3})
    assert RunReport("r", tuning=tuning, tuned=tuned).format().splitlines()[1] == (
        "  tuning: 2 of 3 random trials in 61 s (budget 3 or 20 min), best validation accuracy 0.850 (trial 1); "
        "the Trainer trained with dropout 0.3"
    )
    failed = tuning.model_copy(update={"trials": trials[2:]})
    assert "tuning: none of 1 random trials completed" in RunReport("r", tuning=failed).format()
