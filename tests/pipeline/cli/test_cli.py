"""The image-pipeline command: flags, fail-fast errors, output."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import kubeflow_commands, options
from pipeline.cli import main as cli
from pipeline.config import pipeline_config as config_lib
from tests.helpers import encode, noise_folder, solid, tiny_run_config, write

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> object:
    return CliRunner().invoke(cli.main, list(args))


def test_every_config_field_is_a_flag_with_its_description() -> None:
    result = _run("run", "--help")
    assert result.exit_code == 0
    for key, field in config_lib.flag_fields():
        flag = f"--{options.flag_name(key, field)}"
        assert flag in result.output, key
        first_words = " ".join(field.description.split()[:3])
        assert first_words in " ".join(result.output.split()), key
    # Enumerations list their values; sections group the flags.
    assert "--backbone-input-range [0..1|0..255|-1..1]" in result.output
    assert "--augmentation-flip [none|horizontal|vertical|both]" in result.output
    assert "--beam-arg TEXT" in result.output and "--beam-args" not in result.output  # its own flag name
    for section in ("Data and splits:", "Gate and serving:", "Training (trainer:", "Augmentation (trainer."):
        assert section in result.output


def test_flag_sections_come_from_the_config_models() -> None:
    assert options.section_of("data_root") == "Data and splits"
    assert options.section_of("beam_args") == "Pipeline and runtime"
    assert options.section_of("trainer.seed") == "Training (trainer: in the config file)"
    augmentation = "Augmentation (trainer.augmentation: in the config file)"
    assert options.section_of("trainer.augmentation.flip") == augmentation
    sections = {options.section_of(key) for key, _ in config_lib.flag_fields()}
    assert options.OTHER_SECTION not in sections  # every field names its section (json_schema_extra)


def test_config_show_prints_the_effective_config(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "config.yaml")
    with open(path, "w") as handle:
        handle.write("data_root: /images\ntrainer:\n  image_size: 128\n  stage1_epochs: 3\n")
    result = _run("config", "show", "--config", path, "--image-size", "96", "--augmentation-flip", "vertical")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["data_root"] == "/images" and shown["test_percent"] == 15
    assert (shown["trainer"]["image_size"], shown["trainer"]["stage1_epochs"]) == (96, 3)
    assert shown["trainer"]["augmentation"]["flip"] == "vertical"
    result = _run("config", "show", "--data-root", "/d", "--no-augmentation")
    assert yaml.safe_load(result.output)["trainer"]["augmentation"]["zoom"] == 0.0
    result = _run("config", "show", "--data-root", "/d", "--backbone", "Xception", "--image-size", "64")
    assert result.exit_code == 1 and "Xception needs image_size >= 71" in result.output


def test_tuning_flags_turn_tuning_on_and_shape_its_search_space() -> None:
    shown = yaml.safe_load(_run("config", "show", "--data-root", "/d").output)
    assert shown["tuning"]["trials"] == 0  # off without a tuning: section or flag
    result = _run(
        "config", "show", "--data-root", "/d", "--tuning-algorithm", "random", "--tune-dropout", "0.1..0.3",
        "--tune-augmentation-strength", "none", "--tune-stage1-lr", "1e-4..1e-3 log",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tuning = yaml.safe_load(result.output)["tuning"]
    assert (tuning["trials"], tuning["algorithm"]) == (8, "random")
    assert tuning["search_space"]["dropout"] == "0.1..0.3" and tuning["search_space"]["augmentation_strength"] is None
    assert tuning["search_space"]["stage1_learning_rate"] == "0.0001..0.001 log"
    result = _run("config", "show", "--data-root", "/d", "--tuning-algorithm", "grid")
    assert result.exit_code == 2 and "'grid' is not one of 'random', 'bayesian', 'hyperband'" in result.output
    result = _run("config", "show", "--data-root", "/d", "--tune-dropout", "0.4..0.2")
    assert result.exit_code == 1 and "tuning.search_space.dropout: min must be below max" in result.output


def test_run_fails_fast_on_a_data_root_without_images(tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    os.makedirs(os.path.join(data, "empty_class"))
    write(os.path.join(data, "stray.jpg"), encode(solid((1, 2, 3)), "JPEG"))
    pipeline_root = os.path.join(str(tmp_path), "tfx_root")
    result = _run("run", "--data-root", data, "--weights", "none", "--pipeline-root", pipeline_root)
    assert result.exit_code == 1
    assert "No images found under" in result.output
    assert not os.path.exists(pipeline_root)


def test_run_rejects_bad_values_and_missing_weights(tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    write(os.path.join(data, "a", "1.png"), encode(solid((1, 2, 3)), "PNG"))
    write(os.path.join(data, "b", "1.png"), encode(solid((3, 2, 1)), "PNG"))
    result = _run("run", "--data-root", data, "--min-accuracy", "2")
    assert result.exit_code == 1 and "min_accuracy: Input should be less than or equal to 1" in result.output
    result = _run("run", "--data-root", data, "--weights", "/missing/backbone.weights.h5")
    assert result.exit_code == 1 and "Weights file not found: /missing/backbone.weights.h5" in result.output
    assert "ImageNet" not in result.output and "keras-applications" not in result.output  # not the offline hint
    result = _run("run", "--data-root", data, "--backbone", "AlexNet")
    assert result.exit_code == 1 and "Unknown backbone. Expected one of MobileNetV2" in result.output
    result = _run("run", "--data-root", data, "--backbone", f"savedmodel:{tmp_path}/missing", "--image-size", "32")
    assert (
        result.exit_code == 1 and f"savedmodel:{tmp_path}/missing: {tmp_path}/missing is not a folder" in result.output
    )


def test_preflight_catches_wrong_weights_and_unwritable_folders_before_any_work(tmp_path: object) -> None:
    from components.modules import model as model_lib

    data = os.path.join(str(tmp_path), "data")
    for label in ("a", "b"):
        write(os.path.join(data, label, "1.png"), encode(solid((1, 2, 3)), "PNG"))
    weights = os.path.join(str(tmp_path), "wide.weights.h5")
    model_lib.build_backbone("MobileNetV2", 32, "none", alpha=0.5).save_weights(weights)
    pipeline_root = os.path.join(str(tmp_path), "tfx_root")
    common = ["run", "--data-root", data, "--pipeline-root", pipeline_root, "--image-size", "32"]
    result = _run(*common, "--weights", weights, "--backbone-alpha", "0.35")
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]  # the error is one line (logged progress comes before it)
    assert error.startswith("Error: Weights file") and "the file has backbone_alpha 0.5" in error
    assert "the config asks for 0.35. Set --backbone-alpha 0.5." in error
    blocker = write(os.path.join(str(tmp_path), "a_file"), b"x")
    result = _run(*common, "--weights", "none", "--serving-dir", os.path.join(blocker, "serving"))
    assert result.exit_code == 1 and f"Cannot create {os.path.join(blocker, 'serving')!r}" in result.output
    assert not os.path.exists(pipeline_root)


def test_run_refuses_a_single_class(tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    write(os.path.join(data, "only", "1.png"), encode(solid((1, 2, 3)), "PNG"))
    result = _run("run", "--data-root", data, "--weights", "none")
    assert result.exit_code == 1 and "at least two class folders" in result.output


def test_run_reads_a_config_file(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "config.yaml")
    with open(path, "w") as handle:
        handle.write(f"data_root: {tmp_path}/nothing_here\n")
    result = _run("run", "--config", path)
    assert result.exit_code == 1 and "nothing_here" in result.output


def test_predict_reports_a_missing_model(tmp_path: object) -> None:
    image = write(os.path.join(str(tmp_path), "q.png"), encode(solid((1, 2, 3)), "PNG"))
    result = _run("predict", image, "--model-dir", str(tmp_path))
    assert result.exit_code == 1 and "No SavedModel in" in result.output


def test_a_failing_run_prints_one_line_and_logs_the_traceback(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    from pipeline.local import runner as local_runner

    data = os.path.join(str(tmp_path), "data")
    for label in ("a", "b"):
        write(os.path.join(data, label, "1.png"), encode(solid((1, 2, 3)), "PNG"))
    pipeline_root = os.path.join(str(tmp_path), "tfx_root")

    def fail(*_: object, **__: object) -> None:
        raise tf.errors.InvalidArgumentError(
            None, None, "Graph execution error:\n\nDetected at node x\n" + "dump\n" * 500
        )

    monkeypatch.setattr(local_runner, "run", fail)
    result = _run("run", "--data-root", data, "--pipeline-root", pipeline_root, "--trainer-weights-hint", "x")
    assert result.exit_code == 2  # an unknown flag is a usage error
    result = _run("run", "--data-root", data, "--pipeline-root", pipeline_root, "--weights", "none")
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: The run failed: InvalidArgumentError: Graph execution error:. Full log: ")
    log_path = error.split("Full log: ")[1]
    with open(log_path) as handle:
        logged = handle.read()
    assert "Traceback" in logged and "Detected at node x" in logged and "Traceback" not in result.output


_LIBRARY_NOISE = re.compile(
    r"tensorflow|absl|apache_beam|Warning|W0000|I0000|setuptools|bdist_wheel|property_predicate|"
    r"Tables initialized|custom_executor_spec|oneDNN|cuda|Traceback",
    re.IGNORECASE,
)
_PROJECT_LINE = re.compile(r"^(\d\d:\d\d:\d\d |Full log: |Pipeline run |  )")


@pytest.mark.slow
def test_a_real_run_prints_a_short_quiet_console_and_logs_the_rest(tmp_path: object) -> None:
    root = str(tmp_path)
    noise_folder(os.path.join(root, "data"), ("cats", "dogs"), per_class=12, size=40, seed=1)
    config = tiny_run_config(root, trainer={"stage1_epochs": 3})
    path = os.path.join(root, "config.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(config.to_dict(), handle)
    command = [sys.executable, "-c", "from pipeline.cli.main import main; main()", "run", "--config", path]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, check=False)
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert result.returncode == 0, "\n".join(lines[-20:])
    assert [line for line in lines if _LIBRARY_NOISE.search(line)] == []
    assert [line for line in lines if not _PROJECT_LINE.match(line)] == []
    assert len(lines) <= 53, "\n".join(lines)  # 11 steps, 3 epochs, the summary and its 14-line step table
    assert any(line.startswith("  full log: ") for line in lines[-3:])
    assert lines[-1].startswith("  report: ") and lines[-1].endswith(".html")
    log_path = next(line for line in lines if line.startswith("Full log: ")).split(": ", 1)[1]
    with open(log_path, encoding="utf-8") as handle:
        log = handle.read()
    assert "bdist_wheel" in log  # the user-module wheel build's output
    assert "Creating temporary sdist" not in log  # in-process Beam workers need no TFX sdist
    assert all(f"Epoch {epoch}/3 (stage 1)" in log for epoch in (1, 2, 3))


def test_a_dry_run_that_pushes_nothing_says_why_with_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.evaluation import metrics as evaluation
    from kubeflow import local_harness

    def task(name: str, outputs: dict) -> local_harness.TaskResult:
        return local_harness.TaskResult(name, "ran", 1.0, outputs)

    result = local_harness.RunResult(
        "run",
        "/root/run",
        {
            "Evaluator": task(
                "Evaluator",
                {
                    "evaluation": [{"uri": "/root/run/Evaluator/x/evaluation", "metadata": {}}],
                    "blessing": [{"uri": "/b", "metadata": {"blessed": 0}}],
                },
            ),
            "Pusher": task("Pusher", {"pushed_model": [{"uri": "/p", "metadata": {"pushed": 0}}]}),
        },
    )
    gate = evaluation.GateResult(
        blessed=False,
        candidate_accuracy=0.612,
        test_examples=49,
        reasons=["test accuracy 0.612 is below min_accuracy 0.800"],
    )
    monkeypatch.setattr(evaluation, "read_gate", lambda uri, blessed: gate)
    assert kubeflow_commands.dry_run_outcome(result) == (
        "Not pushed: not blessed: test accuracy 0.612 is below min_accuracy 0.800 "
        "(test accuracy 0.612 on 49 images, 95% interval 0.472-0.735; served model none). "
        "Evaluation: /root/run/Evaluator/x/evaluation"
    )


def _cli_subprocess(*args: str, cwd: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The real `image-pipeline` entry point in a fresh interpreter, timed (the heavy imports are the cost)."""
    import time

    started = time.monotonic()
    command = [sys.executable, "-c", "from pipeline.cli.main import main; main()", *args]
    process = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)
    return process, time.monotonic() - started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--data-root", "/no/such/folder"], "Data root '/no/such/folder' does not exist"),
        (["run", "--data-root", "{data}", "--weights", "/missing.weights.h5"], "Weights file not found: /missing.weights.h5"),
        (["compile", "--image", "myimg:latest"], "image must be pinned by tag or digest"),
        (["report", "--run", "7", "--pipeline-root", "{data}/nope"], "No MLMD database at {data}/nope/metadata.sqlite"),
        (["run", "--data-root", "{data}/a"], "looks like a class folder: 2 images sit directly in it"),
    ],
)  # fmt: skip
def test_path_mistakes_are_one_line_before_tensorflow_is_imported(tmp_path: object, args: list, message: str) -> None:
    data = os.path.join(str(tmp_path), "data")
    for index in (1, 2):
        write(os.path.join(data, "a", f"{index}.png"), encode(solid((1, 2, 3)), "PNG"))
    write(os.path.join(data, "b", "1.png"), encode(solid((3, 2, 1)), "PNG"))
    args = [arg.replace("{data}", data) for arg in args]
    process, seconds = _cli_subprocess(*args, cwd=str(tmp_path))
    assert process.returncode == 1, process.stderr
    lines = process.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("Error: ")
    assert message.replace("{data}", data) in lines[-1]
    assert seconds < 8, f"{seconds:.1f} s: the check ran after the TensorFlow import"


def test_report_without_a_pipeline_root_names_the_flag(tmp_path: object) -> None:
    process, _ = _cli_subprocess("report", "--run", "7", cwd=str(tmp_path))
    assert process.returncode == 1
    assert "No MLMD database at tfx_root/metadata.sqlite" in process.stderr
    assert "pass --pipeline-root with the pipeline_root the run used" in process.stderr
