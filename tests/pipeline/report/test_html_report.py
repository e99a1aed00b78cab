"""The HTML model card: its numbers, its robustness, and how a real browser renders it."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner
from PIL import Image
from tfx.utils import proto_utils

from components.evaluation import eval_config as eval_config_lib
from components.evaluation import inference_result
from components.evaluation.eval_config import GateBounds
from components.evaluation.inference_result import ImagePrediction
from components.evaluation.metrics import GateResult
from components.ingest.summary import IngestSummary
from components.modules import reports
from components.modules.settings import StageHistory, TrainerSettings, TrainingSummary
from components.modules.tuning_settings import TunedSettings
from components.tuner.trials import TrialRecord, TuningResult
from pipeline.cli import main as cli
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.local import runner as local_runner
from pipeline.report import html_report
from pipeline.report.run_report import RunReport, StepTiming
from tests.helpers import encode, noise_folder, solid, tiny_run_config, write

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class _Elements(html.parser.HTMLParser):
    """Every element with an ``id``: its attributes and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.external: list[str] = []
        self.matrix_cells: list[dict[str, str]] = []  # test confusion matrix cells, with their row's class
        self.thumbs: list[dict[str, str]] = []  # test-image thumbnails (img, or a span when undecodable)
        self._row_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "tr":
            self._row_class = values.get("data-class", "")
        if tag == "td" and "data-predicted" in values:
            self.matrix_cells.append({**values, "row": self._row_class})
        if "data-thumb" in values:
            self.thumbs.append({**values, "tag": tag, "row": self._row_class})
        for name in ("src", "href"):
            if name in values and not values[name].startswith(("data:", "#")):
                self.external.append(values[name])
        if tag in ("script", "link"):
            self.external.append(tag)
        if tag in ("img", "br", "meta", "input"):
            if "id" in values:
                self.by_id[values["id"]] = {**values, "text": ""}
            return
        element_id = values.get("id")
        if element_id:
            self.by_id[element_id] = {**values, "text": ""}
        self._open.append((tag, element_id))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.by_id[element_id]["text"] += data


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


SUMMARY = TrainingSummary(
    class_names=["cat", "dog", "rare"],
    settings=TrainerSettings(weights="imagenet", image_size=96),
    split_sizes={"train": 40, "validation": 10},
    stage1=StageHistory(loss=[0.9, 0.7], accuracy=[0.5, 0.6], val_loss=[0.8, 0.75], val_accuracy=[0.55, 0.6]),
    stage2=StageHistory(loss=[0.5], accuracy=[0.8], val_loss=[0.6], val_accuracy=[0.7]),
    head_only_validation_accuracy=0.6,
    fine_tuned_validation_accuracy=0.7,
    kept_stage=2,
    validation_confusion_matrix=[[4, 1, 0], [0, 5, 0], [0, 0, 0]],
)
INGEST = IngestSummary(
    files_seen=72,
    ingested=70,
    rejected=2,
    rejected_by_reason={"truncated": 2},
    class_counts={"cat": 40, "dog": 28, "rare": 2},
    split_counts={"test": 12, "train": 48, "validation": 10},
    class_split_counts={
        "cat": {"train": 28, "validation": 6, "test": 6},
        "dog": {"train": 20, "validation": 4, "test": 4},
        "rare": {"train": 0, "validation": 0, "test": 2},
    },
    notes=["class 'rare' has no train images (2 ingested)"],
)
GATE = GateResult(
    blessed=False,
    candidate_accuracy=0.75,
    baseline_accuracy=0.8,
    test_examples=12,
    per_class_accuracy={"cat": 1.0, "dog": 0.5, "rare": 0.0},
    per_class_examples={"cat": 6, "dog": 4, "rare": 2},
    reasons=["test accuracy 0.750 is 0.050 below the baseline's 0.800 (max_accuracy_drop 0.000)"],
    confusion_matrix=[[6, 0], [2, 2]],  # TFMA leaves out the last class when nothing is true or predicted there
)


