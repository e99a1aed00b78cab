"""The ``serving list`` table: the versions ``components/serving/labels.py`` describes, newest first."""

from __future__ import annotations

from components.evaluation.accuracy import accuracy_interval
from components.serving import labels, sidecars

_HEADER = (
    "version",
    "labels",
    "in models.config",
    "test accuracy (95% interval, images)",
    "pipeline run",
    "pushed at",
    "note",
)


def format_versions(versions: list[labels.VersionInfo]) -> str:
    """A table of ``labels.describe_versions``, newest first; times in UTC."""
    if not versions:
        return "No versions."
    rows = [_HEADER, *(_row(info) for info in reversed(versions))]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _row(info: labels.VersionInfo) -> tuple[str, ...]:
    note = "incomplete (no saved_model.pb)" if not info.complete else ""
    if info.rolled_back_at:
        note = f"rolled back {sidecars.format_utc(info.rolled_back_at)}"
    return (
        str(info.version),
        ",".join(info.labels) or "-",
        "yes" if info.listed else "no",
        _accuracy(info),
        info.pipeline_run or "-",
        sidecars.format_utc(info.pushed_at) if info.pushed_at else "-",
        note,
    )


def _accuracy(info: labels.VersionInfo) -> str:
    """``0.9740 (0.911-0.993, 78)``: the gate's test accuracy at push time, its 95% interval and test images."""
    if info.accuracy is None:
        return "-"
    if not info.test_examples:
        return f"{info.accuracy:.4f}"
    low, high = accuracy_interval(info.accuracy, info.test_examples)
    return f"{info.accuracy:.4f} ({low:.3f}-{high:.3f}, {info.test_examples})"
