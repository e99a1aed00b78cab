"""The gate's Evaluator: the majority-class rule on top of TFMA's verdict, and the other Evaluators untouched.

TFMA itself is faked at its seam: TFX's ``Evaluator.Do`` is replaced by one that
writes TFMA's output files and the blessing as TFX does, so the executor's own
decision is what is tested (a real TFMA pass: the slow e2e tests).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import tensorflow as tf
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.evaluation import eval_config as eval_config_lib
from components.evaluation import majority_rule
from components.evaluation import metrics as evaluation
from components.gate_evaluator import executor as gate_evaluator
from pipeline.graph import node_ids
from pipeline.graph.pipeline import create_pipeline
from tests.components.evaluation.tfma_output import CLEARLY_GOOD, NEAR_CHANCE, write_evaluation
from tests.helpers import tiny_run_config


def _fake_tfma(
    monkeypatch: pytest.MonkeyPatch, numbers: tuple[dict, dict], validation_ok: bool = True, validates: bool = True
) -> list:
    """TFX's Evaluator.Do replaced: TFMA's files and a blessing as TFX writes them; returns the calls.

    ``validates`` False: TFX found no threshold left to check (a change threshold
    without a baseline) and wrote no blessing at all.
    """
    calls = []

    def do(self: Any, input_dict: dict, output_dict: dict, exec_properties: dict) -> None:
        calls.append(input_dict)
        write_evaluation(output_dict["evaluation"][0].uri, *numbers, validation_ok=validation_ok)
        if not validates:
            return
        blessing = output_dict["blessing"][0]
        name = "BLESSED" if validation_ok else "NOT_BLESSED"
        tf.io.gfile.makedirs(blessing.uri)
        with tf.io.gfile.GFile(os.path.join(blessing.uri, name), "w") as handle:
            handle.write("")
        blessing.set_int_custom_property("blessed", int(validation_ok))

    monkeypatch.setattr(tfx_evaluator_executor.Executor, "Do", do)
    return calls


def _run(tmp_path: object, threshold: object, rule: bool) -> tuple[Any, Any]:
    """Runs the executor once; returns (evaluation, blessing) artifacts."""
    root = str(tmp_path)
    examples, model = standard_artifacts.Examples(), standard_artifacts.Model()
    examples.uri, model.uri = os.path.join(root, "examples"), os.path.join(root, "model")
    evaluated, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluated.uri, blessing.uri = os.path.join(root, "evaluation"), os.path.join(root, "blessing")
    properties = {
        standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config_lib.eval_config(threshold)),
        gate_evaluator.ABOVE_MAJORITY_CLASS_KEY: int(rule),
    }
    gate_evaluator.GateEvaluatorExecutor().Do(
        {"examples": [examples], "model": [model]},
        {"evaluation": [evaluated], "blessing": [blessing]},
        properties,
    )
    return evaluated, blessing


def _files(blessing: Any) -> list[str]:
    return sorted(tf.io.gfile.listdir(blessing.uri))


def test_a_near_chance_model_that_tfma_blesses_is_not_blessed_by_default(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tfma(monkeypatch, NEAR_CHANCE)
    evaluated, blessing = _run(tmp_path, eval_config_lib.gate_threshold(None, 0.0), rule=True)
    assert blessing.get_int_custom_property("blessed") == 0 and _files(blessing) == ["NOT_BLESSED"]
    reason = blessing.get_string_custom_property(gate_evaluator.NOT_BLESSED_REASON)
    assert "0.524 on 21 images (95% interval 0.324-0.717)" in reason and "rate 0.381" in reason
    gate = evaluation.read_gate(evaluated.uri, blessed=False)  # what the Pusher and the run summary read
    assert gate.reasons == [reason] and not gate.majority_check.passed


def test_the_issues_case_is_not_blessed_even_with_the_old_default_bound(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tfma(monkeypatch, NEAR_CHANCE)  # 0.524 >= min_accuracy 0.5: TFMA blesses it
    _, blessing = _run(tmp_path, eval_config_lib.gate_threshold(0.5, 0.0), rule=True)
    assert blessing.get_int_custom_property("blessed") == 0


def test_a_clearly_good_model_is_still_blessed_and_the_check_recorded(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tfma(monkeypatch, CLEARLY_GOOD)
    evaluated, blessing = _run(tmp_path, eval_config_lib.gate_threshold(0.6, 0.0), rule=True)
    assert blessing.get_int_custom_property("blessed") == 1 and _files(blessing) == ["BLESSED"]
    check = majority_rule.read(evaluated.uri)
    assert check is not None and check.passed and check.examples == 78
    assert evaluation.read_gate(evaluated.uri, blessed=True).reasons == []


@pytest.mark.parametrize(("numbers", "blessed"), [(CLEARLY_GOOD, 1), (NEAR_CHANCE, 0)], ids=["good", "near chance"])
def test_on_a_first_run_without_min_accuracy_the_rule_alone_decides(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, numbers: tuple[dict, dict], blessed: int
) -> None:
    """Nothing served: TFX drops the change threshold, validates nothing and writes no blessing."""
    _fake_tfma(monkeypatch, numbers, validates=False)
    _, blessing = _run(tmp_path, eval_config_lib.gate_threshold(None, 0.0), rule=True)
    assert blessing.get_int_custom_property("blessed") == blessed
    assert _files(blessing) == (["BLESSED"] if blessed else ["NOT_BLESSED"])
    assert blessing.has_custom_property(gate_evaluator.NOT_BLESSED_REASON) == (not blessed)


def test_tfmas_own_failure_stays_and_the_rules_reason_joins_it(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tfma(monkeypatch, NEAR_CHANCE, validation_ok=False)
    evaluated, blessing = _run(tmp_path, eval_config_lib.gate_threshold(0.8, 0.0), rule=True)
    assert blessing.get_int_custom_property("blessed") == 0 and _files(blessing) == ["NOT_BLESSED"]
    assert not blessing.has_custom_property(gate_evaluator.NOT_BLESSED_REASON)  # TFMA's verdict, not the rule's
    reasons = evaluation.read_gate(evaluated.uri, blessed=False).reasons
    assert any("is not surely above the majority-class rate 0.381" in reason for reason in reasons)


@pytest.mark.parametrize(
    "threshold",
    [eval_config_lib.no_worse_threshold(0.0), None],
    ids=["served-test gate", "from-scratch comparison"],
)
def test_the_other_evaluators_are_unaffected(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, threshold: object
) -> None:
    calls = _fake_tfma(monkeypatch, NEAR_CHANCE)
    evaluated, blessing = _run(tmp_path, threshold, rule=False)
    assert len(calls) == 1
    assert blessing.get_int_custom_property("blessed") == 1  # TFMA's verdict as it wrote it
    assert majority_rule.read(evaluated.uri) is None


def test_the_gate_without_min_accuracy_is_not_mistaken_for_the_compare_only_gate(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged rerun skips TFMA on the served-test gate; the gate's own Evaluator must still judge."""
    calls = _fake_tfma(monkeypatch, NEAR_CHANCE)
    monkeypatch.setattr(gate_evaluator, "_same_model", lambda *_: True)
    _, blessing = _run(tmp_path / "gate", eval_config_lib.gate_threshold(None, 0.0), rule=True)
    assert len(calls) == 1 and blessing.get_int_custom_property("blessed") == 0
    _, skipped = _run(tmp_path / "served", eval_config_lib.no_worse_threshold(0.0), rule=False)
    assert len(calls) == 1 and skipped.get_string_custom_property(gate_evaluator.SKIPPED)


def test_only_the_gates_evaluator_applies_the_rule_by_default(tmp_path: object) -> None:
    config = tiny_run_config(str(tmp_path), above_majority_class=True, min_accuracy=None, compare_from_scratch=True)
    nodes = {node.id: node for node in create_pipeline(config).components}
    rules = {
        name: nodes[name].exec_properties.get(gate_evaluator.ABOVE_MAJORITY_CLASS_KEY)
        for name in (node_ids.EVALUATOR, node_ids.SERVED_TEST_EVALUATOR, node_ids.TRANSFER_VS_SCRATCH_EVALUATOR)
    }
    assert rules == {
        node_ids.EVALUATOR: 1,
        node_ids.SERVED_TEST_EVALUATOR: 0,
        node_ids.TRANSFER_VS_SCRATCH_EVALUATOR: 0,
    }
    bounds = eval_config_lib.GateBounds.from_json(nodes[node_ids.EVALUATOR].exec_properties["eval_config"])
    assert bounds == eval_config_lib.GateBounds(min_accuracy=None, max_accuracy_drop=0.0)
