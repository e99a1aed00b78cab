"""Rollout and rollback: labels in TF Serving's model config, on local dirs and TensorFlow's ram:// filesystem."""

from __future__ import annotations

import datetime
import json
import os
import time
import uuid

import pytest
import tensorflow as tf
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components.serving import labels, model_config, sidecars
from components.serving import repository as serving_dir_lib
from pipeline.cli import main as cli
from pipeline.cli import serving_table

MODEL = "image_classifier"


def _push(serving_dir: str, version: int, complete: bool = True) -> str:
    version_dir = os.path.join(serving_dir, MODEL, str(version))
    tf.io.gfile.makedirs(os.path.join(version_dir, "variables"))
    if complete:
        with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "wb") as handle:
            handle.write(b"graph")
    return version_dir


def _config(serving_dir: str) -> model_server_config_pb2.ModelConfig:
    with tf.io.gfile.GFile(os.path.join(serving_dir, "models.config")) as handle:
        config = text_format.Parse(handle.read(), model_server_config_pb2.ModelServerConfig())
    (entry,) = [entry for entry in config.model_config_list.config if entry.name == MODEL]
    return entry


def _state(serving_dir: str) -> tuple[dict[str, int], list[int]]:
    entry = _config(serving_dir)
    return dict(entry.version_labels), sorted(entry.model_version_policy.specific.versions)


def _canary(serving_dir: str, version: int) -> None:
    """Lists the version, then (as if TF Serving had loaded it since) moves the label."""
    labels.set_canary(serving_dir, MODEL, version, settle_seconds=0)
    assert labels.set_canary(serving_dir, MODEL, version, settle_seconds=0).pending == {}


def _age_config(serving_dir: str) -> None:
    """As if TF Serving had polled the config since it was written and loaded every listed version."""
    path = os.path.join(serving_dir, "models.config")
    if os.path.exists(path):
        old = os.path.getmtime(path) - 2 * labels.SETTLE_SECONDS
        os.utime(path, (old, old))
    for status in tf.io.gfile.glob(sidecars.status_path(os.path.join(serving_dir, MODEL, "*"))):
        with tf.io.gfile.GFile(status) as handle:
            fields = json.load(handle)
        if "listed_since" in fields:
            since = datetime.datetime.fromisoformat(fields["listed_since"])
            earlier = since - datetime.timedelta(seconds=2 * labels.SETTLE_SECONDS)
            fields["listed_since"] = earlier.isoformat()
            with tf.io.gfile.GFile(status, "w") as handle:
                json.dump(fields, handle)


