"""A self-contained HTML model card of one pipeline run.

Everything comes from a :class:`~pipeline.report.run_report.RunReport` (MLMD and the
artifacts it points to) plus, when the caller has it, the effective pipeline
config, which MLMD does not hold. The page has no external resources: the
Trainer's learning-curves and confusion-matrix PNGs and the BulkInferrer's test images
(small JPEG thumbnails of the mistakes and of examples per class) are inlined as data
URIs, so the file can be mailed or archived on its own. Reports go to
``<pipeline_root>/reports/<run id>.html``, the config next to it as
``<run id>.config.json``.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
import os
import re
from typing import Any

import jinja2
import tensorflow as tf
from PIL import Image

from components.evaluation import inference_result
from components.evaluation.accuracy import accuracy_interval, detectable_drop
from components.ingest import splits
from components.ingest.summary import IngestSummary
from components.modules import reports
from components.modules.settings import BACKBONES
from pipeline.report.mlmd_reader import read_run_report
from pipeline.report.run_report import RunReport

REPORTS_DIR = "reports"
TEMPLATES_DIR = os.path.join(os.path.dirname(__file__), "templates")
TEMPLATE = "model_card.html.j2"
# The largest class this many times the smallest gets an imbalance warning.
IMBALANCE_RATIO = 3.0
# Per-class test accuracy from fewer images than this gets a warning.
MIN_CLASS_TEST_EXAMPLES = 10
# The test images' thumbnails (mistakes, examples per class): JPEG, at most this many pixels a side.
THUMBNAIL_SIDE = 96
THUMBNAIL_QUALITY = 80
_INTENDED_USE = (
    "Classifies one image into exactly one of the classes under Model details, as trained by this pipeline on the images of "
    "its data root. It always answers with one of these classes: an image of something else, or unlike the "
    "training images (another camera, lighting, resolution or background), gets a confident but meaningless "
    "answer. Check it on images from where it will be used before relying on it, and keep a person in the loop "
    "where a wrong class is costly."
)


def report_path(pipeline_root: str, run_id: str) -> str:
    """``<pipeline_root>/reports/<run id>.html``, the run id made safe as a file name."""
    return os.path.join(pipeline_root, REPORTS_DIR, re.sub(r"[^A-Za-z0-9._-]", "-", run_id) + ".html")


def config_path(path: str) -> str:
    """Where the effective config of the report at ``path`` is kept."""
    return path.removesuffix(".html") + ".config.json"


def read_saved_config(path: str) -> dict[str, Any] | None:
    """The config saved next to the report at ``path``, None if there is none."""
    saved = config_path(path)
    if not tf.io.gfile.exists(saved):
        return None
    with tf.io.gfile.GFile(saved) as handle:
        return json.load(handle)


def considerations(report: RunReport) -> list[str]:
    """Limitations a reader of the numbers should know, one sentence each."""
    notes = _data_considerations(report.ingest)
    gate = report.gate
    if gate is not None and gate.candidate_accuracy is not None and gate.test_examples:
        low, high = accuracy_interval(gate.candidate_accuracy, gate.test_examples)
        notes.append(
            f"Test accuracy {gate.candidate_accuracy:.3f} comes from {gate.test_examples} held-out images: "
            f"its 95% interval is {low:.3f} to {high:.3f}. Differences smaller than that are noise."
        )
    if gate is not None:
        few = [
            f"{label} ({count})" for label, count in gate.per_class_examples.items() if count < MIN_CLASS_TEST_EXAMPLES
        ]
        if few:
            notes.append(
                f"Per-class test accuracy rests on fewer than {MIN_CLASS_TEST_EXAMPLES} images for: {', '.join(few)}."
            )
    training = report.training
    if training is not None and training.settings.from_scratch:
        notes.append("The backbone was trained from random weights (weights: none): nothing was transferred.")
    if training is not None and training.stage2 is not None and training.kept_stage == 1:
        notes.append("Fine-tuning (stage 2) lowered validation accuracy, so the head-only model was kept.")
    if report.negative_transfer:
        notes.append("Negative transfer: the same model trained from scratch did better on test.")
    return notes


def gate_certainty(report: RunReport) -> list[str]:
    """How sure the gate's decision is, in words: the candidate's 95% interval against each bound it was held to."""
    gate = report.gate
    interval = gate.candidate_interval if gate is not None else None
    if gate is None or interval is None:
        return []
    low, high = interval
    span = f"The candidate's 95% interval {low:.3f}-{high:.3f} ({gate.test_examples} test images)"
    sentences = []
    check = gate.majority_check
    if check is not None and check.passed:
        sentences.append(
            f"{span} lies above the majority-class rate {check.majority_rate:.3f} (always answering "
            f"{check.majority_class!r}): it surely does better than chance."
        )
    elif check is not None:
        sentences.append(
            f"{span} includes the majority-class rate {check.majority_rate:.3f} (always answering "
            f"{check.majority_class!r}): this could be chance, so it was not blessed."
        )
    bound = report.gate_bounds.min_accuracy if report.gate_bounds else None
    if bound is not None and low <= bound <= high:
        sentences.append(f"{span} contains min_accuracy {bound:.3f}: on other test images the verdict could differ.")
    if gate.baseline_accuracy is not None:
        sentences.append(_versus_served(gate.candidate_accuracy, gate.baseline_accuracy, gate.test_examples))
    return sentences


def _versus_served(candidate: float, served: float, examples: int) -> str:
    """Whether the candidate's difference from the served model on the same test images is more than noise."""
    noise = detectable_drop((candidate + served) / 2, examples)
    difference = candidate - served
    if abs(difference) < noise:
        return (
            f"Candidate and served model differ by {difference:+.3f} on the same {examples} test images: within noise "
            f"(differences under about {noise:.3f} cannot be told from chance there)."
        )
    better = "better" if difference > 0 else "worse"
    return f"The candidate is {better} than the served model by {abs(difference):.3f}: more than noise ({noise:.3f})."