def _full_report(training_dir: str) -> RunReport:
    reports.write_reports(SUMMARY, training_dir)
    return RunReport(
        run_id="2026-11-24T20:32:53.366604",
        pipeline_name="image-transfer",
        started_at=1795552373.378,
        component_states={"FileBasedExampleGen": "ran", "Trainer": "cached", "Evaluator": "ran", "Pusher": "ran"},
        ingest=INGEST,
        ingest_report_dir="/x/ingest_report",
        training=SUMMARY,
        training_dir=training_dir,
        gate=GATE,
        comparison=GateResult(blessed=False, candidate_accuracy=0.75, baseline_accuracy=0.9, test_examples=12),
        gate_bounds=GateBounds(min_accuracy=0.5, max_accuracy_drop=0.0),
        steps=[
            StepTiming("FileBasedExampleGen", "ran", 100.0, 2.5),
            StepTiming("Trainer", "cached", 102.5, 0.02),
            StepTiming("Evaluator", "ran", 102.6, 7.25),
        ],
    )


def test_model_card_shows_the_runs_numbers_with_images_inline(tmp_path: object) -> None:
    report = _full_report(os.path.join(str(tmp_path), "model_run"))
    page = _elements(html_report.render(report, {"model_name": "pets", "min_accuracy": 0.5}))
    ids = page.by_id
    assert page.external == []
    assert ids["learning-curves"]["src"].startswith("data:image/png;base64,")
    assert ids["validation-confusion-matrix"]["src"].startswith("data:image/png;base64,")
    assert (ids["files-seen"]["data-value"], ids["ingested"]["data-value"], ids["rejected"]["data-value"]) == (
        "72",
        "70",
        "2",
    )
    assert "truncated 2" in ids["rejected"]["text"]
    assert [ids[f"split-{name}"]["data-value"] for name in ("train", "validation", "test")] == ["48", "10", "12"]
    assert ids["test-accuracy"]["data-value"] == "0.75" and ids["test-examples"]["data-value"] == "12"
    assert ids["blessed"]["data-value"] == "false" and ids["min-accuracy"]["data-value"] == "0.5"
    assert ids["negative-transfer"]["data-value"] == "true"
    assert ids["pushed-version"]["data-value"] == ""
    assert ids["kept-stage"]["data-value"] == "2"
    assert "0.050 below the baseline" in ids["gate-reasons"]["text"]
    assert json.loads(ids["config-json"]["text"]) == {"model_name": "pets", "min_accuracy": 0.5}
    assert ids["total-seconds"]["data-value"] == str(2.5 + 0.02 + 7.25)
    assert "rare" in ids["considerations-list"]["text"]
    cells = {(cell["row"], cell["data-predicted"]): cell["data-value"] for cell in page.matrix_cells}
    assert cells[("dog", "cat")] == "2" and cells[("dog", "dog")] == "2" and cells[("cat", "cat")] == "6"
    assert cells[("rare", "rare")] == "0" and len(cells) == 9


def _predicted(
    path: str, predicted: str, probability: float, label_probability: float, image: bytes
) -> ImagePrediction:
    return ImagePrediction(
        path=path,
        label=path.split("/")[0],
        predicted=predicted,
        probability=probability,
        label_probability=label_probability,
        image=image,
    )


