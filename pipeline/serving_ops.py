"""Rollout and rollback on TF Serving: ``stable`` and ``canary`` labels in a model_config_file.

Layout (every path goes through ``tf.io.gfile``: a local disk, a PVC, gs:// or s3://)::

    <serving_dir>/models.config                    TF Serving's --model_config_file (written here)
    <serving_dir>/<model>/<version>/               a version, as the Pusher writes it
    <serving_dir>/<model>/<version>/assets.extra/push_info.json       what the push knew
    <serving_dir>/<model>/<version>/assets.extra/serving_status.json  listed since / stable since / rolled back at

TF Serving refuses to move a label that exists already onto a version it has not
loaded yet (``--allow_version_labels_for_unavailable_models`` only admits new
labels, tensorflow/serving#1230), and a refused config also keeps the new
versions from loading. So a label moves only onto a version that the config
file listed for at least one poll of the server; otherwise the call lists the
version (the server loads it) and reports the label as pending: run the same
command again once the version has been listed for ``SETTLE_SECONDS`` (each
version's ``listed_since`` is kept in its status file; an unchanged config is
never rewritten). The config lists the labelled versions
plus the stable version's rollback target, so that ``rollback`` is one step.
Versions are never deleted here: a rolled-back version stays, with its status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import portalocker
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components import serving_dir as version_dirs  # the version-folder layout (a parameter is named serving_dir)

STABLE = "stable"
CANARY = "canary"
MODEL_CONFIG_FILE = "models.config"
PUSH_INFO_FILE = "push_info.json"
STATUS_FILE = "serving_status.json"
LISTED_SINCE = "listed_since"  # in the status file: when the model config first listed the version
# --model_config_file_poll_wait_seconds in kubeflow/serving/tf-serving.yaml.
CONFIG_POLL_SECONDS = 60
SETTLE_SECONDS = CONFIG_POLL_SECONDS + 15
# The BatchingParameters fields the batching ConfigMap sets (TF Serving's
# session_bundle_config.proto; each an Int64Value: ``name { value: N }``).
BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
_WRAPPED_INT = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}")
_OBJECT_STORES = ("gs://", "s3://")
CONFIG_LOCK_FILE = ".models.config.lock"
CONFIG_LOCK_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One version folder and what is known about it.

    Attributes:
      version: The version number (the folder name).
      labels: The labels on it in the model config (``stable``, ``canary``).
      listed: Whether the model config lists it (TF Serving keeps it loaded).
      complete: Whether it holds ``saved_model.pb``.
      accuracy: From its push info, if recorded.
      pipeline_run: From its push info, if recorded.
      pushed_at: From its push info, if recorded.
      rolled_back_at: When ``rollback`` moved ``stable`` off it, if it did.
    """

    version: int
    labels: tuple[str, ...]
    listed: bool
    complete: bool
    accuracy: float | None = None
    pipeline_run: str | None = None
    pushed_at: str | None = None
    rolled_back_at: str | None = None


@dataclasses.dataclass(frozen=True)
class LabelChange:
    """What a rollout command wrote.

    Attributes:
      config_path: The model config file.
      labels: The labels as written.
      versions: The versions the config lists, oldest first.
      pending: Labels that could not move yet, with their target version (which
        is now listed): run the command again after ``wait_seconds``.
      wait_seconds: Pending label -> seconds until its version has been listed
        for ``SETTLE_SECONDS``.
      written: Whether the file changed (an unchanged config is never rewritten).
    """

    config_path: str
    labels: dict[str, int]
    versions: tuple[int, ...]
    pending: dict[str, int]
    wait_seconds: dict[str, int] = dataclasses.field(default_factory=dict)
    written: bool = True

    def format(self, retry: str = "this command") -> str:
        """A short human-readable summary; ``retry`` names the command that moves a pending label."""
        labels = ", ".join(f"{label}={version}" for label, version in sorted(self.labels.items()))
        verb = "Wrote" if self.written else "Unchanged"
        lines = [f"{verb} {self.config_path}: {labels}; serving versions {list(self.versions)}."]
        for label, version in sorted(self.pending.items()):
            wait = self.wait_seconds.get(label, SETTLE_SECONDS)
            lines.append(
                f"Pending: {label} moves to {version} once TF Serving has loaded it; run {retry} again in {wait} s."
            )
        return "\n".join(lines)


