"""Rollout and rollback on TF Serving: the ``stable`` and ``canary`` labels in its model config.

Layout (every path goes through ``tf.io.gfile``: a local disk, a PVC, gs:// or s3://)::

    <serving_dir>/models.config                    TF Serving's --model_config_file (``model_config.py``)
    <serving_dir>/<model>/<version>/               a version, as the Pusher writes it (``repository.py``)
    <serving_dir>/<model>/<version>/assets.extra/  its push info and rollout status (``sidecars.py``)

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

import dataclasses
import datetime
import logging
import math
import os
import time

import tensorflow as tf
from google.protobuf import text_format

from components.serving import model_config, repository, sidecars

STABLE = "stable"
CANARY = "canary"
SETTLE_SECONDS = model_config.CONFIG_POLL_SECONDS + 15


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One version folder and what is known about it.

    Attributes:
      version: The version number (the folder name).
      labels: The labels on it in the model config (``stable``, ``canary``).
      listed: Whether the model config lists it (TF Serving keeps it loaded).
      complete: Whether it holds ``saved_model.pb``.
      accuracy: From its push info, if recorded.
      test_examples: The test images that accuracy was measured on, from its push info.
      pipeline_run: From its push info, if recorded.
      pushed_at: From its push info, if recorded (UTC).
      rolled_back_at: When ``rollback`` moved ``stable`` off it, if it did (UTC).
    """

    version: int
    labels: tuple[str, ...]
    listed: bool
    complete: bool
    accuracy: float | None = None
    test_examples: int | None = None
    pipeline_run: str | None = None
    pushed_at: datetime.datetime | None = None
    rolled_back_at: datetime.datetime | None = None


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


def served_version(serving_dir: str, model_name: str) -> tuple[int, str] | None:
    """The version clients get and why: ``(version, "stable label")`` or ``(version, "newest version")``.

    TF Serving with this model config answers unlabelled requests from the
    ``stable`` version where the config labels one; without a config it serves
    the newest complete version. None when no complete version exists yet.
    """
    base = os.path.join(serving_dir, model_name)
    stable = model_config.version_labels(serving_dir, model_name).get(STABLE)
    if stable is not None and repository.is_complete(repository.version_path(base, stable)):
        return stable, f"{STABLE} label"
    newest = repository.newest_model_dir(base)
    if newest is None:
        return None
    return int(os.path.basename(newest)), "newest version"


def describe_versions(serving_dir: str, model_name: str) -> list[VersionInfo]:
    """Every version folder of the model, oldest first, with labels, push info and status."""
    base = os.path.join(serving_dir, model_name)
    entry = model_config.model_entry(model_config.read_model_config(serving_dir), model_name)
    labels = dict(entry.version_labels) if entry else {}
    listed = set(entry.model_version_policy.specific.versions) if entry else set()
    return [_describe(base, version, labels, listed) for version in repository.list_versions(base)]