def test_model_card_shows_the_worst_mistakes_as_thumbnails_and_examples_per_class() -> None:
    large = encode(solid((200, 30, 30), size=300), "PNG")
    dogs = [_predicted(f"dog/{i}.png", "cat", 0.5 + i / 100, 0.4 - i / 100, large) for i in range(5)]
    cat = _predicted("cat/0.jpg", "cat", 0.9, 0.9, encode(solid((1, 2, 3)), "JPEG"))
    broken = _predicted("rare/x.png", "cat", 0.99, 0.0, b"not an image")
    summary = inference_result.summarize([*dogs, cat, broken], max_mistakes=3)
    page = _elements(html_report.render(RunReport(run_id="r", test_predictions=summary), None))
    ids = page.by_id
    assert page.external == []
    assert (ids["misclassified"]["data-value"], ids["predicted-images"]["data-value"]) == ("6", "7")
    mistakes = [thumb for thumb in page.thumbs if thumb["data-thumb"] == "mistake"]
    # Worst first: the lowest probability of the true class (0.0, 0.36, 0.37); 3 more not shown.
    assert [thumb["data-path"] for thumb in mistakes] == ["rare/x.png", "dog/4.png", "dog/3.png"]
    assert ids["mistakes-more"]["data-value"] == "3" and "3 more not shown" in ids["mistakes-more"]["text"]
    assert mistakes[0]["tag"] == "span"  # an image that does not decode is named, not dropped
    assert (mistakes[1]["data-label"], mistakes[1]["data-predicted"], mistakes[1]["data-probability"]) == (
        "dog",
        "cat",
        "0.54",
    )
    thumbnail = mistakes[1]["src"]
    assert thumbnail.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1]))) as image:
        assert image.format == "JPEG" and max(image.size) == html_report.THUMBNAIL_SIDE
    examples = {}
    for thumb in page.thumbs:
        if thumb["data-thumb"] == "example":
            examples.setdefault(thumb["row"], []).append(thumb["data-path"])
    assert examples == {"cat": ["cat/0.jpg"], "dog": [f"dog/{i}.png" for i in range(4)], "rare": ["rare/x.png"]}
    assert "no-mistakes" not in ids


def test_model_card_says_when_nothing_was_wrong_or_nothing_was_predicted() -> None:
    right = [_predicted("cat/0.jpg", "cat", 0.9, 0.9, encode(solid((1, 2, 3)), "JPEG"))]
    ids = _elements(
        html_report.render(RunReport(run_id="r", test_predictions=inference_result.summarize(right)), None)
    ).by_id
    assert ids["misclassified"]["data-value"] == "0" and "no-mistakes" in ids and "mistakes-more" not in ids
    page = html_report.render(RunReport(run_id="r", component_states={"BulkInferrer": "failed"}), None)
    assert "No test predictions in this run (BulkInferrer: failed)" in page


def test_model_card_names_a_saved_model_backbone_and_what_stage2_trained(tmp_path: object) -> None:
    backbone = "hub:https://www.kaggle.com/models/google/mobilenet-v3/TensorFlow2/large-100-224-feature-vector/1"
    settings = TrainerSettings(backbone=backbone, backbone_input_range="0..1", image_size=224)
    report = _full_report(os.path.join(str(tmp_path), "model_run"))
    report.training = SUMMARY.model_copy(update={"settings": settings})
    ids = _elements(html_report.render(report, None)).by_id
    assert ids["backbone"]["text"] == f"{backbone} (pixels 0..1)"
    assert ids["weights"]["text"] == "as published in the SavedModel"
    assert "the whole SavedModel, BatchNorm statistics fixed" in ids["fine-tuned-accuracy"]["text"]


TUNING = TuningResult(
    algorithm="hyperband",
    trial_budget=3,
    max_minutes=30.0,
    epochs_per_trial=4,
    seconds=95.0,
    stopped_by="trials",
    trials=[
        TrialRecord(trial_id="0", status="COMPLETED", score=0.6, hyperparameters={"dropout": 0.1}, epochs=2),
        TrialRecord(
            trial_id="1",
            status="COMPLETED",
            score=0.8,
            hyperparameters={"dropout": 0.3, "stage1_learning_rate": 0.00123},
            epochs=4,
            head_only_validation_accuracy=0.7,
            fine_tuned_validation_accuracy=0.8,
            kept_stage=2,
            seconds=40.5,
        ),
        TrialRecord(trial_id="2", status="FAILED", hyperparameters={"dropout": 0.2}, error="ValueError: out of memory"),
    ],
)


def test_model_card_lists_the_tuning_trials_and_what_the_trainer_took(tmp_path: object) -> None:
    report = _full_report(os.path.join(str(tmp_path), "model_run"))
    report.tuning = TUNING
    report.tuned = TunedSettings(hyperparameters={"dropout": 0.3}, settings={"dropout": 0.3})
    page = html_report.render(report, None)
    ids = _elements(page).by_id
    assert (ids["tuning-trials"]["data-value"], ids["tuning-completed"]["data-value"]) == ("3", "2")
    assert "stopped by the trial budget (3)" in page
    rows = re.findall(r'<tr data-trial="(\d+)" data-score="([^"]*)"( class="total" data-best="true")?>', page)
    assert rows == [("0", "0.6", ""), ("1", "0.8", ' class="total" data-best="true"'), ("2", "", "")]
    assert "<th>dropout</th><th>stage1_learning_rate</th><th>epochs</th>" in page  # every searched name, in order
    assert "<td>0.00123</td>" in page and "failed: ValueError: out of memory" in page
    assert "tuned-settings" in ids and "values: <code>dropout</code> 0.3 (the rest as configured)" in page


