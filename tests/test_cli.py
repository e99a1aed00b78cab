"""The image-pipeline command: flags, fail-fast errors, output."""

from __future__ import annotations

import os

from click.testing import CliRunner

from pipeline import cli
from tests.helpers import encode, solid, write


def _run(*args: str) -> object:
    return CliRunner().invoke(cli.main, list(args))


def test_every_config_field_is_a_flag() -> None:
    result = _run("run", "--help")
    assert result.exit_code == 0
    for flag in ("--data-root", "--image-size", "--stage2-learning-rate", "--no-augment", "--beam-arg", "--runner"):
        assert flag in result.output


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
    assert result.exit_code == 1 and "min_accuracy must be in [0, 1]" in result.output
    result = _run("run", "--data-root", data, "--weights", "/missing/backbone.weights.h5")
    assert result.exit_code == 1 and "Weights file not found: /missing/backbone.weights.h5" in result.output
    result = _run("run", "--data-root", data, "--backbone", "AlexNet")
    assert result.exit_code == 1 and "Unknown backbone" in result.output


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
