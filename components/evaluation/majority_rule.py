"""The gate's default bound: the test accuracy's 95% interval must lie above the majority-class rate.

Always answering the most frequent test class scores that class's share of the
test split (the majority-class rate): a model whose 95% Wilson interval reaches
that rate may have learned nothing. Unlike a fixed ``min_accuracy``, the rule means
the same for 2 classes as for 20, and for balanced as for skewed splits.

TFMA cannot express it (the bound depends on the test split's class counts), so
the gate's Evaluator (``components/gate_evaluator/executor.py``) applies it after
TFMA ran and records the verdict here, next to TFMA's output in the
ModelEvaluation artifact (``majority_rule.json``: this module is its only writer);
``metrics.read_gate`` reads it back, so every reader of the gate sees the same
numbers and the same reason.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

from components import typed_files
from components.evaluation import accuracy

FILE_NAME = "majority_rule.json"


class MajorityRuleCheck(BaseModel):
    """The rule applied to one evaluation.

    Attributes:
      accuracy: The candidate's test accuracy.
      examples: Test images it was measured on.
      low: Lower end of its 95% Wilson interval.
      high: Upper end of its 95% Wilson interval.
      majority_class: The most frequent class of the test split.
      majority_rate: That class's share of the test split.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    accuracy: float
    examples: int
    low: float
    high: float
    majority_class: str
    majority_rate: float

    @property
    def passed(self) -> bool:
        """Whether the whole interval lies above the majority-class rate."""
        return self.low > self.majority_rate

    def reason(self) -> str:
        """Why the rule failed, with its numbers (call when not :attr:`passed`)."""
        return (
            f"test accuracy {self.accuracy:.3f} on {self.examples} images (95% interval {self.low:.3f}-"
            f"{self.high:.3f}) is not surely above the majority-class rate {self.majority_rate:.3f} (always "
            f"answering {self.majority_class!r}): this could be chance. Add test images, or set "
            "above_majority_class: false to gate on min_accuracy alone"
        )


def check(candidate_accuracy: float | None, per_class_examples: dict[str, int]) -> MajorityRuleCheck | None:
    """The rule on an evaluation's numbers; None when there are none to judge (no accuracy or no test examples)."""
    majority = accuracy.majority_class_rate(per_class_examples)
    if candidate_accuracy is None or majority is None:
        return None
    examples = sum(per_class_examples.values())
    low, high = accuracy.accuracy_interval(candidate_accuracy, examples)
    return MajorityRuleCheck(
        accuracy=candidate_accuracy,
        examples=examples,
        low=low,
        high=high,
        majority_class=majority[0],
        majority_rate=majority[1],
    )


def write(evaluation_uri: str, result: MajorityRuleCheck) -> str:
    """Writes the check into the ModelEvaluation artifact; returns the file's path."""
    return typed_files.write(os.path.join(evaluation_uri, FILE_NAME), result)


def read(evaluation_uri: str) -> MajorityRuleCheck | None:
    """The check recorded in a ModelEvaluation artifact; None if the rule was not applied there."""
    return typed_files.read(os.path.join(evaluation_uri, FILE_NAME), MajorityRuleCheck)