def test_without_tuning_the_card_has_no_tuning_section_and_a_failed_tuner_says_so() -> None:
    assert 'id="tuning"' not in html_report.render(RunReport(run_id="r"), None)
    failed = html_report.render(RunReport(run_id="r", component_states={"Tuner": "failed"}), None)
    assert 'id="tuning"' in failed and "No tuning trials in this run (Tuner: failed)" in failed


def test_a_failed_run_renders_what_it_has() -> None:
    report = RunReport(
        run_id="run-1",
        component_states={"FileBasedExampleGen": "ran", "Transform": "ran", "Trainer": "failed"},
        ingest=INGEST,
        steps=[StepTiming("Trainer", "failed", 10.0, 3.0)],
    )
    page = _elements(html_report.render(report, None))
    assert page.by_id["status"]["text"] == "Run did not finish: Trainer failed"
    assert page.by_id["ingested"]["data-value"] == "70"
    assert "test-accuracy" not in page.by_id and "learning-curves" not in page.by_id
    assert page.by_id["pushed-version"]["text"] == "none"


def test_an_empty_report_renders() -> None:
    page = html_report.render(RunReport(run_id="run-2"), None)
    assert "No ingest summary in this run (FileBasedExampleGen: did not run)" in page
    assert "No executions recorded" in page


def test_considerations_name_the_limits_of_the_numbers() -> None:
    notes = html_report.considerations(RunReport(run_id="r", ingest=INGEST, gate=GATE))
    assert "Class 'rare' has no training images: the model has an output for it but never learned it." in notes
    assert any(note.startswith("Class imbalance: 'cat' has 40 images, 'rare' 2 (20.0:1).") for note in notes)
    assert any("2 files were rejected at ingest (truncated 2)" in note for note in notes)
    assert any("12 held-out images: its 95% interval is 0.468 to 0.911" in note for note in notes)
    assert any("fewer than 10 images for: cat (6), dog (4), rare (2)" in note for note in notes)
    balanced = INGEST.model_copy(
        update={"class_counts": {"cat": 10, "dog": 9}, "class_split_counts": {}, "rejected": 0}
    )
    assert html_report.considerations(RunReport(run_id="r", ingest=balanced)) == []


def test_accuracy_interval_is_the_wilson_interval() -> None:
    low, high = html_report.accuracy_interval(0.5, 100)
    assert (round(low, 3), round(high, 3)) == (0.404, 0.596)
    assert html_report.accuracy_interval(1.0, 10)[1] == 1.0


def test_report_files_are_named_by_run_and_keep_the_config(tmp_path: object) -> None:
    path = html_report.report_path(str(tmp_path), "2026-11-24T20:32:53.366604")
    assert path == os.path.join(str(tmp_path), "reports", "2026-11-24T20-32-53.366604.html")
    start = time.monotonic()
    written = html_report.write_run_report(
        _full_report(os.path.join(str(tmp_path), "run")), str(tmp_path), {"model_name": "pets"}
    )
    assert time.monotonic() - start < 2.0
    assert written == path and os.path.isfile(path)
    assert html_report.read_saved_config(path) == {"model_name": "pets"}


def test_format_ends_with_the_step_table() -> None:
    report = RunReport(
        run_id="r", steps=[StepTiming("Transform", "ran", 0.0, 10.55), StepTiming("Trainer", "cached", 11.0, 0.04)]
    )
    assert report.format().splitlines()[-4:] == [
        "  step       state    seconds",
        "  Transform  ran         10.6",
        "  Trainer    cached       0.0",
        "  total                  10.6  (first start to last end 11.0 s)",
    ]


