"""The gate's baseline is what the serving directory serves: the stable label, else the newest version."""

from __future__ import annotations

import os

import pytest
from tfx.types import standard_artifacts

from components.evaluation import accuracy
from components.evaluation import eval_config as eval_config_lib
from components.pusher import executor as pusher_executor
from components.served_model import component as served_model
from components.served_model import executor as served_model_executor
from components.served_model.component import ServedBaseline
from components.serving import labels, sidecars
from tests.helpers import write


def _version(base: str, version: int, accuracy_at_push: float | None = None, complete: bool = True) -> str:
    folder = os.path.join(base, str(version))
    write(os.path.join(folder, "saved_model.pb" if complete else "variables/partial"), f"graph {version}".encode())
    if accuracy_at_push is not None:
        sidecars.write_push_info(folder, sidecars.PushInfo(accuracy=accuracy_at_push, test_examples=40))
    return folder


def _run_step(base: str) -> tuple[standard_artifacts.Model, standard_artifacts.Examples]:
    model, examples = standard_artifacts.Model(), standard_artifacts.Examples()
    model.uri = os.path.join(os.path.dirname(base), "served_artifact")
    examples.uri = os.path.join(os.path.dirname(base), "served_test_examples")
    outputs = {served_model.MODEL_KEY: [model], served_model.TEST_EXAMPLES_KEY: [examples]}
    served_model_executor.ServedModelExecutor().Do({}, outputs, {"serving_model_dir": base})
    return model, examples


def _served(base: str) -> standard_artifacts.Model:
    return _run_step(base)[0]


def test_nothing_served_hands_an_empty_model(tmp_path: object) -> None:
    model = _served(os.path.join(str(tmp_path), "serving", "clf"))
    assert served_model.is_empty(model) and ServedBaseline.from_artifact(model).version == 0
    assert not os.path.exists(model.uri)


def test_without_a_model_config_the_newest_complete_version_is_served(tmp_path: object) -> None:
    base = os.path.join(str(tmp_path), "serving", "clf")
    _version(base, 100, 0.9)
    _version(base, 200, 0.95)
    _version(base, 300, complete=False)  # a folder without saved_model.pb serves nothing
    model = _served(base)
    served = ServedBaseline.from_artifact(model)
    assert (served.version, served.served_by, served.push_accuracy, served.push_test_examples) == (
        200,
        "newest version",
        0.95,
        40,
    )
    with open(os.path.join(model.uri, "Format-Serving", "saved_model.pb")) as handle:
        assert handle.read() == "graph 200"
    assert not served_model.is_empty(model)


def test_the_stable_label_wins_over_a_newer_version(tmp_path: object) -> None:
    serving = os.path.join(str(tmp_path), "serving")
    base = os.path.join(serving, "clf")
    _version(base, 100, 0.9)
    labels.set_canary(serving, "clf", 100)  # the first version labelled: stable and canary
    assert labels.served_version(serving, "clf") == (100, "stable label")
    _version(base, 200, 0.5)  # pushed, not promoted: clients still get 100
    served = ServedBaseline.from_artifact(_served(base))
    assert (served.version, served.served_by) == (100, "stable label")


def test_an_unchanged_model_is_already_served_and_says_so(tmp_path: object) -> None:
    from tests.components.pusher.test_pusher import _model, _run_executor

    first = _model(f"{tmp_path}/m1/Format-Serving", b"graph one")
    assert _run_executor(tmp_path, first, True, "1").get_string_custom_property(pusher_executor.PUSH_OUTCOME) == (
        pusher_executor.NEW_VERSION
    )
    again = _run_executor(tmp_path, first, True, "2")
    assert again.get_string_custom_property(pusher_executor.PUSH_OUTCOME) == pusher_executor.ALREADY_SERVED


@pytest.mark.parametrize(
    ("push", "push_n", "now", "now_n", "held"),
    [
        (1.0, 16, 8 / 17, 17, True),  # the shuffled-label drop: 1.000 at push, 0.471 now
        (0.9, 40, 0.85, 40, False),  # sampling noise between spans
        (0.95, 20, 0.75, 20, False),  # lower, but the intervals overlap: not sure enough
        (0.97, 200, 0.80, 200, True),
    ],
)
def test_a_data_shift_holds_the_push_back_only_when_the_intervals_part(
    push: float, push_n: int, now: float, now_n: int, held: bool
) -> None:
    served = ServedBaseline(version=7, served_by="newest version", push_accuracy=push, push_test_examples=push_n)
    reason = pusher_executor.data_shift(served, now, now_n)
    assert bool(reason) == held == accuracy.surely_lower(now, now_n, push, push_n)
    if held:
        assert reason.startswith(f"data shift: the served version 7 scores {now:.3f} (95% interval ")
        assert f"on this run's {now_n} test images, against {push:.3f}" in reason


