"""The run report's own judgements, on hand-made numbers."""

from __future__ import annotations

import pytest

from components.evaluation.metrics import GateResult
from pipeline.report.run_report import RunReport


@pytest.mark.parametrize(
    ("transfer", "scratch", "expected"),
    [(0.9, 0.5, False), (0.5, 0.9, True), (0.7, 0.7, False), (None, 0.7, None)],
)
def test_negative_transfer_is_scratch_beating_transfer(transfer: object, scratch: float, expected: object) -> None:
    comparison = GateResult(blessed=False, candidate_accuracy=transfer, baseline_accuracy=scratch)
    assert RunReport("r", comparison=comparison).negative_transfer is expected


def test_no_comparison_no_verdict() -> None:
    assert RunReport("r").negative_transfer is None
