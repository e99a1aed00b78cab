"""Learning curves, confusion matrix and summaries hold the logged numbers."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from components.modules import reports

SUMMARY = {
    "class_names": ["cat", "dog"],
    "stage1": {"loss": [0.9, 0.7], "accuracy": [0.5, 0.6], "val_loss": [0.8, 0.75], "val_accuracy": [0.55, 0.65]},
    "stage2": {"loss": [0.5], "accuracy": [0.8], "val_loss": [0.6], "val_accuracy": [0.7]},
    "head_only_eval_accuracy": 0.65,
    "fine_tuned_eval_accuracy": 0.7,
    "kept_stage": 2,
    "from_scratch_eval_accuracy": 0.4,
    "negative_transfer": False,
}


def test_confusion_matrix_counts() -> None:
    matrix = reports.confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    assert matrix.tolist() == [[1, 1], [1, 2]]


def test_reports_are_written_with_the_logged_numbers(tmp_path: object) -> None:
    run_dir = str(tmp_path)
    reports.write_reports(SUMMARY, np.array([[3, 1], [0, 4]]), run_dir)
    for name in (reports.LEARNING_CURVES, reports.CONFUSION_MATRIX):
        with Image.open(os.path.join(run_dir, name)) as image:
            assert image.format == "PNG" and image.size[0] > 300
    with open(os.path.join(run_dir, reports.SUMMARY_JSON)) as handle:
        saved = json.load(handle)
    assert saved["confusion_matrix"] == [[3, 1], [0, 4]]
    assert reports.epoch_history(saved)["val_accuracy"] == [0.55, 0.65, 0.7]
    with open(os.path.join(run_dir, reports.SUMMARY_MARKDOWN)) as handle:
        markdown = handle.read()
    assert "| 3 | 2 | 0.5000 | 0.8000 | 0.6000 | 0.7000 |" in markdown
    assert "head-only (stage 1) eval accuracy: 0.6500" in markdown and "kept: stage 2" in markdown
    assert "from-scratch comparison eval accuracy: 0.4000" in markdown
