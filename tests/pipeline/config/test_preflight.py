"""The preflight shows what the ingest will do: its split counts, nested folders, hidden files."""

from __future__ import annotations

import logging
import os
import re

import pytest

from components.example_gen import component as image_example_gen
from components.ingest import image_files, splits
from components.ingest import summary as ingest_summary
from pipeline.config import preflight as early_checks
from pipeline.config.pipeline_config import build_config
from pipeline.local import runner as local_runner
from tests.helpers import encode, solid, write


def _data(root: str) -> None:
    """Two classes, a broken file that a path-only split would count, copies, a nested folder, .DS_Store."""
    for index in range(8):
        write(os.path.join(root, "circles", f"c{index}.png"), encode(solid((200, 30 + index, 30)), "PNG"))
        write(os.path.join(root, "squares", f"s{index}.png"), encode(solid((30, 30, 200 + index)), "PNG"))
    write(os.path.join(root, "circles", "broken.jpg"), encode(solid((9, 9, 9)), "JPEG")[:40])
    write(os.path.join(root, "circles", "c0_copy.bmp"), encode(solid((200, 30, 30)), "BMP"))
    write(os.path.join(root, "squares", "extra", "x.png"), encode(solid((30, 30, 250)), "PNG"))
    write(os.path.join(root, ".DS_Store"), b"Bud1")


def test_the_preflight_counts_are_the_ingests(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    data = os.path.join(str(tmp_path), "data")
    _data(data)
    config = build_config(
        {
            "data_root": data,
            "pipeline_root": os.path.join(str(tmp_path), "root"),
            "serving_dir": os.path.join(str(tmp_path), "serving"),
            "validation_percent": 20,
            "test_percent": 20,
            "trainer": {"weights": "none", "image_size": 32},
        }
    )
    with caplog.at_level(logging.INFO):
        assignment = local_runner.preflight(config)
    line = next(record.getMessage() for record in caplog.records if "splits (" in record.getMessage())
    shown = dict(
        re.findall(r"(train|validation|test) (\d+)", line.split("splits (as the ingest will write them): ")[1])
    )
    examples = image_example_gen.run_executor(
        data, os.path.join(str(tmp_path), "out"), splits.SplitPercents(validation=20, test=20)
    )
    summary = ingest_summary.read(examples.uri)
    assert {name: int(count) for name, count in shown.items()} == summary.split_counts
    assert {name: sum(c[name] for c in assignment.counts.values()) for name in splits.SPLIT_NAMES} == (
        summary.split_counts
    )
    assert "2 files will be rejected, 1 groups of copies" in line
    assert summary.rejected_by_reason == {image_files.REASON_HIDDEN: 1, image_files.REASON_TRUNCATED: 1}
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "Data: squares/extra/ holds 1 files: they are ingested as class 'squares'" in " ".join(warnings)
    assert summary.nested_folders == {"squares/extra": 1}


def test_the_tuning_budget_is_stated_before_anything_runs(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    _data(str(tmp_path))
    trainer = {"weights": "none", "stage1_epochs": 3, "stage2_epochs": 4, "fine_tune_schedule": "top_n"}
    config = build_config({"data_root": str(tmp_path), "trainer": trainer, "tuning": {"trials": 5, "max_minutes": 90}})
    with caplog.at_level(logging.INFO):
        early_checks.check_run(config)
    budget = early_checks.tuning_budget(config)
    assert budget in caplog.text
    # weights none: no stage 2, so a trial is stage 1's 3 epochs and stage 2's ranges are not searched.
    assert budget.startswith("Tuning budget: 5 bayesian trials x 3 epochs (3 + 0) = at most 15 training epochs")
    assert "no new trial starts after 90 minutes" in budget
    assert "stage2_learning_rate" not in budget and "dropout 0.0..0.5" in budget
    pretrained = build_config({"data_root": str(tmp_path), "trainer": {**trainer, "weights": "imagenet"}, "tuning": {}})
    assert "8 bayesian trials x 7 epochs (3 + 4) = at most 56 training epochs" in early_checks.tuning_budget(pretrained)
    assert early_checks.tuning_budget(build_config({"data_root": str(tmp_path)})) == ""