def model_config_path(serving_dir: str) -> str:
    """``<serving_dir>/models.config``."""
    return os.path.join(serving_dir, MODEL_CONFIG_FILE)


def record_push_info(version_dir: str, info: dict[str, Any]) -> str:
    """Writes ``<version_dir>/assets.extra/push_info.json`` (for the Pusher to call).

    Args:
      version_dir: A pushed version folder.
      info: JSON-serialisable facts; ``serving list`` shows ``accuracy``,
        ``pipeline_run`` and ``pushed_at``.

    Returns:
      The file written.

    Raises:
      TypeError: If ``info`` does not serialise to JSON.
    """
    path = os.path.join(version_dir, "assets.extra", PUSH_INFO_FILE)
    text = json.dumps(info, indent=2, sort_keys=True)
    tf.io.gfile.makedirs(os.path.dirname(path))
    _write_whole(path, text)
    return path


def read_model_config(serving_dir: str) -> model_server_config_pb2.ModelServerConfig:
    """The model config file, or an empty config if there is none yet.

    Raises:
      ValueError: If the file is not a valid ModelServerConfig text proto.
    """
    path = model_config_path(serving_dir)
    config = model_server_config_pb2.ModelServerConfig()
    if not tf.io.gfile.exists(path):
        return config
    with tf.io.gfile.GFile(path, "r") as handle:
        text = handle.read()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ValueError(f"{path} is not a valid TF Serving model config ({error}): fix or delete it.") from error
    return config


def write_model_config(serving_dir: str, config: model_server_config_pb2.ModelServerConfig) -> str:
    """Writes the model config atomically (temp file + rename; one whole object on gs:// or s3://)."""
    path = model_config_path(serving_dir)
    tf.io.gfile.makedirs(serving_dir)
    _write_whole(path, text_format.MessageToString(config))
    return path


def listed_versions(serving_dir: str, model_name: str) -> set[int]:
    """The versions the model config lists or labels: never delete these (e.g. when pruning)."""
    entry = _entry(read_model_config(serving_dir), model_name)
    if entry is None:
        return set()
    return set(entry.model_version_policy.specific.versions) | set(entry.version_labels.values())


def served_version(serving_dir: str, model_name: str) -> tuple[int, str] | None:
    """The version clients get and why: ``(version, "stable label")`` or ``(version, "newest version")``.

    TF Serving with this model config answers unlabelled requests from the
    ``stable`` version where the config labels one; without a config it serves
    the newest complete version. None when no complete version exists yet.
    """
    base = os.path.join(serving_dir, model_name)
    stable = _current_labels(serving_dir, model_name).get(STABLE)
    if stable is not None and version_dirs.is_complete(os.path.join(base, str(stable))):
        return stable, f"{STABLE} label"
    newest = version_dirs.newest_model_dir(base)
    if newest is None:
        return None
    return int(os.path.basename(newest)), "newest version"


def read_push_info(version_dir: str) -> dict[str, Any]:
    """What the Pusher recorded with a version (``record_push_info``); empty if nothing."""
    return _read_json(os.path.join(version_dir, "assets.extra", PUSH_INFO_FILE))


def describe_versions(serving_dir: str, model_name: str) -> list[VersionInfo]:
    """Every version folder of the model, oldest first, with labels, push info and status."""
    base = os.path.join(serving_dir, model_name)
    entry = _entry(read_model_config(serving_dir), model_name)
    labels = dict(entry.version_labels) if entry else {}
    listed = set(entry.model_version_policy.specific.versions) if entry else set()
    infos = []
    for version in version_dirs.list_versions(base):
        version_dir = os.path.join(base, str(version))
        push = _read_json(os.path.join(version_dir, "assets.extra", PUSH_INFO_FILE))
        status = _read_json(os.path.join(version_dir, "assets.extra", STATUS_FILE))
        accuracy = push.get("accuracy")
        infos.append(
            VersionInfo(
                version=version,
                labels=tuple(sorted(label for label, labelled in labels.items() if labelled == version)),
                listed=version in listed,
                complete=version_dirs.is_complete(version_dir),
                accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
                pipeline_run=push.get("pipeline_run"),
                pushed_at=push.get("pushed_at"),
                rolled_back_at=status.get("rolled_back_at"),
            )
        )
    return infos


