"""The files kept with a version: typed, one writer each, UTC timestamps, older files still readable."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from components.serving import repository, sidecars
from tests.helpers import write

PUSHED_AT = datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=datetime.UTC)


def _on_disk(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def test_push_info_round_trips_and_lands_where_tf_serving_ignores_it(tmp_path: object) -> None:
    version_dir = os.path.join(str(tmp_path), "model", "7")
    info = sidecars.PushInfo(
        pipeline_run="run-7",
        model_uri="/runs/Trainer/model/3/Format-Serving",
        pushed_at=PUSHED_AT,
        accuracy=0.91,
        test_examples=40,
        examples_uri="/runs/ImageExampleGen/examples/2",
        span=2,
    )
    path = sidecars.write_push_info(version_dir, info)
    assert path == os.path.join(version_dir, "assets.extra", "push_info.json")  # the on-disk contract
    assert os.path.dirname(path) == repository.assets_extra_dir(version_dir)
    assert _on_disk(path)["pushed_at"] == "2026-11-24T10:00:00+00:00"
    assert sidecars.read_push_info(version_dir) == info


def test_a_push_without_evaluation_or_examples_writes_only_what_it_knows(tmp_path: object) -> None:
    version_dir = str(tmp_path)
    sidecars.write_push_info(version_dir, sidecars.PushInfo(pipeline_run="", model_uri="/m", pushed_at=PUSHED_AT))
    assert sorted(_on_disk(sidecars.push_info_path(version_dir))) == ["model_uri", "pipeline_run", "pushed_at"]


def test_an_older_push_info_file_is_still_readable(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the pushing host's local time: UTC+1 in November
    time.tzset()
    try:
        version_dir = str(tmp_path)
        old = {  # as the Pusher wrote it before: pushed_at in local time, no offset
            "accuracy": 0.9,
            "examples_uri": "/examples/1",
            "model_uri": "/m",
            "pipeline_run": "run-1",
            "pushed_at": "2026-11-24 11:00:00",
            "span": 1,
            "test_examples": 40,
        }
        write(sidecars.push_info_path(version_dir), json.dumps(old, indent=2, sort_keys=True).encode())
        info = sidecars.read_push_info(version_dir)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert info.pushed_at == PUSHED_AT and info.pushed_at.utcoffset() == datetime.timedelta(0)
    assert (info.accuracy, info.test_examples, info.examples_uri, info.span) == (0.9, 40, "/examples/1", 1)


def test_a_missing_broken_or_odd_file_reads_as_what_it_can(tmp_path: object) -> None:
    version_dir = str(tmp_path)
    assert sidecars.read_push_info(version_dir) == sidecars.PushInfo()
    write(sidecars.push_info_path(version_dir), b"{not json")
    assert sidecars.read_push_info(version_dir) == sidecars.PushInfo()
    odd = {"accuracy": "high", "pipeline_run": "run-2", "pushed_at": "yesterday", "someone_elses": 1}
    write(sidecars.push_info_path(version_dir), json.dumps(odd).encode())
    assert sidecars.read_push_info(version_dir) == sidecars.PushInfo(pipeline_run="run-2")


def test_status_updates_keep_other_fields_and_drop_with_none(tmp_path: object) -> None:
    version_dir = str(tmp_path)
    assert sidecars.read_status(version_dir) == sidecars.ServingStatus()
    sidecars.update_status(version_dir, listed_since=PUSHED_AT)
    sidecars.update_status(version_dir, stable_since=sidecars.utc_time(PUSHED_AT.timestamp() + 60))
    assert _on_disk(sidecars.status_path(version_dir)) == {
        "listed_since": "2026-11-24T10:00:00+00:00",
        "stable_since": "2026-11-24T10:01:00+00:00",
    }
    status = sidecars.update_status(version_dir, listed_since=None)
    assert status == sidecars.read_status(version_dir) and status.listed_since is None
    assert sorted(_on_disk(sidecars.status_path(version_dir))) == ["stable_since"]
    with pytest.raises(TypeError, match="listed"):
        sidecars.update_status(version_dir, listed=PUSHED_AT)


def test_every_timestamp_is_utc_with_its_offset(tmp_path: object) -> None:
    now = sidecars.utc_now()
    assert now.utcoffset() == datetime.timedelta(0) and now.microsecond == 0
    offset = datetime.timezone(datetime.timedelta(hours=-5))
    sidecars.update_status(str(tmp_path), rolled_back_at=datetime.datetime(2026, 11, 24, 5, tzinfo=offset))
    assert _on_disk(sidecars.status_path(str(tmp_path))) == {"rolled_back_at": "2026-11-24T10:00:00+00:00"}
    assert sidecars.format_utc(datetime.datetime(2026, 11, 24, 5, tzinfo=offset)) == "2026-11-24T10:00:00+00:00"
