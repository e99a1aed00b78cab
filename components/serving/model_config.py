"""TF Serving's ``--model_config_file``: reading and writing it, its lock, its batching parameters.

Layout (every path goes through ``tf.io.gfile``: a local disk, a PVC, gs:// or s3://)::

    <serving_dir>/models.config          TF Serving's --model_config_file (written here only)
    <serving_dir>/.models.config.lock    serialises writers on a local or mounted directory
    <serving_dir>/<model>/<version>/     a version, as the Pusher writes it (``repository.py``)

The file is a ``ModelServerConfig`` text proto (tensorflow_serving/config/model_server_config.proto);
the server re-reads it every ``--model_config_file_poll_wait_seconds``. What goes into it (the
``stable`` and ``canary`` labels) is decided in ``components/serving/labels.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator

import portalocker
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components.serving import repository

MODEL_CONFIG_FILE = "models.config"
# --model_config_file_poll_wait_seconds in kubeflow/serving/tf-serving.yaml.
CONFIG_POLL_SECONDS = 60
CONFIG_LOCK_FILE = ".models.config.lock"
CONFIG_LOCK_SECONDS = 60.0
# The BatchingParameters fields the batching ConfigMap sets (TF Serving's
# session_bundle_config.proto; each an Int64Value: ``name { value: N }``).
BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
_WRAPPED_INT = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}")


def model_config_path(serving_dir: str) -> str:
    """``<serving_dir>/models.config``."""
    return os.path.join(serving_dir, MODEL_CONFIG_FILE)


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
    repository.write_whole(path, text_format.MessageToString(config))
    return path


def model_entry(
    config: model_server_config_pb2.ModelServerConfig, model_name: str
) -> model_server_config_pb2.ModelConfig | None:
    """The config's entry for ``model_name``, or None."""
    return next((entry for entry in config.model_config_list.config if entry.name == model_name), None)


def version_labels(serving_dir: str, model_name: str) -> dict[str, int]:
    """The model's labels in the config file (label -> version); empty without an entry."""
    entry = model_entry(read_model_config(serving_dir), model_name)
    return dict(entry.version_labels) if entry else {}


def listed_versions(serving_dir: str, model_name: str) -> set[int]:
    """The versions the model config lists or labels: never delete these (e.g. when pruning)."""
    entry = model_entry(read_model_config(serving_dir), model_name)
    if entry is None:
        return set()
    return set(entry.model_version_policy.specific.versions) | set(entry.version_labels.values())


def config_age_seconds(serving_dir: str) -> float:
    """Seconds since the model config was written (infinite if there is none)."""
    path = model_config_path(serving_dir)
    if not tf.io.gfile.exists(path):
        return float("inf")
    return time.time() - tf.io.gfile.stat(path).mtime_nsec / 1e9


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
