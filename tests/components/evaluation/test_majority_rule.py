"""The majority-class rule and the accuracy arithmetic behind the gate's uncertainty."""

from __future__ import annotations

import os

import pytest

from components.evaluation import accuracy, majority_rule
from components.evaluation import metrics as evaluation
from tests.components.evaluation.tfma_output import CLEARLY_GOOD, NEAR_CHANCE, write_evaluation


def test_the_majority_class_rate_is_what_always_answering_the_largest_class_scores() -> None:
    assert accuracy.majority_class_rate({"a": 8, "b": 7, "c": 6}) == ("a", 8 / 21)
    assert accuracy.majority_class_rate({"b": 5, "a": 5}) == ("a", 0.5)  # a tie: the first name, stably
    assert accuracy.majority_class_rate({}) is None


def test_a_near_chance_accuracy_fails_the_rule_with_its_numbers() -> None:
    correct, examples = NEAR_CHANCE
    check = majority_rule.check(sum(correct.values()) / 21, examples)
    assert check is not None and not check.passed
    assert (check.examples, check.majority_class) == (21, "a")
    assert (round(check.low, 3), round(check.high, 3), round(check.majority_rate, 3)) == (0.324, 0.717, 0.381)
    reason = check.reason()
    assert "0.524 on 21 images (95% interval 0.324-0.717)" in reason
    assert "majority-class rate 0.381" in reason and "above_majority_class: false" in reason


def test_a_clearly_good_accuracy_passes_and_so_does_a_skewed_split_beaten_by_far() -> None:
    correct, examples = CLEARLY_GOOD
    check = majority_rule.check(sum(correct.values()) / 78, examples)
    assert check is not None and check.passed and round(check.low, 3) == 0.911
    # 90 of 100 are class a (rate 0.9): 0.95 accuracy has 95% interval 0.888-0.979, which reaches 0.9.
    assert not majority_rule.check(0.95, {"a": 90, "b": 10}).passed
    assert majority_rule.check(0.99, {"a": 900, "b": 100}).passed
    assert majority_rule.check(None, examples) is None and majority_rule.check(0.9, {}) is None


def test_the_check_round_trips_through_its_file(tmp_path: object) -> None:
    uri = str(tmp_path)
    assert majority_rule.read(uri) is None
    check = majority_rule.check(0.6, {"a": 5, "b": 5})
    assert majority_rule.write(uri, check) == os.path.join(uri, majority_rule.FILE_NAME)
    assert majority_rule.read(uri) == check


def test_read_gate_reports_the_rule_and_its_failure_as_a_reason(tmp_path: object) -> None:
    uri = write_evaluation(str(tmp_path / "near"), *NEAR_CHANCE)
    before = evaluation.read_gate(uri, blessed=True)
    assert before.majority_check is None and before.reasons == []  # the rule was not applied here
    assert before.per_class_examples == {"a": 8, "b": 7, "c": 6} and before.test_examples == 21
    majority_rule.write(uri, majority_rule.check(before.candidate_accuracy, before.per_class_examples))
    after = evaluation.read_gate(uri, blessed=False)
    assert after.majority_check is not None and len(after.reasons) == 1
    assert "is not surely above the majority-class rate 0.381" in after.reasons[0]
    assert after.candidate_interval == pytest.approx(accuracy.accuracy_interval(11 / 21, 21))
    assert after.candidate_interval == pytest.approx((0.324, 0.717), abs=1e-3)


def test_with_interval_formats_a_value_and_how_sure_it_is() -> None:
    assert evaluation.with_interval(0.524, 21) == "0.524 (95% 0.324-0.717)"
    assert evaluation.with_interval(0.524, None) == "0.524"
    assert evaluation.with_interval(None, 21) == "n/a"


@pytest.mark.parametrize(("accuracy_value", "examples"), [(0.9, 21), (0.974, 78), (0.5, 400), (0.99, 1000)])
def test_the_detectable_drop_shrinks_with_images_and_examples_to_detect_inverts_it(
    accuracy_value: float, examples: int
) -> None:
    drop = accuracy.detectable_drop(accuracy_value, examples)
    assert drop >= 1 / examples
    assert accuracy.detectable_drop(accuracy_value, examples * 4) < drop
    needed = accuracy.examples_to_detect(accuracy_value, drop)
    assert accuracy.detectable_drop(accuracy_value, needed) <= drop + 1e-12
    assert accuracy.detectable_drop(accuracy_value, max(needed - 2, 1)) > drop - 1e-3


def test_the_detectable_drop_matches_the_hand_computed_numbers() -> None:
    # 1.96 * sqrt(2 * 0.9 * 0.1 / 21) = 0.181; the demo's 78 images at 0.974: 0.050.
    assert round(accuracy.detectable_drop(0.9, 21), 3) == 0.181
    assert round(accuracy.detectable_drop(0.974, 78), 3) == 0.050
    assert accuracy.examples_to_detect(0.9, 0.05) == 277
