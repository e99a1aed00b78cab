"""The JSON files kept with a TF Serving version: what its push knew and where its rollout stands.

Layout (every path goes through ``tf.io.gfile``: a local disk, a PVC, gs:// or s3://)::

    <version_dir>/assets.extra/push_info.json       PushInfo: written once, by the Pusher
    <version_dir>/assets.extra/serving_status.json  ServingStatus: listed since / stable since / rolled back at

TF Serving copies ``assets.extra`` with the version and reads only its warmup file there
(``components/signatures.py``, ``ASSETS_EXTRA``), so these files never change what
it serves. Each file has one writer here (``write_push_info``, ``update_status``) and a
typed reader that never fails: a missing file reads as empty, a field it cannot read as
absent. Every timestamp is UTC ISO-8601 with its offset (``2026-11-24T10:00:00+00:00``);
older push info files hold ``pushed_at`` as local time without an offset
(``2026-11-24 10:00:00``), read as this host's local time.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Annotated, Any

import tensorflow as tf
from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError

from components.serving import repository

PUSH_INFO_FILE = "push_info.json"
STATUS_FILE = "serving_status.json"


def _as_utc(value: datetime.datetime) -> datetime.datetime:
    """An aware time in UTC; a naive one (older files' local time) is taken as this host's local time."""
    return value.astimezone(datetime.UTC)


def format_utc(value: datetime.datetime) -> str:
    """``2026-11-24T10:00:00+00:00``: UTC ISO-8601 with the offset, to the second."""
    return _as_utc(value).isoformat(timespec="seconds")


UtcTime = Annotated[
    datetime.datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]


def utc_now() -> datetime.datetime:
    """Now, in UTC, to the second (what the files record)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def utc_time(unix_seconds: float) -> datetime.datetime:
    """A Unix time, in UTC, to the second."""
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.UTC).replace(microsecond=0)


class PushInfo(BaseModel):
    """What the Pusher knew when it pushed a version (``push_info.json``); None: not recorded.

    Attributes:
      pipeline_run: The pipeline run that pushed it (empty when the run had no id).
      model_uri: The Trainer's model folder it was copied from.
      pushed_at: When it was pushed.
      accuracy: The gate's test accuracy of the model.
      test_examples: The test images that accuracy was measured on.
      examples_uri: The Examples artifact the gate read; its ``Split-test`` re-judges later candidates.
      span: The span of those Examples.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    pipeline_run: str | None = None
    model_uri: str | None = None
    pushed_at: UtcTime | None = None
    accuracy: float | None = None
    test_examples: int | None = None
    examples_uri: str | None = None
    span: int | None = None


class ServingStatus(BaseModel):
    """Where a version's rollout stands (``serving_status.json``); None: never happened.

    Attributes:
      listed_since: When the model config first listed it (TF Serving loads it from then on);
        dropped when the config stops listing it.
      stable_since: When the ``stable`` label last moved onto it.
      rolled_back_at: When ``rollback`` moved ``stable`` off it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    listed_since: UtcTime | None = None
    stable_since: UtcTime | None = None
    rolled_back_at: UtcTime | None = None


def push_info_path(version_dir: str) -> str:
    """``<version_dir>/assets.extra/push_info.json``."""
    return os.path.join(repository.assets_extra_dir(version_dir), PUSH_INFO_FILE)


def status_path(version_dir: str) -> str:
    """``<version_dir>/assets.extra/serving_status.json``."""
    return os.path.join(repository.assets_extra_dir(version_dir), STATUS_FILE)


def write_push_info(version_dir: str, info: PushInfo) -> str:
    """Writes a version's push info (the Pusher's call, into the staged or pushed version); returns the file."""
    path = push_info_path(version_dir)
    _write(path, info)
    return path


def read_push_info(version_dir: str) -> PushInfo:
    """What the Pusher recorded with a version; empty if nothing."""
    return _read(PushInfo, push_info_path(version_dir))


def read_status(version_dir: str) -> ServingStatus:
    """A version's rollout status; empty if nothing happened to it yet."""
    return _read(ServingStatus, status_path(version_dir))


def update_status(version_dir: str, **changes: datetime.datetime | None) -> ServingStatus:
    """Sets (or, with None, drops) fields of a version's status file; returns the status written.

    Raises:
      TypeError: If a change names no ``ServingStatus`` field.
    """
    unknown = sorted(set(changes) - set(ServingStatus.model_fields))
    if unknown:
        raise TypeError(f"ServingStatus has no fields {unknown}.")
    status = ServingStatus.model_validate({**read_status(version_dir).model_dump(), **changes})
    _write(status_path(version_dir), status)
    return status


def _write(path: str, sidecar: BaseModel) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    fields = sidecar.model_dump(mode="json", exclude_none=True)
    repository.write_whole(path, json.dumps(fields, indent=2, sort_keys=True))


def _read[Sidecar: (PushInfo, ServingStatus)](model: type[Sidecar], path: str) -> Sidecar:
    """The file as ``model``; fields it cannot read are left out (logged), a missing or broken file is empty."""
    data = _read_json(path)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        unreadable = {str(detail["loc"][0]) for detail in error.errors() if detail["loc"]}
        logging.warning("Ignoring %s in %s: %s", sorted(unreadable), path, error)
        return model.model_validate({key: value for key, value in data.items() if key not in unreadable})


def _read_json(path: str) -> dict[str, Any]:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "r") as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        logging.warning("Ignoring %s: not JSON.", path)
        return {}
    return data if isinstance(data, dict) else {}