def _describe(base: str, version: int, labels: dict[str, int], listed: set[int]) -> VersionInfo:
    version_dir = repository.version_path(base, version)
    push = sidecars.read_push_info(version_dir)
    return VersionInfo(
        version=version,
        labels=tuple(sorted(label for label, labelled in labels.items() if labelled == version)),
        listed=version in listed,
        complete=repository.is_complete(version_dir),
        accuracy=push.accuracy,
        test_examples=push.test_examples,
        pipeline_run=push.pipeline_run,
        pushed_at=push.pushed_at,
        rolled_back_at=sidecars.read_status(version_dir).rolled_back_at,
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
    labels = model_config.version_labels(serving_dir, model_name)
    wanted = {STABLE: labels.get(STABLE, version), CANARY: version}
    return _apply(serving_dir, model_name, wanted, server_base_path, settle_seconds)


def promote(serving_dir: str, model_name: str, settle_seconds: float = SETTLE_SECONDS) -> LabelChange:
    """Moves ``stable`` to the ``canary`` version (``canary`` stays on it).

    Raises:
      ValueError: If there is no canary, or it is the stable version already.
    """
    labels = model_config.version_labels(serving_dir, model_name)
    if CANARY not in labels:
        raise ValueError(
            f"No {CANARY!r} label for {model_name} in {model_config.model_config_path(serving_dir)}: "
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
    labels = model_config.version_labels(serving_dir, model_name)
    if STABLE not in labels:
        raise ValueError(
            f"No {STABLE!r} label for {model_name} in {model_config.model_config_path(serving_dir)}: "
            "nothing to roll back."
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
        sidecars.update_status(_version_dir(serving_dir, model_name, current), rolled_back_at=sidecars.utc_now())
        logging.info("Rolled back %s from version %s to %s.", model_name, current, target)
    return change


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
    with model_config.config_lock(serving_dir):
        config = model_config.read_model_config(serving_dir)
        before = text_format.MessageToString(config)
        entry = model_config.model_entry(config, model_name)
        if entry is None:
            entry = config.model_config_list.config.add(
                name=model_name,
                base_path=server_base_path or os.path.join(serving_dir, model_name),
                model_platform="tensorflow",
            )
        current = dict(entry.version_labels)
        listed = set(entry.model_version_policy.specific.versions)
        config_age = model_config.config_age_seconds(serving_dir)
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
        path = model_config.model_config_path(serving_dir)
        written = text_format.MessageToString(config) != before or not tf.io.gfile.exists(path)
        if written:
            model_config.write_model_config(serving_dir, config)
        _record_listing(serving_dir, model_name, listed, versions, ages)
        if current.get(STABLE) != labels[STABLE]:
            sidecars.update_status(
                _version_dir(serving_dir, model_name, labels[STABLE]), stable_since=sidecars.utc_now()
            )
        return LabelChange(path, labels, tuple(sorted(versions)), pending, wait, written)


def _listed_age(serving_dir: str, model_name: str, version: int, fallback: float) -> float:
    """Seconds since the config first listed ``version``; ``fallback`` (the config's age) if never recorded."""
    since = sidecars.read_status(_version_dir(serving_dir, model_name, version)).listed_since
    return fallback if since is None else time.time() - since.timestamp()


def _record_listing(
    serving_dir: str, model_name: str, before: set[int], after: set[int], ages: dict[int, float]
) -> None:
    """Keeps each version's ``listed_since``: set when it joins the list, dropped when it leaves.

    A version listed before this module kept ``listed_since`` gets the time its age says.
    """
    now = time.time()
    for version in sorted(after):
        version_dir = _version_dir(serving_dir, model_name, version)
        if version not in before:
            sidecars.update_status(version_dir, listed_since=sidecars.utc_now())
        elif sidecars.read_status(version_dir).listed_since is None and math.isfinite(ages[version]):
            sidecars.update_status(version_dir, listed_since=sidecars.utc_time(now - ages[version]))
    for version in sorted(before - after):
        version_dir = _version_dir(serving_dir, model_name, version)
        # A deleted version's folder is not made again for its status file.
        if repository.is_complete(version_dir) and sidecars.read_status(version_dir).listed_since is not None:
            sidecars.update_status(version_dir, listed_since=None)


def _rollback_target(serving_dir: str, model_name: str, stable: int) -> int | None:
    """The newest complete version older than ``stable`` not rolled back, preferring a former stable one."""
    base = os.path.join(serving_dir, model_name)
    candidates = []
    for version in reversed(repository.list_versions(base)):
        version_dir = repository.version_path(base, version)
        if version >= stable or not repository.is_complete(version_dir):
            continue
        status = sidecars.read_status(version_dir)
        if status.rolled_back_at is None:
            candidates.append((version, status.stable_since is not None))
    was_stable = [version for version, stable_before in candidates if stable_before]
    if was_stable:
        return was_stable[0]
    return candidates[0][0] if candidates else None


def _version_dir(serving_dir: str, model_name: str, version: int) -> str:
    return repository.version_path(os.path.join(serving_dir, model_name), version)


def _require_complete(serving_dir: str, model_name: str, version: int) -> None:
    version_dir = _version_dir(serving_dir, model_name, version)
    if not repository.is_complete(version_dir):
        raise FileNotFoundError(
            f"No complete version at {version_dir} (a folder with saved_model.pb): "
            f"`image-pipeline serving list --serving-dir {serving_dir}` shows the versions."
        )