def _data_considerations(ingest: IngestSummary | None) -> list[str]:
    if ingest is None:
        return []
    notes = []
    for label, counts in ingest.class_split_counts.items():
        if not counts.get("train"):
            notes.append(
                f"Class {label!r} has no training images: the model has an output for it but never learned it."
            )
    counts = ingest.class_counts
    if len(counts) >= 2 and min(counts.values()) > 0:
        largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
        ratio = counts[largest] / counts[smallest]
        if ratio >= IMBALANCE_RATIO:
            notes.append(
                f"Class imbalance: {largest!r} has {counts[largest]} images, {smallest!r} {counts[smallest]} "
                f"({ratio:.1f}:1). Overall accuracy can hide a poor small class: read the per-class accuracy."
            )
    if ingest.rejected:
        reasons = ", ".join(f"{reason} {count}" for reason, count in ingest.rejected_by_reason.items())
        files = "1 file was" if ingest.rejected == 1 else f"{ingest.rejected} files were"
        notes.append(f"{files} rejected at ingest ({reasons}); they are in no split.")
    return notes


def _data_uri(path: str) -> str | None:
    if not path or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as handle:
        return "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")


def thumbnail_uri(image: bytes, side: int = THUMBNAIL_SIDE) -> str | None:
    """An encoded image as a small JPEG data URI (at most ``side`` pixels a side); None if it does not decode."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            small = opened.convert("RGB")
    except (OSError, ValueError) as error:
        logging.warning("A test image could not be decoded for the model card's thumbnails: %s", error)
        return None
    small.thumbnail((side, side))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnails(predictions: list[inference_result.ImagePrediction]) -> list[dict[str, Any]]:
    """What the card shows of each image: the prediction's fields and a thumbnail (None: not decodable)."""
    return [
        {
            **prediction.model_dump(exclude={"image"}),
            "misclassified": prediction.misclassified,
            "thumbnail": thumbnail_uri(prediction.image),
        }
        for prediction in predictions
    ]


def _test_predictions(report: RunReport) -> dict[str, Any] | None:
    """The misclassified test images (worst first) and the examples per class, as thumbnails."""
    summary = report.test_predictions
    if summary is None:
        return None
    return {
        "summary": summary,
        "mistakes": _thumbnails(summary.mistakes),
        "examples": {label: _thumbnails(kept) for label, kept in summary.examples.items()},
    }


def _tuning(report: RunReport) -> dict[str, Any] | None:
    """The Tuner's trials for the card: the searched names (the table's columns), the best trial, the stop."""
    tuning = report.tuning
    if tuning is None:
        return None
    names = list(dict.fromkeys(name for trial in tuning.trials for name in trial.hyperparameters))
    stops = {
        "trials": f"the trial budget ({tuning.trial_budget})",
        "time": f"the time budget ({tuning.max_minutes:g} min)" if tuning.max_minutes else "the time budget",
        "search": "the search itself (no new point to try)",
    }
    best = tuning.best
    return {
        "result": tuning,
        "names": names,
        "best_id": best.trial_id if best else "",
        "stopped_by": stops[tuning.stopped_by],
        "hyperband": any(trial.epochs is not None for trial in tuning.trials),
    }


def _status(report: RunReport) -> tuple[str, str]:
    """(css class, headline) of the run's outcome."""
    unfinished = [name for name, state in report.component_states.items() if state in ("failed", "running")]
    if unfinished:
        return "bad", f"Run did not finish: {', '.join(unfinished)} {report.component_states[unfinished[0]]}"
    if report.pushed_to:
        return "good", f"Blessed and served as version {os.path.basename(report.pushed_to)}"
    if report.not_pushed_reason:
        return "warn", "Blessed but held back"
    if report.blessed is False:
        return "bad", "Not blessed: nothing pushed"
    return "warn", "No model pushed"


