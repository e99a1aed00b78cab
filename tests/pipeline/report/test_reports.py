"""Learning curves, confusion matrix and summaries hold the logged numbers."""

from __future__ import annotations

import json
import os

from PIL import Image

from components.modules import reports
from components.modules.settings import StageHistory, TrainerSettings, TrainingSummary

SUMMARY = TrainingSummary(
    class_names=["cat", "dog"],
    settings=TrainerSettings(weights="none"),
    split_sizes={"train": 20, "validation": 8},
    stage1=StageHistory(loss=[0.9, 0.7], accuracy=[0.5, 0.6], val_loss=[0.8, 0.75], val_accuracy=[0.55, 0.65]),
    stage2=StageHistory(loss=[0.5], accuracy=[0.8], val_loss=[0.6], val_accuracy=[0.7]),
    head_only_validation_accuracy=0.65,
    fine_tuned_validation_accuracy=0.7,
    kept_stage=2,
    validation_confusion_matrix=[[3, 1], [0, 4]],
    phase_seconds={"stage 1": 12.34, "stage 2": 8.0, "export": 3.06},
)


def test_confusion_matrix_counts() -> None:
    import numpy as np

    matrix = reports.confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_epochs_join_both_stages() -> None:
    rows = SUMMARY.epochs()
    assert [(row.epoch, row.stage) for row in rows] == [(1, 1), (2, 1), (3, 2)]
    assert [row.val_accuracy for row in rows] == [0.55, 0.65, 0.7]
    assert SUMMARY.stage1_epochs_run == 2 and SUMMARY.kept_validation_accuracy == 0.7


def test_reports_are_written_with_the_logged_numbers(tmp_path: object) -> None:
    run_dir = str(tmp_path)
    reports.write_reports(SUMMARY, run_dir)
    for name in (reports.LEARNING_CURVES, reports.CONFUSION_MATRIX):
        with Image.open(os.path.join(run_dir, name)) as image:
            assert image.format == "PNG" and image.size[0] > 300
    with open(os.path.join(run_dir, reports.SUMMARY_JSON)) as handle:
        saved = json.load(handle)
    assert saved["validation_confusion_matrix"] == [[3, 1], [0, 4]]
    assert reports.read_summary(run_dir) == SUMMARY
    with open(os.path.join(run_dir, reports.SUMMARY_MARKDOWN)) as handle:
        markdown = handle.read()
    assert "| 3 | 2 | 0.5000 | 0.8000 | 0.6000 | 0.7000 |" in markdown
    assert "head-only (stage 1) validation accuracy: 0.6500" in markdown and "kept: stage 2" in markdown
    assert "examples: train 20, validation 8" in markdown
    assert "time: stage 1 12.3 s, stage 2 8.0 s, export 3.1 s" in markdown
    assert reports.read_summary(str(tmp_path / "nothing")) is None