@pytest.fixture(params=["local", "ram"])
def serving_dir(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "local":
        return os.path.join(str(tmp_path), "serving")
    return f"ram://serving-{uuid.uuid4().hex}"  # TensorFlow's in-memory filesystem: no local-only calls pass


def test_first_canary_is_also_stable_and_the_config_is_what_tf_serving_reads(serving_dir: str) -> None:
    _push(serving_dir, 100)
    change = labels.set_canary(serving_dir, MODEL, 100, server_base_path="/models/image_classifier")
    entry = _config(serving_dir)
    assert (entry.base_path, entry.model_platform) == ("/models/image_classifier", "tensorflow")
    assert _state(serving_dir) == ({"stable": 100, "canary": 100}, [100])
    assert change.pending == {}
    assert [name for name in tf.io.gfile.listdir(serving_dir) if "tmp" in name] == []  # temp file renamed away


def test_canary_promote_rollback_cycle_keeps_every_version(serving_dir: str) -> None:
    for version in (1, 2, 3):
        _push(serving_dir, version)
    _canary(serving_dir, 1)
    _canary(serving_dir, 2)
    assert _state(serving_dir) == ({"stable": 1, "canary": 2}, [1, 2])
    labels.promote(serving_dir, MODEL, settle_seconds=0)
    assert _state(serving_dir) == ({"stable": 2, "canary": 2}, [1, 2])  # 1 stays loaded: the rollback target
    _canary(serving_dir, 3)
    labels.promote(serving_dir, MODEL, settle_seconds=0)
    assert _state(serving_dir) == ({"stable": 3, "canary": 3}, [2, 3])

    change = labels.rollback(serving_dir, MODEL, settle_seconds=0)
    assert change.labels == {"stable": 2, "canary": 2} and change.pending == {}
    assert _state(serving_dir) == ({"stable": 2, "canary": 2}, [1, 2])
    labels.rollback(serving_dir, MODEL, settle_seconds=0)
    assert _state(serving_dir)[0] == {"stable": 1, "canary": 1}
    with pytest.raises(ValueError, match="older than 1"):
        labels.rollback(serving_dir, MODEL, settle_seconds=0)
    assert serving_dir_lib.list_versions(os.path.join(serving_dir, MODEL)) == [1, 2, 3]
    rolled_back = {info.version for info in labels.describe_versions(serving_dir, MODEL) if info.rolled_back_at}
    assert rolled_back == {2, 3}


def test_rollback_prefers_the_previous_stable_and_skips_rolled_back_versions(serving_dir: str) -> None:
    for version in (1, 2, 3):
        _push(serving_dir, version)
    _canary(serving_dir, 1)
    _canary(serving_dir, 2)
    _canary(serving_dir, 3)  # 2 superseded, never stable
    labels.promote(serving_dir, MODEL, settle_seconds=0)
    assert labels.rollback(serving_dir, MODEL, settle_seconds=0).labels["stable"] == 1
    _push(serving_dir, 4)
    _canary(serving_dir, 4)
    labels.promote(serving_dir, MODEL, settle_seconds=0)
    assert labels.rollback(serving_dir, MODEL, settle_seconds=0).labels["stable"] == 1  # not 3: rolled back


def test_rollback_keeps_a_canary_on_another_version(serving_dir: str) -> None:
    for version in (1, 2, 3):
        _push(serving_dir, version)
    _canary(serving_dir, 1)
    _canary(serving_dir, 2)
    labels.promote(serving_dir, MODEL, settle_seconds=0)
    _canary(serving_dir, 3)
    labels.rollback(serving_dir, MODEL, settle_seconds=0)
    assert _state(serving_dir) == ({"stable": 1, "canary": 3}, [1, 3])


def test_a_label_waits_until_the_server_can_have_loaded_its_version(tmp_path: object) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    _push(serving_dir, 1)
    _push(serving_dir, 2)
    labels.set_canary(serving_dir, MODEL, 1)
    change = labels.set_canary(serving_dir, MODEL, 2)  # the config was written just now
    assert change.pending == {"canary": 2} and "run this command again" in change.format()
    assert _state(serving_dir) == ({"stable": 1, "canary": 1}, [1, 2])  # 2 listed: the server loads it
    change = labels.set_canary(serving_dir, MODEL, 2)
    assert change.pending == {"canary": 2}  # still too early
    _age_config(serving_dir)
    assert labels.set_canary(serving_dir, MODEL, 2).pending == {}
    assert _state(serving_dir)[0] == {"stable": 1, "canary": 2}


def test_list_shows_push_info_labels_and_works_without_it(serving_dir: str) -> None:
    _push(serving_dir, 1)
    pushed_at = datetime.datetime(2026, 11, 24, 10, tzinfo=datetime.UTC)
    info_path = sidecars.write_push_info(
        _push(serving_dir, 2), sidecars.PushInfo(accuracy=0.91, pipeline_run="run-7", pushed_at=pushed_at)
    )
    assert info_path.endswith(os.path.join("2", "assets.extra", "push_info.json"))
    _push(serving_dir, 3, complete=False)
    assert [info.labels for info in labels.describe_versions(serving_dir, MODEL)] == [(), (), ()]
    labels.set_canary(serving_dir, MODEL, 2)
    versions = {info.version: info for info in labels.describe_versions(serving_dir, MODEL)}
    assert versions[2].labels == ("canary", "stable") and versions[2].listed
    assert (versions[2].accuracy, versions[2].pipeline_run) == (0.91, "run-7")
    assert (versions[1].accuracy, versions[1].pipeline_run, versions[1].labels) == (None, None, ())
    assert versions[1].listed  # loaded as the rollback target
    assert not versions[3].complete
    table = serving_table.format_versions(list(versions.values())).splitlines()
    assert table[0].split()[:4] == ["version", "labels", "in", "models.config"]  # listed there, not "served"
    assert table[1].split()[:2] == ["3", "-"] and "incomplete" in table[1]
    assert table[2].split()[:6] == ["2", "canary,stable", "yes", "0.9100", "run-7", "2026-11-24T10:00:00+00:00"]


def test_other_models_in_the_config_are_kept(serving_dir: str) -> None:
    other = model_server_config_pb2.ModelServerConfig()
    other.model_config_list.config.add(name="other", base_path="/models/other", model_platform="tensorflow")
    model_config.write_model_config(serving_dir, other)
    _push(serving_dir, 1)
    labels.set_canary(serving_dir, MODEL, 1)
    names = [entry.name for entry in model_config.read_model_config(serving_dir).model_config_list.config]
    assert names == ["other", MODEL]


def test_a_failed_write_leaves_the_old_config_and_no_temp_file(tmp_path: object, monkeypatch: object) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    _push(serving_dir, 1)
    labels.set_canary(serving_dir, MODEL, 1)
    with open(os.path.join(serving_dir, "models.config")) as handle:
        before = handle.read()

    def failing_rename(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tf.io.gfile, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        model_config.write_model_config(serving_dir, model_server_config_pb2.ModelServerConfig())
    with open(os.path.join(serving_dir, "models.config")) as handle:
        assert handle.read() == before
    assert sorted(set(os.listdir(serving_dir)) - {model_config.CONFIG_LOCK_FILE}) == [MODEL, "models.config"]


def test_mistakes_are_named(serving_dir: str) -> None:
    _push(serving_dir, 1)
    with pytest.raises(FileNotFoundError, match="serving list"):
        labels.set_canary(serving_dir, MODEL, 5)
    with pytest.raises(ValueError, match="No 'canary' label"):
        labels.promote(serving_dir, MODEL)
    with pytest.raises(ValueError, match="No 'stable' label"):
        labels.rollback(serving_dir, MODEL)
    labels.set_canary(serving_dir, MODEL, 1)
    with pytest.raises(ValueError, match="Nothing to promote"):
        labels.promote(serving_dir, MODEL)
    with tf.io.gfile.GFile(os.path.join(serving_dir, "models.config"), "w") as handle:
        handle.write("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ValueError, match="models.config is not a valid TF Serving model config"):
        labels.describe_versions(serving_dir, MODEL)


def test_cli_rollout(tmp_path: object) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    for version in (1, 2):
        _push(serving_dir, version)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli.main, ["serving", *args, "--serving-dir", serving_dir])
        assert result.exit_code == 0, result.output
        return result.output

    assert "No labels" in invoke("list")
    invoke("canary", "1")
    assert "Pending: canary moves to 2" in invoke("canary", "2")
    _age_config(serving_dir)
    assert "canary=2, stable=1" in invoke("canary", "2")
    _age_config(serving_dir)
    assert "stable=2" in invoke("promote")
    _age_config(serving_dir)
    assert "canary=1, stable=1" in invoke("rollback")
    lines = invoke("list").splitlines()
    assert lines[1].split()[:3] == ["2", "-", "no"] and "rolled back" in lines[1]
    assert lines[2].split()[:3] == ["1", "canary,stable", "yes"]
    result = runner.invoke(cli.main, ["serving", "rollback", "--serving-dir", serving_dir])
    assert result.exit_code == 1 and "older than 1" in result.output


def test_config_writers_take_turns_on_a_local_serving_dir(tmp_path: object) -> None:
    import threading
    import time

    serving_dir = os.path.join(str(tmp_path), "serving")
    _push(serving_dir, 100)
    _push(serving_dir, 200)
    labels.set_canary(serving_dir, MODEL, 100, settle_seconds=0)
    done = threading.Event()
    with model_config.config_lock(serving_dir):  # e.g. a Pusher between reading and writing the config
        writer = threading.Thread(
            target=lambda: (labels.set_canary(serving_dir, MODEL, 200, settle_seconds=0), done.set())
        )
        writer.start()
        time.sleep(0.5)
        assert not done.is_set()  # the second writer waits instead of overwriting
        assert _state(serving_dir) == ({"stable": 100, "canary": 100}, [100])
    writer.join(timeout=10)
    assert done.is_set() and 200 in _state(serving_dir)[1]
    with model_config.config_lock(serving_dir):
        with pytest.raises(TimeoutError, match="held by another writer"):
            with model_config.config_lock(serving_dir, timeout=0.2):
                pass


def test_a_busy_model_config_is_one_line_from_the_cli(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    _push(serving_dir, 100)
    labels.set_canary(serving_dir, MODEL, 100, settle_seconds=0)
    monkeypatch.setattr(model_config, "CONFIG_LOCK_SECONDS", 0.2)
    with model_config.config_lock(serving_dir):
        result = CliRunner().invoke(cli.main, ["serving", "canary", "100", "--serving-dir", serving_dir])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {os.path.join(serving_dir, model_config.CONFIG_LOCK_FILE)} is held by another writer for over 0.2 s; "
        "try again."
    ]


def _listed_since(serving_dir: str, version: int) -> str:
    path = os.path.join(serving_dir, MODEL, str(version), "assets.extra", "serving_status.json")  # the on-disk contract
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)["listed_since"]


def test_pending_calls_neither_rewrite_the_config_nor_restart_the_clock(tmp_path: object) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    for version in (1, 2):
        _push(serving_dir, version)
    labels.set_canary(serving_dir, MODEL, 1)
    first = labels.set_canary(serving_dir, MODEL, 2)
    assert first.pending == {"canary": 2} and first.written
    config = os.path.join(serving_dir, "models.config")
    written_at, since = os.stat(config).st_mtime_ns, _listed_since(serving_dir, 2)
    time.sleep(1.1)
    again = labels.set_canary(serving_dir, MODEL, 2)
    assert again.pending == {"canary": 2} and not again.written
    assert os.stat(config).st_mtime_ns == written_at and _listed_since(serving_dir, 2) == since
    assert again.wait_seconds["canary"] < first.wait_seconds["canary"] <= labels.SETTLE_SECONDS
    assert again.format().startswith("Unchanged ") and f"in {again.wait_seconds['canary']} s" in again.format()


def test_a_rollback_right_after_a_promote_moves_stable_in_one_call(tmp_path: object) -> None:
    serving_dir = os.path.join(str(tmp_path), "serving")
    for version in (1, 2):
        _push(serving_dir, version)
    labels.set_canary(serving_dir, MODEL, 1)
    labels.set_canary(serving_dir, MODEL, 2)  # pending: 2 is listed now
    _age_config(serving_dir)  # TF Serving has polled and loaded 2
    assert labels.set_canary(serving_dir, MODEL, 2).pending == {}
    promoted = labels.promote(serving_dir, MODEL)  # promote right after canary: one call
    assert promoted.pending == {} and promoted.labels == {"stable": 2, "canary": 2}
    assert 1 in promoted.versions  # the rollback target stays loaded
    rolled = labels.rollback(serving_dir, MODEL)  # at once: no wait
    assert rolled.pending == {} and rolled.labels == {"stable": 1, "canary": 1}


def test_the_pusher_names_the_serving_command_to_retry(tmp_path: object) -> None:
    change = labels.LabelChange("/s/models.config", {"stable": 1, "canary": 1}, (1, 2), {"canary": 2}, {"canary": 60})
    text = change.format(retry="`image-pipeline serving canary 2 --serving-dir /s`")
    assert "run `image-pipeline serving canary 2 --serving-dir /s` again in 60 s." in text
