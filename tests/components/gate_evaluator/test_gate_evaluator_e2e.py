"""A whole run on noise images with the default gate: near chance, so not blessed, and every reader says why."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from components.evaluation import majority_rule
from pipeline.local import runner as local_runner
from pipeline.report import html_report
from tests.helpers import noise_folder, tiny_run_config


@pytest.mark.slow
def test_a_near_chance_model_is_not_blessed_by_default_and_the_run_says_why(tmp_path: object) -> None:
    root = str(tmp_path)
    noise_folder(os.path.join(root, "data"), ("a", "b", "c"), per_class=20, size=16, seed=3)
    config = tiny_run_config(root, above_majority_class=True, min_accuracy=None)
    local_runner.preflight(config)
    report = local_runner.run(config)
    gate = report.gate
    assert gate is not None and gate.majority_check is not None
    check = gate.majority_check
    # The check rests on TFMA's own numbers: its accuracy and its per-class test counts.
    assert check.examples == gate.test_examples == sum(gate.per_class_examples.values())
    assert check.accuracy == pytest.approx(gate.candidate_accuracy)
    assert not check.passed, f"a noise model scored {check.accuracy:.3f} on {check.examples} images"
    assert report.blessed is False and report.pushed_to is None
    assert not os.path.exists(config.model_push_dir) or not os.listdir(config.model_push_dir)
    text = report.format()
    assert f"not blessed: {check.reason()}" in text
    assert f"NOT surely above the majority-class rate {check.majority_rate:.3f}" in text
    records = tf.io.gfile.glob(
        os.path.join(config.pipeline_root, "Evaluator", "evaluation", "*", majority_rule.FILE_NAME)
    )
    assert [majority_rule.read(os.path.dirname(path)) for path in records] == [check]
    blessings = tf.io.gfile.glob(os.path.join(config.pipeline_root, "Evaluator", "blessing", "*", "NOT_BLESSED"))
    assert len(blessings) == 1
    page = html_report.render(report, config.to_dict())
    assert "this could be chance" in page and 'id="majority-rule"' in page