@pytest.mark.parametrize(("drop", "expected"), [(0.0, 0.0), (0.05, 0.05)])
def test_gate_bounds_read_back_what_the_pipeline_configures(drop: float, expected: float) -> None:
    # TFX stores exec properties as proto_utils JSON (snake_case field names).
    stored = proto_utils.proto_to_json(eval_config_lib.eval_config(eval_config_lib.gate_threshold(0.6, drop)))
    assert GateBounds.from_json(stored) == GateBounds(min_accuracy=0.6, max_accuracy_drop=expected)


# A real run, a real browser.


_config = tiny_run_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A first run and an unchanged (cached) rerun, timed by the wall clock, each with its report."""
    root = str(tmp_path_factory.mktemp("report"))
    noise_folder(os.path.join(root, "data"), ("cats", "dogs"), per_class=12, size=40, seed=1)
    noise_folder(os.path.join(root, "data"), ("rare",), per_class=2, size=40, seed=2)
    write(os.path.join(root, "data", "dogs", "broken.jpg"), encode(solid((1, 2, 3)), "JPEG")[:40])
    config = _config(root)
    results: dict = {"root": root, "config": config}
    for name in ("first", "second"):
        start = time.monotonic()
        report = local_runner.run(config)
        results[f"{name}_wall"] = time.monotonic() - start
        results[name] = report
        results[f"{name}_path"] = html_report.write_run_report(report, config.pipeline_root, config.to_dict())
    return results


def _chromium(*args: str, user_data_dir: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install -y chromium).")
    result = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.mark.slow
def test_step_times_add_up_to_the_wall_clock(runs: dict) -> None:
    first, second = runs["first"], runs["second"]
    assert [step.name for step in first.steps][:2] == ["FileBasedExampleGen", "ImportSchemaGen"]
    assert {step.state for step in first.steps} == {"ran"}
    assert {step.name: step.state for step in first.steps} == first.component_states
    # MLMD's step times cover the run but for building the pipeline (wheels) and the first registration.
    assert 0.8 * runs["first_wall"] < first.total_seconds <= runs["first_wall"]
    trainer = next(step for step in first.steps if step.name == "Trainer")
    assert trainer.seconds > 1.0
    cached = [step for step in second.steps if step.state == "cached"]
    assert {step.name for step in cached} >= {"FileBasedExampleGen", "Transform", "Trainer"}
    assert all(step.seconds < 1.0 for step in cached)
    assert second.total_seconds <= runs["second_wall"]
    assert "total" in first.format().splitlines()[-1]


@pytest.mark.slow
def test_browser_renders_the_report_with_the_runs_numbers(runs: dict, tmp_path: object) -> None:
    report, path = runs["first"], runs["first_path"]
    profile = os.path.join(str(tmp_path), "profile")
    page = _elements(_chromium("--dump-dom", f"file://{os.path.abspath(path)}", user_data_dir=profile))
    dom = page.by_id
    ingest = report.ingest
    assert int(dom["ingested"]["data-value"]) == ingest.ingested == 26
    assert int(dom["rejected"]["data-value"]) == ingest.rejected == 1
    for name, count in ingest.split_counts.items():
        assert int(dom[f"split-{name}"]["data-value"]) == count
    assert float(dom["test-accuracy"]["data-value"]) == report.gate.candidate_accuracy
    assert int(dom["test-examples"]["data-value"]) == report.gate.test_examples == ingest.split_counts["test"]
    assert dom["blessed"]["data-value"] == "true" and report.blessed is True
    assert dom["pushed-version"]["data-value"] == os.path.basename(report.pushed_to)
    assert dom["run-id"]["data-value"] == report.run_id
    assert float(dom["total-seconds"]["data-value"]) == pytest.approx(report.total_seconds)
    assert json.loads(dom["config-json"]["text"]) == runs["config"].to_dict()
    # The test confusion matrix: TFMA's counts, every test image once, its diagonal the per-class accuracy.
    cells = {(cell["row"], cell["data-predicted"]): int(cell["data-value"]) for cell in page.matrix_cells}
    names, matrix = html_report.test_confusion_matrix(report)
    assert sorted(names) == ["cats", "dogs", "rare"]
    assert cells == {
        (true, predicted): matrix[i][j] for i, true in enumerate(names) for j, predicted in enumerate(names)
    }
    assert sum(cells.values()) == report.gate.test_examples
    for name, accuracy in report.gate.per_class_accuracy.items():
        row = sum(count for (true, _), count in cells.items() if true == name)
        assert cells[(name, name)] / row == pytest.approx(accuracy)
    screenshot = os.path.join(str(tmp_path), "report.png")
    _chromium(f"--screenshot={screenshot}", "--window-size=1200,3000", f"file://{path}", user_data_dir=profile)
    with Image.open(screenshot) as image:
        assert image.size == (1200, 3000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # text, tables and the inlined plots, not a blank page


def _rendered(path: str, folder: str) -> _Elements:
    """The card as Chromium renders it: a copy whose one added script records each image's natural width on load."""
    with open(path, encoding="utf-8") as handle:
        page = handle.read()
    probe = (
        '<script>addEventListener("load", () => { for (const image of document.images) '
        "{ image.dataset.naturalWidth = image.naturalWidth; } });</script>"
    )
    copy = write(os.path.join(folder, "probed.html"), page.replace("</body>", probe + "</body>").encode("utf-8"))
    profile = os.path.join(folder, "profile")
    return _elements(_chromium("--virtual-time-budget=10000", "--dump-dom", f"file://{copy}", user_data_dir=profile))


