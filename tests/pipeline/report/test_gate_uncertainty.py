"""How sure the gate is, wherever a gate number is shown: the run summary and the model card."""

from __future__ import annotations

import html.parser

from components.evaluation import majority_rule
from components.evaluation.eval_config import GateBounds
from components.evaluation.metrics import GateResult
from pipeline.report import html_report
from pipeline.report.run_report import RunReport

NEAR_CHANCE_CHECK = majority_rule.check(11 / 21, {"a": 8, "b": 7, "c": 6})
NEAR_CHANCE = GateResult(
    blessed=False,
    candidate_accuracy=11 / 21,
    test_examples=21,
    per_class_accuracy={"a": 0.5, "b": 4 / 7, "c": 0.5},
    per_class_examples={"a": 8, "b": 7, "c": 6},
    reasons=[NEAR_CHANCE_CHECK.reason()],
    majority_check=NEAR_CHANCE_CHECK,
)
GOOD_CHECK = majority_rule.check(76 / 78, {"a": 17, "b": 16, "c": 16, "d": 15, "e": 14})
GOOD = GateResult(
    blessed=True,
    candidate_accuracy=76 / 78,
    baseline_accuracy=0.95,
    test_examples=78,
    per_class_examples={"a": 17, "b": 16, "c": 16, "d": 15, "e": 14},
    majority_check=GOOD_CHECK,
)


class _Texts(html.parser.HTMLParser):
    """Text and attributes of each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.attributes: dict[str, dict[str, str | None]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs).get("id")
        if found:
            self.texts[found] = ""
            self.attributes[found] = dict(attrs)
        if tag not in ("br", "img", "meta", "link", "input"):
            self._open.append(found)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("br", "img", "meta", "link", "input"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name:
                self.texts[name] += data


def _card(report: RunReport) -> _Texts:
    parser = _Texts()
    parser.feed(html_report.render(report, None))
    return parser


def test_the_summary_shows_the_interval_the_majority_rate_and_why_not_blessed() -> None:
    text = RunReport("run-1", gate=NEAR_CHANCE).format()
    assert (
        "test accuracy (gate, 21 held-out images): candidate 0.524 (95% 0.324-0.717) NOT surely above the "
        "majority-class rate 0.381, served model none yet"
    ) in text
    assert "not blessed: test accuracy 0.524 on 21 images (95% interval 0.324-0.717) is not surely above" in text


def test_the_summary_shows_both_models_intervals_when_one_is_served() -> None:
    served_test = GateResult(blessed=True, candidate_accuracy=0.9, baseline_accuracy=0.85, test_examples=40)
    text = RunReport("run-2", gate=GOOD, served_test_gate=served_test).format()
    assert "candidate 0.974 (95% 0.911-0.993) above the majority-class rate 0.218, served model 0.950 (95% " in text
    assert "(40 images): candidate 0.900 (95% 0.769-0.960), served model 0.850 (95% 0.709-0.929) (no worse)" in text


def test_the_card_says_in_words_that_a_near_chance_accuracy_could_be_chance() -> None:
    card = _card(RunReport("run-1", gate=NEAR_CHANCE, gate_bounds=GateBounds(max_accuracy_drop=0.0)))
    assert card.attributes["majority-rate"]["data-value"] == str(8 / 21)
    assert card.texts["candidate-interval"] == "0.324 to 0.717"
    assert card.texts["majority-rule"].strip().endswith("FAIL")
    assert "includes the majority-class rate 0.381" in card.texts["gate-certainty"]
    assert "this could be chance" in card.texts["gate-certainty"]
    assert "(95% interval 0.324-0.717)" in card.texts["gate-reasons"]


def test_the_card_says_a_clear_win_is_above_chance_and_how_it_compares_with_the_served_model() -> None:
    bounds = GateBounds(min_accuracy=0.95, max_accuracy_drop=0.0)
    card = _card(RunReport("run-2", gate=GOOD, gate_bounds=bounds))
    assert card.texts["majority-rule"].strip().endswith("pass")
    words = card.texts["gate-certainty"]
    assert "lies above the majority-class rate 0.218" in words and "surely does better than chance" in words
    assert "contains min_accuracy 0.950" in words  # 0.974, but 0.911-0.993: another test split could fail it
    assert "differ by +0.024 on the same 78 test images: within noise" in words


def test_without_the_rule_the_card_shows_no_rule_row_and_no_chance_words() -> None:
    plain = GateResult(blessed=True, candidate_accuracy=0.9, test_examples=50)
    card = _card(RunReport("run-3", gate=plain, gate_bounds=GateBounds(min_accuracy=0.5, max_accuracy_drop=0.0)))
    assert "majority-rule" not in card.texts
    assert html_report.gate_certainty(RunReport("run-3", gate=plain)) == []
