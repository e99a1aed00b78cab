"""What users look at after training: learning curves, confusion matrix, summary files.

Written into the Trainer's model run directory (next to the TensorBoard logs).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from components import typed_files
from components.modules.settings import AutoChoice, TrainingSummary

LEARNING_CURVES = "learning_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
SUMMARY_JSON = "training_summary.json"
SUMMARY_MARKDOWN = "training_summary.md"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(figure)


def plot_learning_curves(summary: TrainingSummary, path: str) -> None:
    """Accuracy and loss per epoch (train and validation), stage boundary marked."""
    plt = _pyplot()
    rows = summary.epochs()
    epochs = [row.epoch for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        axis.plot(epochs, [getattr(row, metric) for row in rows], marker="o", label="train")
        axis.plot(epochs, [getattr(row, f"val_{metric}") for row in rows], marker="o", label="validation")
        if summary.stage2 is not None:
            axis.axvline(summary.stage1_epochs_run + 0.5, color="gray", linestyle="--", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    _save(figure, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str, title: str) -> None:
    """A confusion matrix with counts in the cells."""
    plt = _pyplot()
    size = max(4, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center")
    axis.set_title(title)
    _save(figure, path)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def phase_line(phase_seconds: dict[str, float]) -> str:
    """``stage 1 12.3 s, stage 2 8.0 s, ...`` (the Trainer's phases, in order)."""
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phase_seconds.items())


def _auto_lines(choice: AutoChoice) -> list[str]:
    """fine_tune_schedule=auto: the sentence and one row per candidate."""
    rungs = range(len(choice.rung_batches))
    lines = [
        f"- stage 2 (auto): {choice.reason()}",
        "",
        "| candidate | blocks from the top | learning rate | "
        + " | ".join(f"validation after rung {rung + 1}" for rung in rungs)
        + " | batches | outcome |",
        "|---|---|---|" + "---|" * len(rungs) + "---|---|",
    ]
    for candidate in choice.candidates:
        scores = [_number(_at(candidate.rung_accuracies, rung)) for rung in rungs]
        outcome = "chosen" if candidate.chosen else f"dropped after rung {candidate.dropped_at_rung}"
        lines.append(
            f"| from {candidate.first_layer} | {candidate.blocks} | {candidate.learning_rate:.0e} | "
            + " | ".join(scores)
            + f" | {candidate.batches_trained} | {outcome} |"
        )
    return [*lines, ""]


def _at(values: list[float], index: int) -> float | None:
    return values[index] if index < len(values) else None


def markdown_summary(summary: TrainingSummary) -> str:
    """A short human-readable training summary, with train vs validation accuracy per epoch."""
    lines = ["# Training summary", ""]
    lines.append(f"- classes: {', '.join(summary.class_names)}")
    lines.append(f"- examples: {', '.join(f'{name} {count}' for name, count in summary.split_sizes.items())}")
    lines.append(f"- head-only (stage 1) validation accuracy: {summary.head_only_validation_accuracy:.4f}")
    if summary.fine_tuned_validation_accuracy is not None:
        lines.append(f"- fine-tuned (stage 2) validation accuracy: {summary.fine_tuned_validation_accuracy:.4f}")
    lines.append(f"- kept: stage {summary.kept_stage}")
    if summary.stage2_auto is not None:
        lines += _auto_lines(summary.stage2_auto)
    if summary.phase_seconds:
        lines.append(f"- time: {phase_line(summary.phase_seconds)}")
    lines += [
        "",
        "A train accuracy far below validation accuracy means strong regularisation (augmentation, dropout);",
        "far above it, overfitting.",
        "",
        "| epoch | stage | loss | train accuracy | validation loss | validation accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.epochs():
        lines.append(
            f"| {row.epoch} | {row.stage} | {row.loss:.4f} | {row.accuracy:.4f} | {_number(row.val_loss)} "
            f"| {_number(row.val_accuracy)} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(summary: TrainingSummary, model_run_dir: str) -> None:
    """Writes the JSON and Markdown summaries and both plots."""
    typed_files.write(os.path.join(model_run_dir, SUMMARY_JSON), summary)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_MARKDOWN), "w") as handle:
        handle.write(markdown_summary(summary))
    plot_learning_curves(summary, os.path.join(model_run_dir, LEARNING_CURVES))
    plot_confusion_matrix(
        np.array(summary.validation_confusion_matrix),
        summary.class_names,
        os.path.join(model_run_dir, CONFUSION_MATRIX),
        "validation split",
    )


def read_summary(model_run_dir: str) -> TrainingSummary | None:
    """The training summary of a model run folder, or None if there is none."""
    return typed_files.read(os.path.join(model_run_dir, SUMMARY_JSON), TrainingSummary)
