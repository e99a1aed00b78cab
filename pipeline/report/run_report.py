"""What the latest pipeline run did, read back from MLMD and the artifacts it points to."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from components.evaluation import inference_result
from components.evaluation.eval_config import GateBounds
from components.evaluation.metrics import GateResult, with_interval
from components.ingest import summary as ingest_summary
from components.modules.settings import TrainingSummary
from components.modules.tuning_settings import TunedSettings
from components.pusher import component as atomic_pusher
from components.tuner.trials import TuningResult

# Evaluators whose verdict is not the gate's (their eval_config has no gate bounds to read).


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """One execution of a run, timed by MLMD.

    Attributes:
      name: The node id (``Trainer``, ``served_model``).
      state: ``ran``, ``cached``, ``failed``, ``running`` (never finished) or ``canceled``.
      started: When MLMD registered the execution (seconds since the epoch).
      seconds: From registration to the last update (the publish); small for a cached step.
    """

    name: str
    state: str
    started: float
    seconds: float


@dataclasses.dataclass
class RunReport:
    """The outcome of one pipeline run."""

    run_id: str
    component_states: dict[str, str] = dataclasses.field(default_factory=dict)
    ingest: ingest_summary.IngestSummary | None = None
    ingest_report_dir: str = ""
    anomalies: list[str] = dataclasses.field(default_factory=list)
    # The Tuner's trials (tuning on), and what the Trainer took from the best one.
    tuning: TuningResult | None = None
    tuned: TunedSettings | None = None
    training: TrainingSummary | None = None
    training_dir: str = ""
    training_files: list[str] = dataclasses.field(default_factory=list)
    gate: GateResult | None = None
    served_test_gate: GateResult | None = None
    comparison: GateResult | None = None
    # The BulkInferrer's test predictions: counts, the worst mistakes (capped), examples per class.
    test_predictions: inference_result.PredictionSummary | None = None
    pushed_to: str | None = None
    not_pushed_reason: str = ""
    push_outcome: str = ""
    served_version: int = 0
    served_by: str = ""
    pipeline_name: str = ""
    started_at: float | None = None
    steps: list[StepTiming] = dataclasses.field(default_factory=list)
    gate_bounds: GateBounds | None = None
    log_path: str = ""
    report_path: str = ""

    @property
    def blessed(self) -> bool | None:
        """The gate's verdict (None if the Evaluator did not finish)."""
        return None if self.gate is None else self.gate.blessed

    @property
    def total_seconds(self) -> float:
        """The steps' times added up (start-up and imports before the first step are not in MLMD)."""
        return sum(step.seconds for step in self.steps)

    @property
    def elapsed_seconds(self) -> float:
        """From the first step's start to the last step's end (below the total when steps overlap)."""
        if not self.steps:
            return 0.0
        return max(step.started + step.seconds for step in self.steps) - min(step.started for step in self.steps)

    @property
    def negative_transfer(self) -> bool | None:
        """Whether training from scratch beat the transfer model on test (None: not compared)."""
        comparison = self.comparison
        if comparison is None or None in (comparison.candidate_accuracy, comparison.baseline_accuracy):
            return None
        return comparison.baseline_accuracy > comparison.candidate_accuracy

    def format(self) -> str:
        """A short human-readable summary."""
        lines = [f"Pipeline run {self.run_id}"]
        lines += self._ingest_lines()
        if self.anomalies:
            lines.append(f"  data anomalies: {'; '.join(self.anomalies)}")
        lines += self._tuning_lines()
        if self.training:
            lines.append(
                f"  validation accuracy: head-only {self.training.head_only_validation_accuracy:.3f}, "
                f"fine-tuned {_fmt(self.training.fine_tuned_validation_accuracy)}, kept stage {self.training.kept_stage}"
                f" (curves and TensorBoard logs: {self.training_dir})"
            )
            if self.training.stage2_auto is not None:
                lines.append(f"  stage 2 (auto): {self.training.stage2_auto.reason()}")
        lines += self._gate_lines()
        lines += self._step_lines()
        if self.log_path:
            lines.append(f"  full log: {self.log_path}")
        if self.report_path:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def _step_lines(self) -> list[str]:
        if not self.steps:
            return []
        width = max(len(step.name) for step in self.steps)
        lines = [f"  {'step':<{width}}  {'state':<7} {'seconds':>8}"]
        lines += [f"  {step.name:<{width}}  {step.state:<7} {step.seconds:>8.1f}" for step in self.steps]
        lines.append(
            f"  {'total':<{width}}  {'':<7} {self.total_seconds:>8.1f}"
            f"  (first start to last end {self.elapsed_seconds:.1f} s)"
        )
        return lines

    def _tuning_lines(self) -> list[str]:
        tuning = self.tuning
        if tuning is None:
            return []
        best = tuning.best
        if best is None:
            return [f"  tuning: none of {len(tuning.trials)} {tuning.algorithm} trials completed"]
        took = self.tuned.settings if self.tuned else best.hyperparameters
        values = ", ".join(f"{key} {_value(value)}" for key, value in took.items())
        return [
            f"  tuning: {len(tuning.completed)} of {len(tuning.trials)} {tuning.algorithm} trials in "
            f"{tuning.seconds:.0f} s (budget {tuning.trial_budget}"
            + (f" or {tuning.max_minutes:g} min" if tuning.max_minutes else "")
            + f"), best validation accuracy {best.score:.3f} (trial {best.trial_id}); the Trainer trained with "
            + (values or "the configured settings")
        ]

    def _ingest_lines(self) -> list[str]:
        if not self.ingest:
            return []
        ingest = self.ingest
        lines = [
            f"  ingest: {ingest.files_seen} files seen, {ingest.ingested} ingested, {ingest.rejected} rejected"
            + (f" {ingest.rejected_by_reason}" if ingest.rejected else "")
            + f"; per class {ingest.class_counts}"
            + "; splits: "
            + ", ".join(f"{name} {count}" for name, count in ingest.split_counts.items()),
        ]
        if ingest.duplicate_groups:
            conflict = next((group for group in ingest.duplicate_examples if group.conflict), None)
            lines.append(
                f"  copies: {ingest.duplicate_groups} groups ({ingest.images_in_duplicate_groups} images), each in one "
                "split"
                + (
                    f"; {ingest.label_conflict_files} files in {ingest.label_conflict_groups} groups filed under two "
                    f"classes rejected (label conflict), e.g. {' = '.join(conflict.paths[:3])}"
                    if conflict
                    else ""
                )
            )
        if ingest.nested_files:
            lines.append(
                f"  nested folders: {ingest.nested_files} files in sub-folders, ingested as their top class folder: "
                + ", ".join(list(ingest.nested_folders)[:3])
                + (" ..." if len(ingest.nested_folders) > 3 else "")
            )
        lines += [f"  split warning: {note}" for note in ingest.notes]
        return lines

    def _gate_lines(self) -> list[str]:
        lines = []
        if self.gate is not None:
            served = "none yet"
            if self.gate.baseline_accuracy is not None:
                served = with_interval(self.gate.baseline_accuracy, self.gate.test_examples)
            if self.served_version and self.gate.baseline_accuracy is not None:
                served += f" (version {self.served_version}, its {self.served_by})"
            lines.append(
                f"  test accuracy (gate, {self.gate.test_examples} held-out images): candidate "
                f"{with_interval(self.gate.candidate_accuracy, self.gate.test_examples)}{_majority_text(self.gate)}, "
                f"served model {served}"
            )
        served_test = self.served_test_gate
        if served_test is not None:
            verdict = "no worse" if served_test.blessed else "WORSE"
            examples = served_test.test_examples
            lines.append(
                f"  served version's own test split ({examples} images): candidate "
                f"{with_interval(served_test.candidate_accuracy, examples)}, served model "
                f"{with_interval(served_test.baseline_accuracy, examples)} ({verdict})"
            )
        if self.comparison is not None:
            verdict = "NEGATIVE TRANSFER: from scratch did better" if self.negative_transfer else "transfer did better"
            lines.append(
                f"  transfer vs from scratch on test: {_fmt(self.comparison.candidate_accuracy)} vs "
                f"{_fmt(self.comparison.baseline_accuracy)} ({verdict})"
            )
        if self.gate is not None and not self.gate.blessed:
            lines.append(f"  not blessed: {'; '.join(self.gate.reasons) or 'no reason recorded'}")
        if self.not_pushed_reason:
            lines.append(f"  HELD BACK: {self.not_pushed_reason}")
        lines.append(f"  blessed: {self.blessed}; pushed to: {self._pushed_text()}")
        return lines

    def _pushed_text(self) -> str:
        if not self.pushed_to:
            return "nothing pushed"
        if not tf.io.gfile.exists(self.pushed_to):
            return f"{self.pushed_to} (MISSING on disk: the serving directory and MLMD disagree)"
        if self.push_outcome == atomic_pusher.ALREADY_SERVED:
            return f"{self.pushed_to} (already served: nothing copied)"
        return self.pushed_to


def _majority_text(gate: GateResult) -> str:
    """The majority-class rule's verdict, where the gate applied it (why it failed: the ``not blessed`` line)."""
    check = gate.majority_check
    if check is None:
        return ""
    verdict = "above" if check.passed else "NOT surely above"
    return f" {verdict} the majority-class rate {check.majority_rate:.3f}"


def _value(value: object) -> str:
    """A tuned value as the summary shows it: 3 significant digits for numbers."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
