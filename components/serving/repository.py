"""The TF Serving model directory: numbered versions that appear whole, never overwritten.

Layout: ``<base>/<version>/`` holds one SavedModel; TF Serving polls ``<base>`` and
serves the highest number. ``<base>/<version>/assets.extra/`` (``signatures.ASSETS_EXTRA``) holds the
files that travel with a version but are not the model: TF Serving's warmup requests and
this pipeline's sidecar files (``components/serving/sidecars.py``). A push copies into a hidden staging folder
``<base>/.tmp-<version>-<host>-<pid>-<random>`` and renames it to the version
number, so a version appears at once and complete (on a local disk, NFS or a
mounted PVC; on gs:// a rename is a copy and is not atomic).

This module needs TensorFlow's file API and TFX's small ``io_utils`` only (not the
Pusher or the orchestration), so that ``predict`` starts fast; the TFX Pusher glue is
in ``components/pusher/executor.py``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Collection, Mapping

import tensorflow as tf
from tfx.utils import io_utils

from components import signatures

# A staging folder whose owner cannot be checked (another host, or an older name
# format) is stale when nothing in it changed for this long. A live copy keeps
# touching the file it writes, so only a dead push leaves a folder this old.
STALE_STAGING_SECONDS = 6 * 3600
# How many version numbers a push tries when others take the one it chose.
PUSH_ATTEMPTS = 10
_OBJECT_STORES = ("gs://", "s3://")

_VERSION = re.compile(r"^\d+$")
_STAGING_PREFIX = ".tmp-"
_STAGING = re.compile(r"^\.tmp-\d+-(?P<host>[A-Za-z0-9.]+(?:-[A-Za-z0-9.]+)*)-(?P<pid>\d+)-[0-9a-f]{8}$")
_FINGERPRINTED = ("saved_model.pb", os.path.join("variables", "variables.index"))


def list_versions(base: str) -> list[int]:
    """Numeric version folders under ``base``, oldest first (none if ``base`` is missing)."""
    if not tf.io.gfile.isdir(base):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(base))
    return sorted(int(name) for name in names if _VERSION.match(name))


def version_path(base: str, version: int) -> str:
    """``<base>/<version>``: a version folder."""
    return os.path.join(base, str(version))


def assets_extra_dir(version_dir: str) -> str:
    """``<version_dir>/assets.extra``: where the files that travel with a version live."""
    return os.path.join(version_dir, signatures.ASSETS_EXTRA)


def is_complete(version_dir: str) -> bool:
    """Whether a version folder holds a SavedModel (``saved_model.pb``)."""
    return tf.io.gfile.exists(os.path.join(version_dir, "saved_model.pb"))


def newest_model_dir(base: str) -> str | None:
    """The newest version folder under ``base`` that holds a ``saved_model.pb``, or None."""
    for version in reversed(list_versions(base)):
        candidate = version_path(base, version)
        if is_complete(candidate):
            return candidate
    return None


def serving_already(base: str, model_dir: str) -> str | None:
    """The newest version folder under ``base`` if it holds the same model as ``model_dir``, else None
    (the Pusher copies nothing then)."""
    newest = newest_model_dir(base)
    if newest and model_fingerprint(newest) == model_fingerprint(model_dir):
        return newest
    return None


def model_fingerprint(model_dir: str) -> str:
    """SHA-256 over the graph and the variables (they change with any weight)."""
    digest = hashlib.sha256()
    for relative in _FINGERPRINTED:
        path = os.path.join(model_dir, relative)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as handle:
                digest.update(handle.read())
    variables = os.path.join(model_dir, "variables")
    if tf.io.gfile.isdir(variables):
        for name in sorted(tf.io.gfile.listdir(variables)):
            if name.startswith("variables.data"):
                with tf.io.gfile.GFile(os.path.join(variables, name), "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


def next_version(base: str) -> int:
    """Unix seconds, or one more than the newest version if that is later."""
    versions = list_versions(base)
    return max(int(time.time()), versions[-1] + 1 if versions else 0)


def write_whole(path: str, text: str) -> None:
    """Writes ``path`` so that readers see the old or the new file, never a part.

    An object store (gs://, s3://) writes an object whole; elsewhere a temporary file in the
    same folder is renamed over the target. The folder must exist.
    """
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


def _host() -> str:
    """This host's name, reduced to the characters a staging folder name allows."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", socket.gethostname()).strip("-") or "host"


def _staging_name(version: int) -> str:
    return f"{_STAGING_PREFIX}{version}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's live process.
    return True


def _newest_change(folder: str) -> float:
    """Unix seconds of the newest modification of ``folder`` or anything in it."""
    newest = tf.io.gfile.stat(folder).mtime_nsec / 1e9
    for parent, dirs, files in tf.io.gfile.walk(folder):
        for name in [*dirs, *files]:
            try:
                newest = max(newest, tf.io.gfile.stat(os.path.join(parent, name.rstrip("/"))).mtime_nsec / 1e9)
            except tf.errors.NotFoundError:
                continue  # Removed while we looked.
    return newest


def staging_is_stale(folder: str, max_age_seconds: float = STALE_STAGING_SECONDS) -> bool:
    """Whether a staging folder was left by a push that is no longer running.

    A folder made on this host belongs to a dead push when its process is gone.
    Otherwise (another host sharing the serving directory, or a name without an
    owner) it is stale when nothing in it changed for ``max_age_seconds``.
    """
    owner = _STAGING.match(os.path.basename(folder.rstrip("/")))
    if owner and owner["host"] == _host():
        return not _pid_alive(int(owner["pid"]))
    return time.time() - _newest_change(folder) > max_age_seconds


def remove_stale_staging(base: str, max_age_seconds: float = STALE_STAGING_SECONDS) -> list[str]:
    """Deletes staging folders left by killed pushes; returns their paths.

    A push killed with SIGKILL (or a lost machine) runs no clean-up, so its
    hidden ``.tmp-*`` folder would stay for ever; see ``staging_is_stale``.
    """
    if not tf.io.gfile.isdir(base):
        return []
    removed = []
    for name in sorted(tf.io.gfile.listdir(base)):
        folder = os.path.join(base, name.rstrip("/"))
        if not name.startswith(_STAGING_PREFIX) or not tf.io.gfile.isdir(folder):
            continue
        try:
            if staging_is_stale(folder, max_age_seconds):
                tf.io.gfile.rmtree(folder)
                removed.append(folder)
        except tf.errors.NotFoundError:
            continue  # Its push finished or another clean-up took it meanwhile.
    if removed:
        logging.warning("Removed staging folders left by killed pushes: %s", removed)
    return removed


def _rename_to_free_version(staging: str, base: str, version: int, attempts: int) -> str:
    """Renames ``staging`` to the first free version number from ``version`` on.

    Raises:
      FileExistsError: If ``attempts`` numbers in a row were taken.
    """
    for candidate in range(version, version + attempts):
        final = os.path.join(base, str(candidate))
        try:
            tf.io.gfile.rename(staging, final, overwrite=False)
            return final
        except (tf.errors.AlreadyExistsError, tf.errors.FailedPreconditionError):
            # AlreadyExists: the number is taken. FailedPrecondition ("Directory not
            # empty"): another push renamed onto it between the check and our rename.
            if not tf.io.gfile.exists(final):
                raise
            logging.info("Version %s was taken by another push; trying %s.", final, candidate + 1)
    raise FileExistsError(
        f"Versions {version} to {version + attempts - 1} under {base} are all taken: "
        "too many pushes at once to this serving directory; push again."
    )


def atomic_push(
    model_dir: str,
    base: str,
    version: int | None = None,
    attempts: int = PUSH_ATTEMPTS,
    extra_files: Mapping[str, bytes] | None = None,
) -> str:
    """Copies ``model_dir`` to a new version folder under ``base``, complete or not at all.

    The copy goes to a hidden staging folder that is renamed to the version
    number. An existing version is never overwritten: if the number is taken
    (another push in the same second, or on another machine), the next free one
    is used. Staging folders left by killed pushes are removed first.

    Args:
      model_dir: The SavedModel folder to push.
      base: The serving directory (TF Serving's model base path).
      version: The wanted version number; default ``next_version(base)``.
      attempts: How many numbers to try from ``version`` on.
      extra_files: File name (relative to the version folder) -> content, written
        into the staging folder with the model, so the version appears with them
        (e.g. ``model.tflite``; TF Serving ignores files it does not know).

    Returns:
      The version folder written.

    Raises:
      FileExistsError: If ``attempts`` numbers in a row were taken.
    """
    tf.io.gfile.makedirs(base)
    remove_stale_staging(base)
    version = next_version(base) if version is None else version
    staging = os.path.join(base, _staging_name(version))
    try:
        io_utils.copy_dir(model_dir, staging)
        for name, content in (extra_files or {}).items():
            with tf.io.gfile.GFile(os.path.join(staging, name), "wb") as handle:
                handle.write(content)
        return _rename_to_free_version(staging, base, version, attempts)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)


def prune_versions(base: str, keep: int, spare: Collection[int] = ()) -> list[int]:
    """Deletes all but the newest ``keep`` versions (0: keep all); returns the deleted ones.

    Versions in ``spare`` (those TF Serving's model config lists or labels) are never deleted.
    """
    versions = list_versions(base)
    doomed = [version for version in (versions[:-keep] if keep > 0 else []) if version not in spare]
    for version in doomed:
        tf.io.gfile.rmtree(version_path(base, version))
    return doomed
