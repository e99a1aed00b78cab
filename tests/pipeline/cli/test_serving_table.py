"""`image-pipeline serving list`: each version's push-time test accuracy with its 95% interval."""

from __future__ import annotations

import os

import tensorflow as tf
from click.testing import CliRunner

from components.serving import labels, sidecars
from pipeline.cli import main as cli
from pipeline.cli import serving_table


def _version(serving_dir: str, version: int, info: sidecars.PushInfo) -> None:
    version_dir = os.path.join(serving_dir, "clf", str(version))
    tf.io.gfile.makedirs(version_dir)
    with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "wb") as handle:
        handle.write(b"graph")
    sidecars.write_push_info(version_dir, info)


def test_the_accuracy_column_shows_the_interval_and_the_images_it_rests_on() -> None:
    versions = [
        labels.VersionInfo(version=1, labels=(), listed=False, complete=True, accuracy=0.91),
        labels.VersionInfo(version=2, labels=(), listed=False, complete=True, accuracy=76 / 78, test_examples=78),
        labels.VersionInfo(version=3, labels=(), listed=False, complete=True),
    ]
    table = serving_table.format_versions(versions).splitlines()
    assert "test accuracy (95% interval, images)" in table[0]
    assert table[1].split()[:2] == ["3", "-"] and table[1].split()[3] == "-"
    assert "0.9744 (0.911-0.993, 78)" in table[2]
    assert table[3].split()[3] == "0.9100"  # an older push info without its test images: the bare value


def test_serving_list_reads_the_test_images_from_the_push_info(tmp_path: object) -> None:
    serving_dir = str(tmp_path)
    _version(serving_dir, 1, sidecars.PushInfo(accuracy=11 / 21, test_examples=21, pipeline_run="run-1"))
    assert labels.describe_versions(serving_dir, "clf")[0].test_examples == 21
    result = CliRunner().invoke(cli.main, ["serving", "list", "--serving-dir", serving_dir, "--model-name", "clf"])
    assert result.exit_code == 0, result.output
    assert "0.5238 (0.324-0.717, 21)" in result.output