def format_versions(versions: list[VersionInfo]) -> str:
    """A table of ``describe_versions``, newest first."""
    if not versions:
        return "No versions."
    rows = [("version", "labels", "in models.config", "accuracy", "pipeline run", "pushed at", "note")]
    for info in reversed(versions):
        note = "incomplete (no saved_model.pb)" if not info.complete else ""
        if info.rolled_back_at:
            note = f"rolled back {info.rolled_back_at}"
        rows.append(
            (
                str(info.version),
                ",".join(info.labels) or "-",
                "yes" if info.listed else "no",
                f"{info.accuracy:.4f}" if info.accuracy is not None else "-",
                info.pipeline_run or "-",
                info.pushed_at or "-",
                note,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def set_canary(
    serving_dir: str,
    model_name: str,
    version: int,
    server_base_path: str | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> LabelChange:
    """Puts ``canary`` on a pushed version; the first labelled version also becomes ``stable``.

    Args:
      serving_dir: The serving directory (holds ``models.config`` and ``<model_name>/``).
      model_name: The model's name on the server.
      version: A complete version under ``<serving_dir>/<model_name>/``.
      server_base_path: Where TF Serving sees ``<serving_dir>/<model_name>`` when
        the config has no entry for the model yet (e.g. ``/models/image_classifier``
        on the PVC mount); default: the same path. An existing entry keeps its own.
      settle_seconds: How old the config file must be before a label moves.

    Raises:
      FileNotFoundError: If the version folder is missing or incomplete.
    """
    _require_complete(serving_dir, model_name, version)
    labels = _current_labels(serving_dir, model_name)
    wanted = {STABLE: labels.get(STABLE, version), CANARY: version}
    return _apply(serving_dir, model_name, wanted, server_base_path, settle_seconds)


def promote(serving_dir: str, model_name: str, settle_seconds: float = SETTLE_SECONDS) -> LabelChange:
    """Moves ``stable`` to the ``canary`` version (``canary`` stays on it).

    Raises:
      ValueError: If there is no canary, or it is the stable version already.
    """
    labels = _current_labels(serving_dir, model_name)
    if CANARY not in labels:
        raise ValueError(
            f"No {CANARY!r} label for {model_name} in {model_config_path(serving_dir)}: "
            "put one on a version first (image-pipeline serving canary VERSION)."
        )
    if labels[CANARY] == labels.get(STABLE):
        raise ValueError(f"Nothing to promote: {CANARY} and {STABLE} are both on version {labels[CANARY]}.")
    wanted = {STABLE: labels[CANARY], CANARY: labels[CANARY]}
    return _apply(serving_dir, model_name, wanted, None, settle_seconds)


def rollback(serving_dir: str, model_name: str, settle_seconds: float = SETTLE_SECONDS) -> LabelChange:
    """Moves ``stable`` to the previous good version; deletes nothing.

    The target is the newest older complete version that was not rolled back,
    preferring one that was stable before. A ``canary`` on the rolled-back
    version follows ``stable``; a canary on another version stays.

    Raises:
      ValueError: If there is no stable label or no earlier good version.
    """
    labels = _current_labels(serving_dir, model_name)
    if STABLE not in labels:
        raise ValueError(
            f"No {STABLE!r} label for {model_name} in {model_config_path(serving_dir)}: nothing to roll back."
        )
    current = labels[STABLE]
    target = _rollback_target(serving_dir, model_name, current)
    if target is None:
        raise ValueError(
            f"No good version of {model_name} older than {current} under {serving_dir}: "
            "nothing to roll back to (image-pipeline serving list shows the versions)."
        )
    canary = labels.get(CANARY, current)
    wanted = {STABLE: target, CANARY: target if canary == current else canary}
    change = _apply(serving_dir, model_name, wanted, None, settle_seconds)
    if STABLE not in change.pending:
        _update_status(serving_dir, model_name, current, rolled_back_at=_now())
        logging.info("Rolled back %s from version %s to %s.", model_name, current, target)
    return change


def batching_parameters(text: str) -> dict[str, int]:
    """The values of a TF Serving ``--batching_parameters_file`` (text proto).

    Raises:
      ValueError: If a field is unknown or missing, or the text holds anything else.
    """
    values = {name: int(value) for name, value in _WRAPPED_INT.findall(text)}
    leftover = _WRAPPED_INT.sub("", re.sub(r"#.*", "", text)).strip()
    unknown = sorted(set(values) - set(BATCHING_FIELDS))
    missing = [name for name in BATCHING_FIELDS if name not in values]
    if leftover or unknown or missing:
        raise ValueError(
            f"Batching parameters must set exactly {', '.join(BATCHING_FIELDS)} as `name {{ value: N }}`. "
            f"Unknown: {unknown}; missing: {missing}; not understood: {leftover[:80]!r}."
        )
    return values


def _apply(
    serving_dir: str,
    model_name: str,
    wanted: dict[str, int],
    server_base_path: str | None,
    settle_seconds: float,
) -> LabelChange:
    """Writes the wanted labels, holding back moves onto versions the server may not have loaded.

    A label moves onto a version only once the config has listed that version for
    ``settle_seconds`` (TF Serving polls the file, then loads the version). When
    each version was first listed is kept in its status file (``listed_since``), so
    neither a pending call nor another label's move restarts a version's clock, and
    the stable version's rollback target stays listed: a rollback never waits.
    """
    with config_lock(serving_dir):
        config = read_model_config(serving_dir)
        before = text_format.MessageToString(config)
        entry = _entry(config, model_name)
        if entry is None:
            entry = config.model_config_list.config.add(
                name=model_name,
                base_path=server_base_path or os.path.join(serving_dir, model_name),
                model_platform="tensorflow",
            )
        current = dict(entry.version_labels)
        listed = set(entry.model_version_policy.specific.versions)
        config_age = _age_seconds(model_config_path(serving_dir))
        ages = {version: _listed_age(serving_dir, model_name, version, config_age) for version in listed}
        labels, pending, wait = {}, {}, {}
        for label, version in wanted.items():
            if label in current and current[label] != version and not ages.get(version, 0.0) >= settle_seconds:
                labels[label], pending[label] = current[label], version
                wait[label] = math.ceil(settle_seconds - ages.get(version, 0.0))
            else:
                labels[label] = version
        standby = _rollback_target(serving_dir, model_name, labels[STABLE])
        versions = set(labels.values()) | set(pending.values()) | ({standby} if standby is not None else set())
        entry.version_labels.clear()
        entry.version_labels.update(labels)
        entry.model_version_policy.specific.ClearField("versions")
        entry.model_version_policy.specific.versions.extend(sorted(versions))
        path = model_config_path(serving_dir)
        written = text_format.MessageToString(config) != before or not tf.io.gfile.exists(path)
        if written:
            write_model_config(serving_dir, config)
        _record_listing(serving_dir, model_name, listed, versions, ages)
        if current.get(STABLE) != labels[STABLE]:
            _update_status(serving_dir, model_name, labels[STABLE], stable_since=_now())
        return LabelChange(path, labels, tuple(sorted(versions)), pending, wait, written)


def _listed_age(serving_dir: str, model_name: str, version: int, fallback: float) -> float:
    """Seconds since the config first listed ``version``; ``fallback`` (the config's age) if never recorded."""
    since = _read_json(_status_path(serving_dir, model_name, version)).get(LISTED_SINCE)
    try:
        return time.time() - datetime.datetime.fromisoformat(since).timestamp()
    except (TypeError, ValueError):
        return fallback


def _record_listing(
    serving_dir: str, model_name: str, before: set[int], after: set[int], ages: dict[int, float]
) -> None:
    """Keeps each version's ``listed_since``: set when it joins the list, dropped when it leaves."""
    now = time.time()
    for version in sorted(after):
        status = _read_json(_status_path(serving_dir, model_name, version))
        if version not in before:
            _update_status(serving_dir, model_name, version, **{LISTED_SINCE: _now()})
        elif LISTED_SINCE not in status and math.isfinite(ages[version]):
            _update_status(serving_dir, model_name, version, **{LISTED_SINCE: _iso(now - ages[version])})
    for version in sorted(before - after):
        path = _status_path(serving_dir, model_name, version)
        status = _read_json(path)
        if status.pop(LISTED_SINCE, None) is not None and version_dirs.is_complete(
            os.path.dirname(os.path.dirname(path))
        ):
            _write_whole(path, json.dumps(status, indent=2, sort_keys=True))


@contextlib.contextmanager
def config_lock(serving_dir: str, timeout: float | None = None) -> Iterator[None]:
    """Serialises read-change-write of the model config (a Pusher and a ``serving`` command at once).

    A local or mounted (PVC) serving directory gets an exclusive lock file next to the
    config. Object stores (any ``scheme://`` path) have no lock: there the last writer
    wins, so run ``serving`` commands while no pipeline run is pushing.

    Raises:
      TimeoutError: If another writer holds the lock for ``timeout`` seconds
        (default :data:`CONFIG_LOCK_SECONDS`).
    """
    timeout = CONFIG_LOCK_SECONDS if timeout is None else timeout
    if "://" in serving_dir:
        yield
        return
    os.makedirs(serving_dir, exist_ok=True)
    path = os.path.join(serving_dir, CONFIG_LOCK_FILE)
    try:
        with portalocker.Lock(path, mode="a", timeout=timeout, flags=portalocker.LOCK_EX | portalocker.LOCK_NB):
            yield
    except portalocker.LockException as error:
        raise TimeoutError(f"{path} is held by another writer for over {timeout:g} s; try again.") from error


def _rollback_target(serving_dir: str, model_name: str, stable: int) -> int | None:
    base = os.path.join(serving_dir, model_name)
    candidates = []
    for version in reversed(version_dirs.list_versions(base)):
        version_dir = os.path.join(base, str(version))
        if version >= stable or not version_dirs.is_complete(version_dir):
            continue
        status = _read_json(os.path.join(version_dir, "assets.extra", STATUS_FILE))
        if not status.get("rolled_back_at"):
            candidates.append((version, bool(status.get("stable_since"))))
    was_stable = [version for version, stable_before in candidates if stable_before]
    if was_stable:
        return was_stable[0]
    return candidates[0][0] if candidates else None


def _entry(
    config: model_server_config_pb2.ModelServerConfig, model_name: str
) -> model_server_config_pb2.ModelConfig | None:
    return next((entry for entry in config.model_config_list.config if entry.name == model_name), None)


def _current_labels(serving_dir: str, model_name: str) -> dict[str, int]:
    entry = _entry(read_model_config(serving_dir), model_name)
    return dict(entry.version_labels) if entry else {}


def _require_complete(serving_dir: str, model_name: str, version: int) -> None:
    version_dir = os.path.join(serving_dir, model_name, str(version))
    if not version_dirs.is_complete(version_dir):
        raise FileNotFoundError(
            f"No complete version at {version_dir} (a folder with saved_model.pb): "
            f"`image-pipeline serving list --serving-dir {serving_dir}` shows the versions."
        )


def _status_path(serving_dir: str, model_name: str, version: int) -> str:
    return os.path.join(serving_dir, model_name, str(version), "assets.extra", STATUS_FILE)


def _update_status(serving_dir: str, model_name: str, version: int, **fields: str) -> None:
    path = _status_path(serving_dir, model_name, version)
    status = {**_read_json(path), **fields}
    tf.io.gfile.makedirs(os.path.dirname(path))
    _write_whole(path, json.dumps(status, indent=2, sort_keys=True))


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


def _write_whole(path: str, text: str) -> None:
    """Readers see the old or the new file, never a part: an object store writes an object
    whole; elsewhere a temporary file in the same folder is renamed over the target."""
    if path.startswith(_OBJECT_STORES):
        with tf.io.gfile.GFile(path, "w") as handle:
            handle.write(text)
        return
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with tf.io.gfile.GFile(temporary, "w") as handle:
            handle.write(text)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        raise


def _age_seconds(path: str) -> float:
    """Seconds since the file was written (infinite if there is none)."""
    if not tf.io.gfile.exists(path):
        return float("inf")
    return time.time() - tf.io.gfile.stat(path).mtime_nsec / 1e9


def _now() -> str:
    return _iso(time.time())


def _iso(unix_seconds: float) -> str:
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc).isoformat(timespec="seconds")
