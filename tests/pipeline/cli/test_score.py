"""``image-pipeline score``: rows file, progress and the final counts; usage errors are the only failures."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.predict import score_rows
from tests.helpers import encode, solid, write
from tests.pipeline.predict.test_score import mixed_folder, save_colour_model


def _score(*args: str) -> object:
    return CliRunner().invoke(cli.main, ["score", *args])


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = str(tmp_path_factory.mktemp("serving") / "image_classifier")
    save_colour_model(base)
    return base


def test_a_folder_becomes_one_row_per_file_with_a_progress_bar_and_counts(model_base: str, tmp_path: object) -> None:
    expected = mixed_folder(str(tmp_path / "photos"))
    output = str(tmp_path / "out" / "scores.csv")
    result = _score(str(tmp_path / "photos"), "--model-dir", model_base, "--output", output, "--batch-size", "5")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"Model: {model_base}/1700000000 (newest version)"
    assert "Scoring" in result.stderr
    [summary] = result.stdout.splitlines()
    assert summary.startswith(
        "Scored 5 of 12 files, refused 7 (hidden file 2, empty file 1, not an image 1, refused by the model 1, "
        f"too small 1, truncated 1); 12 rows in {output} ("
    )
    assert {row.path: row.reason for row in score_rows.read_rows(output)} == expected


def test_every_file_refused_is_still_a_finished_run(model_base: str, tmp_path: object) -> None:
    write(f"{tmp_path}/in/a.txt", b"notes")
    write(f"{tmp_path}/in/b.png", b"")
    output = str(tmp_path / "scores.jsonl")
    result = _score(f"{tmp_path}/in", "--model-dir", model_base, "-o", output)
    assert result.exit_code == 0, result.output
    assert "Scored 0 of 2 files, refused 2 (empty file 1, not an image 1)" in result.stdout
    assert result.stdout.strip().endswith("No file could be scored: every row gives its reason.")
    assert [row.reason for row in score_rows.read_rows(output)] == ["not an image", "empty file"]


def test_top_k_and_the_ingest_limits_are_flags(model_base: str, tmp_path: object) -> None:
    write(f"{tmp_path}/in/small.png", encode(solid((250, 10, 10), size=12), "PNG"))
    output = str(tmp_path / "scores.jsonl")
    result = _score(f"{tmp_path}/in", "--model-dir", model_base, "-o", output, "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert [(row.classes, len(row.probabilities)) for row in score_rows.read_rows(output)] == [(["red"], 1)]
    result = _score(f"{tmp_path}/in", "--model-dir", model_base, "-o", output, "--overwrite", "--min-side", "16")
    assert result.exit_code == 0, result.output
    assert [(row.reason, row.detail) for row in score_rows.read_rows(output)] == [("too small", "12x12")]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{in}", "--model-dir", "{model}", "-o", "{tmp}/scores.txt"], 1, "name it *.csv or *.jsonl"),
        (["{tmp}/missing", "--model-dir", "{model}", "-o", "{tmp}/s.csv"], 1, "{tmp}/missing' does not exist"),
        (["{in}", "--model-dir", "{tmp}", "-o", "{tmp}/s.csv"], 1, "No SavedModel in"),
        (["{in}", "--model-dir", "{model}", "-o", "{tmp}/old.csv"], 1, "old.csv' exists already: pass --overwrite"),
        (["{in}", "--model-dir", "{model}"], 2, "Missing option '--output'"),
        (["{in}", "-o", "{tmp}/s.csv"], 2, "Missing option '--model-dir'"),
        (["{in}", "--model-dir", "{model}", "-o", "{tmp}/s.csv", "--top-k", "0"], 2, "Invalid value for '--top-k'"),
    ],
)  # fmt: skip
def test_usage_mistakes_exit_non_zero_with_one_line(
    model_base: str, tmp_path: object, args: list[str], code: int, message: str
) -> None:
    folder = os.path.dirname(write(f"{tmp_path}/in/a.png", encode(solid((1, 2, 3)), "PNG")))
    write(f"{tmp_path}/old.csv", b"path,status\n")
    values = {"{in}": folder, "{model}": model_base, "{tmp}": str(tmp_path)}
    for key, value in values.items():
        args = [arg.replace(key, value) for arg in args]
        message = message.replace(key, value)
    result = _score(*args)
    assert result.exit_code == code and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not os.path.exists(f"{tmp_path}/s.csv")