def test_no_data_shift_without_a_served_model_or_its_push_numbers() -> None:
    assert pusher_executor.data_shift(ServedBaseline(version=0), 0.1, 50) == ""
    assert pusher_executor.data_shift(ServedBaseline(version=3, push_accuracy=None), 0.1, 50) == ""
    assert (
        pusher_executor.data_shift(ServedBaseline(version=3, push_accuracy=1.0, push_test_examples=50), None, 0) == ""
    )


def test_the_served_versions_test_split_comes_along_when_its_push_recorded_it(tmp_path: object) -> None:
    base = os.path.join(str(tmp_path), "serving", "clf")
    gated_on = os.path.join(str(tmp_path), "examples", "7")
    write(os.path.join(gated_on, "Split-test", "data_tfrecord-00000-of-00001.gz"), b"test records")
    write(os.path.join(gated_on, "Split-train", "data_tfrecord-00000-of-00001.gz"), b"train records")
    folder = _version(base, 100, 0.9)
    sidecars.write_push_info(folder, sidecars.PushInfo(accuracy=0.9, test_examples=40, examples_uri=gated_on))
    _version(base, 50, 0.8)  # an older version without a record
    model, examples = _run_step(base)
    assert examples.get_int_custom_property(served_model.SERVED_VERSION) == 100
    assert os.listdir(examples.uri) == ["Split-test"]  # the test split only: no model trained on it
    with open(os.path.join(examples.uri, "Split-test", "data_tfrecord-00000-of-00001.gz"), "rb") as handle:
        assert handle.read() == b"test records"
    assert examples.split_names == '["test"]'


def test_a_version_without_a_recorded_test_split_hands_an_empty_one(tmp_path: object) -> None:
    base = os.path.join(str(tmp_path), "serving", "clf")
    _version(base, 100, 0.9)
    model, examples = _run_step(base)
    assert not served_model.is_empty(model) and served_model.is_empty(examples)


def test_a_regression_on_the_served_versions_test_split_holds_the_push_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.evaluation import metrics as evaluation

    blessing, evaluated = standard_artifacts.ModelBlessing(), standard_artifacts.ModelEvaluation()
    evaluated.uri = "/evaluations/9"
    gate = evaluation.GateResult(
        blessed=False,
        candidate_accuracy=0.7,
        baseline_accuracy=0.95,
        test_examples=40,
        reasons=["test accuracy 0.700 is 0.250 below the baseline's 0.950 (max_accuracy_drop 0.000)"],
    )
    monkeypatch.setattr(evaluation, "read_gate", lambda uri, blessed: gate if uri == evaluated.uri else None)
    inputs = {
        pusher_executor.SERVED_TEST_BLESSING_KEY: [blessing],
        pusher_executor.SERVED_TEST_EVALUATION_KEY: [evaluated],
    }
    blessing.set_int_custom_property("blessed", 1)
    assert pusher_executor._served_test_regression(inputs) == ""  # noqa: SLF001
    blessing.set_int_custom_property("blessed", 0)
    reason = pusher_executor._served_test_regression(inputs)  # noqa: SLF001
    assert reason.startswith("regression on the served version's own test split (40 images it was gated on")
    assert "test accuracy 0.700 is 0.250 below the baseline's 0.950" in reason and reason.endswith("max_accuracy_drop")


def test_only_the_served_test_gate_is_skipped_for_an_unchanged_model() -> None:
    from tfx.utils import proto_utils

    from components.gate_evaluator import executor as gate_evaluator

    def properties(threshold: object) -> dict:
        return {"eval_config": proto_utils.proto_to_json(eval_config_lib.eval_config(threshold))}

    assert gate_evaluator._only_compares(properties(eval_config_lib.no_worse_threshold(0.0)))  # noqa: SLF001
    assert not gate_evaluator._only_compares(properties(eval_config_lib.gate_threshold(0.5, 0.0)))  # noqa: SLF001
    assert not gate_evaluator._only_compares(properties(None))  # noqa: SLF001 (the from-scratch comparison)
