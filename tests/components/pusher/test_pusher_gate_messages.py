"""What the Pusher says about the gate's numbers: why not blessed, and the intervals when it holds back."""

from __future__ import annotations

import os

from tfx.types import standard_artifacts

from components.evaluation import majority_rule
from components.pusher import executor as pusher_executor
from tests.components.evaluation.tfma_output import NEAR_CHANCE, write_evaluation


def _evaluation(uri: str) -> standard_artifacts.ModelEvaluation:
    artifact = standard_artifacts.ModelEvaluation()
    artifact.uri = uri
    return artifact


def test_not_blessed_by_the_majority_rule_says_why_with_the_numbers(tmp_path: object) -> None:
    uri = write_evaluation(os.path.join(str(tmp_path), "evaluation"), *NEAR_CHANCE)
    majority_rule.write(uri, majority_rule.check(11 / 21, NEAR_CHANCE[1]))
    reason = pusher_executor._not_blessed_reason({pusher_executor.EVALUATION_KEY: [_evaluation(uri)]})  # noqa: SLF001
    assert reason.startswith("test accuracy 0.524 on 21 images (95% interval 0.324-0.717) is not surely above")
    assert pusher_executor._not_blessed_reason({}) == "see the Evaluator's blessing"  # noqa: SLF001


def test_a_regression_on_the_served_split_quotes_both_intervals(tmp_path: object) -> None:
    uri = write_evaluation(
        os.path.join(str(tmp_path), "served_test"),
        {"a": 10, "b": 10},
        {"a": 20, "b": 20},
        baseline_accuracy=0.9,
        validation_ok=False,
    )
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 0)
    reason = pusher_executor._served_test_regression(  # noqa: SLF001
        {
            pusher_executor.SERVED_TEST_BLESSING_KEY: [blessing],
            pusher_executor.SERVED_TEST_EVALUATION_KEY: [_evaluation(uri)],
        }
    )
    assert "(40 images it was gated on" in reason
    assert "candidate 0.500 (95% 0.352-0.648), served model 0.900 (95% 0.769-0.960): not pushed" in reason