@pytest.mark.slow
def test_browser_renders_a_thumbnail_for_each_misclassified_test_image(runs: dict, tmp_path: object) -> None:
    report, path = runs["first"], runs["first_path"]
    with open(path, encoding="utf-8") as handle:
        assert _elements(handle.read()).external == []  # the card itself: no scripts, every image inline
    page = _rendered(path, str(tmp_path))
    # The Evaluator's (TFMA) misclassified count: the test confusion matrix off its diagonal.
    _, matrix = html_report.test_confusion_matrix(report)
    off_diagonal = sum(count for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j)
    mistakes = [thumb for thumb in page.thumbs if thumb["data-thumb"] == "mistake"]
    more = int(page.by_id["mistakes-more"]["data-value"]) if "mistakes-more" in page.by_id else 0
    predictions = report.test_predictions
    assert off_diagonal > 0  # noise images and a class with one training image: some test image is wrong
    assert len(mistakes) + more == off_diagonal == predictions.misclassified
    assert int(page.by_id["misclassified"]["data-value"]) == off_diagonal
    assert predictions.total == report.gate.test_examples
    assert all(thumb["data-label"] != thumb["data-predicted"] for thumb in mistakes)
    probabilities = [float(thumb["data-probability"]) for thumb in mistakes]
    assert all(0.0 < probability <= 1.0 for probability in probabilities)
    examples = [thumb for thumb in page.thumbs if thumb["data-thumb"] == "example"]
    assert {thumb["row"] for thumb in examples} == {
        label for label, counts in report.ingest.class_split_counts.items() if counts.get("test")
    }
    # Every thumbnail decoded and laid out by the browser.
    assert [thumb["tag"] for thumb in page.thumbs] == ["img"] * len(page.thumbs)
    assert all(int(thumb["data-natural-width"]) > 0 for thumb in page.thumbs), page.thumbs


@pytest.mark.slow
def test_report_command_rewrites_a_chosen_run(runs: dict) -> None:
    config: PipelineConfig = runs["config"]
    first_path = runs["first_path"]
    os.remove(first_path)
    args = ["report", "--pipeline-root", config.pipeline_root, "--pipeline-name", config.pipeline_name]
    result = CliRunner().invoke(cli.main, [*args, "--run", runs["first"].run_id])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == first_path
    page = _elements(open(first_path, encoding="utf-8").read()).by_id
    assert page["run-id"]["data-value"] == runs["first"].run_id
    # The config saved with the first report is shown again.
    assert json.loads(page["config-json"]["text"]) == config.to_dict()
    latest = CliRunner().invoke(cli.main, args)
    assert latest.stdout.strip() == runs["second_path"]
    missing = CliRunner().invoke(cli.main, [*args, "--run", "no-such-run"])
    assert missing.exit_code == 1 and "has no run 'no-such-run'" in missing.output
    assert runs["first"].run_id in missing.output
