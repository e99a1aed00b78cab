"""What users look at after training: learning curves, confusion matrix, summary files.

Written into the Trainer's model run directory (next to the TensorBoard logs).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

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


def epoch_history(summary: dict[str, Any]) -> dict[str, list[float]]:
    """Stage 1 and stage 2 histories joined, epoch by epoch."""
    joined: dict[str, list[float]] = {}
    for stage in ("stage1", "stage2"):
        for key, values in summary.get(stage, {}).items():
            joined.setdefault(key, []).extend(values)
    return joined


def plot_learning_curves(summary: dict[str, Any], path: str) -> None:
    """Accuracy and loss per epoch (train and eval), stage boundary marked."""
    plt = _pyplot()
    history = epoch_history(summary)
    boundary = len(summary["stage1"].get("loss", []))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "eval")):
            values = history.get(key, [])
            axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
        if summary.get("stage2"):
            axis.axvline(boundary + 0.5, color="gray", linestyle="--", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    _save(figure, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str) -> None:
    """The eval split's confusion matrix with counts in the cells."""
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
    axis.set_title("eval split")
    _save(figure, path)


def markdown_summary(summary: dict[str, Any]) -> str:
    """A short human-readable training summary."""
    lines = ["# Training summary", ""]
    lines.append(f"- classes: {', '.join(summary.get('class_names', []))}")
    lines.append(f"- head-only (stage 1) eval accuracy: {summary['head_only_eval_accuracy']:.4f}")
    if "fine_tuned_eval_accuracy" in summary:
        lines.append(f"- fine-tuned (stage 2) eval accuracy: {summary['fine_tuned_eval_accuracy']:.4f}")
    lines.append(f"- kept: stage {summary['kept_stage']}")
    if "from_scratch_eval_accuracy" in summary:
        lines.append(f"- from-scratch comparison eval accuracy: {summary['from_scratch_eval_accuracy']:.4f}")
        if summary.get("negative_transfer"):
            lines.append("- **negative transfer**: training from scratch did better than the pretrained model")
    history = epoch_history(summary)
    lines += ["", "| epoch | stage | loss | accuracy | eval loss | eval accuracy |", "|---|---|---|---|---|---|"]
    boundary = len(summary["stage1"].get("loss", []))
    for index, loss in enumerate(history.get("loss", [])):
        row = [
            history.get(key, [float("nan")] * (index + 1))[index] for key in ("accuracy", "val_loss", "val_accuracy")
        ]
        stage = 1 if index < boundary else 2
        lines.append(f"| {index + 1} | {stage} | {loss:.4f} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} |")
    return "\n".join(lines) + "\n"


def write_reports(summary: dict[str, Any], matrix: np.ndarray, model_run_dir: str) -> None:
    """Writes the JSON and Markdown summaries and both plots."""
    summary = {**summary, "confusion_matrix": matrix.tolist()}
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_JSON), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_MARKDOWN), "w") as handle:
        handle.write(markdown_summary(summary))
    plot_learning_curves(summary, os.path.join(model_run_dir, LEARNING_CURVES))
    plot_confusion_matrix(matrix, summary["class_names"], os.path.join(model_run_dir, CONFUSION_MATRIX))