def _backbone(report: RunReport) -> str:
    if report.training is None:
        return ""
    settings = report.training.settings
    if settings.saved_model_backbone:
        return f"{settings.backbone} (pixels {settings.backbone_input_range})"
    alpha = f" (alpha {settings.backbone_alpha})" if BACKBONES[settings.backbone].has_alpha else ""
    return settings.backbone + alpha


def _model_name(report: RunReport, config_dict: dict[str, Any] | None) -> str:
    if config_dict and config_dict.get("model_name"):
        return str(config_dict["model_name"])
    return os.path.basename(os.path.dirname(report.pushed_to)) if report.pushed_to else ""


def _date(report: RunReport) -> str:
    if report.started_at is None:
        return ""
    moment = datetime.datetime.fromtimestamp(report.started_at, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_confusion_matrix(report: RunReport) -> tuple[list[str], list[list[int]]]:
    """Class names and the Evaluator's test confusion matrix (rows true, columns predicted), padded to every class.

    Returns ``([], [])`` when the Evaluator computed no matrix.
    """
    matrix = report.gate.confusion_matrix if report.gate else []
    if not matrix:
        return [], []
    names = list(report.training.class_names) if report.training else []
    size = max(len(names), len(matrix))
    names += [f"class {index}" for index in range(len(names), size)]
    rows = [list(row) + [0] * (size - len(row)) for row in matrix]
    rows += [[0] * size for _ in range(size - len(rows))]
    return names, rows


def _context(report: RunReport, config_dict: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the template shows that is not a plain field of the report."""
    status_class, status = _status(report)
    gate = report.gate
    interval = None
    if gate is not None and gate.candidate_accuracy is not None and gate.test_examples:
        interval = accuracy_interval(gate.candidate_accuracy, gate.test_examples)
    training_dir = report.training_dir
    longest_step = max((step.seconds for step in report.steps), default=0.0) or 1.0
    return {
        "report": report,
        "status": status,
        "status_class": status_class,
        "date": _date(report),
        "backbone": _backbone(report),
        "model_name": _model_name(report, config_dict),
        "pushed_version": os.path.basename(report.pushed_to) if report.pushed_to else "",
        "intended_use": _INTENDED_USE,
        "split_names": splits.SPLIT_NAMES,
        "interval": interval,
        "learning_curves": _data_uri(training_dir and os.path.join(training_dir, reports.LEARNING_CURVES)),
        "confusion_matrix": _data_uri(training_dir and os.path.join(training_dir, reports.CONFUSION_MATRIX)),
        "considerations": considerations(report),
        "certainty": gate_certainty(report),
        "config_json": json.dumps(config_dict, indent=2, sort_keys=False) if config_dict else "",
        "settings_json": report.training.settings.model_dump_json(indent=2) if report.training else "",
        "longest_step": longest_step,
        "test_matrix": test_confusion_matrix(report),
        "test_predictions": _test_predictions(report),
        "tuning": _tuning(report),
    }


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = lambda value, digits=3: "n/a" if value is None else f"{value:.{digits}f}"
    return environment


def render(report: RunReport, config_dict: dict[str, Any] | None) -> str:
    """The model card of ``report`` as one HTML page.

    Args:
      report: A run read back from MLMD; sections whose outputs are missing (a failed
        run, no gate, no push) say so.
      config_dict: The effective pipeline config (``PipelineConfig.to_dict()``), or
        None when unknown (the Trainer's own settings are shown then).
    """
    return _environment().get_template(TEMPLATE).render(**_context(report, config_dict))


def write_report(report: RunReport, config_dict: dict[str, Any] | None, path: str) -> str:
    """Writes the model card to ``path`` and, if given, the config next to it; returns ``path``."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(render(report, config_dict))
    if config_dict is not None:
        with tf.io.gfile.GFile(config_path(path), "w") as handle:
            json.dump(config_dict, handle, indent=2)
    return path


def write_run_report(report: RunReport, pipeline_root: str, config_dict: dict[str, Any] | None) -> str:
    """Writes the model card of a run into ``<pipeline_root>/reports/``; returns its path.

    Call it after each run with the run's report and ``config.to_dict()``.
    """
    return write_report(report, config_dict, report_path(pipeline_root, report.run_id))


def rewrite_report(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str | None = None) -> str:
    """(Re)writes the model card of a run from MLMD; returns its path.

    The config saved with an earlier report of the run is kept and shown again.

    Args:
      metadata_path: The SQLite MLMD file.
      pipeline_name: The pipeline's name.
      pipeline_root: Where ``reports/`` goes.
      run_id: A run id (a ``pipeline_run`` context name in MLMD); None: the latest run.

    Raises:
      LookupError: If there is no such database or run.
    """
    report = read_run_report(metadata_path, pipeline_name, run_id)
    path = report_path(pipeline_root, report.run_id)
    return write_report(report, read_saved_config(path), path)
