"""The preflight's note when the test split is too small to decide "no worse than served"."""

from __future__ import annotations

import logging
import os

import pytest
import tensorflow as tf

from components.serving import sidecars
from pipeline.config import gate_power
from pipeline.config.pipeline_config import PipelineConfig
from tests.helpers import noise_folder, tiny_run_config


def _served(config: PipelineConfig, version: int, info: sidecars.PushInfo) -> None:
    version_dir = os.path.join(config.model_push_dir, str(version))
    tf.io.gfile.makedirs(version_dir)
    with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "wb") as handle:
        handle.write(b"graph")
    sidecars.write_push_info(version_dir, info)


def test_nothing_served_means_nothing_to_compare_and_no_note(tmp_path: object) -> None:
    assert gate_power.gate_power_notes(tiny_run_config(str(tmp_path)), 5) == []


def test_a_small_test_split_gets_a_note_with_the_numbers(tmp_path: object) -> None:
    config = tiny_run_config(str(tmp_path))
    _served(config, 3, sidecars.PushInfo(accuracy=0.9, test_examples=21))
    notes = gate_power.gate_power_notes(config, 21)
    assert len(notes) == 2  # this run's split and version 3's own, both 21 images
    assert notes[0].startswith("this run's test split has 21 images: at the served version 3's accuracy 0.900")
    assert "cannot tell a drop under 0.181 from chance (95%)" in notes[0]
    assert "max_accuracy_drop 0.000" in notes[0] and "resolving 0.050 takes about 277 test images" in notes[0]
    assert notes[1].startswith("version 3's own test split has 21 images")


def test_a_large_enough_split_or_a_wide_tolerance_gets_none(tmp_path: object) -> None:
    config = tiny_run_config(str(tmp_path))
    _served(config, 1, sidecars.PushInfo(accuracy=0.9, test_examples=400))
    assert gate_power.gate_power_notes(config, 300) == []
    assert len(gate_power.gate_power_notes(config, 100)) == 1  # 0.083 > 0.05: only this run's split
    loose = tiny_run_config(str(tmp_path), max_accuracy_drop=0.1)
    assert gate_power.gate_power_notes(loose, 100) == []  # 0.083 < max_accuracy_drop 0.1


def test_a_version_without_a_recorded_accuracy_is_judged_at_the_widest_case(tmp_path: object) -> None:
    config = tiny_run_config(str(tmp_path))
    _served(config, 2, sidecars.PushInfo())
    (note,) = gate_power.gate_power_notes(config, 100)
    assert "at accuracy 0.5 (version 2 recorded none)" in note and "a drop under 0.139" in note


def test_the_preflight_logs_the_note(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.local import runner as local_runner

    root = str(tmp_path)
    noise_folder(os.path.join(root, "data"), ("cats", "dogs"), per_class=12, size=16, seed=0)
    config = tiny_run_config(root)
    _served(config, 1, sidecars.PushInfo(accuracy=0.8, test_examples=5))
    with caplog.at_level(logging.WARNING):
        assignment = local_runner.preflight(config)
    test_images = sum(counts["test"] for counts in assignment.counts.values())
    notes = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Gate: ")]
    assert notes and notes[0].startswith(f"Gate: this run's test split has {test_images} images")


def test_the_gates_defaults_are_the_majority_rule_and_no_fixed_bound() -> None:
    from click.testing import CliRunner

    from pipeline.cli import main as cli

    config = PipelineConfig(data_root="/d")
    assert (config.min_accuracy, config.above_majority_class, config.max_accuracy_drop) == (None, True, 0.0)
    stricter = PipelineConfig(data_root="/d", min_accuracy=0.8)
    assert (stricter.min_accuracy, stricter.above_majority_class) == (0.8, True)
    with pytest.raises(ValueError, match="above_majority_class false leaves the gate no absolute bound"):
        PipelineConfig(data_root="/d", above_majority_class=False)
    assert PipelineConfig(data_root="/d", above_majority_class=False, min_accuracy=0.0).min_accuracy == 0.0
    help_text = CliRunner().invoke(cli.main, ["run", "--help"]).output
    assert "--above-majority-class / --no-above-majority-class" in help_text
