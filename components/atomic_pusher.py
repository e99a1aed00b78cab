"""Pusher whose versions appear in the serving directory only when complete.

TFX's Pusher copies into ``<base>/<version>/`` in place, so TF Serving (which polls
the base directory) can load a half-copied model. This executor copies into a
hidden temporary folder in the same base directory and renames it to the version
number: on a local disk or a mounted PVC the version appears at once, complete.
It also skips a push when the newest version already holds the same model (an
unchanged rerun re-blesses the cached model) and keeps only the newest K versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from typing import Any

import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

KEEP_VERSIONS_KEY = "keep_versions"
_VERSION = re.compile(r"^\d+$")
_FINGERPRINTED = ("saved_model.pb", os.path.join("variables", "variables.index"))


def list_versions(base: str) -> list[int]:
    """Numeric version folders under ``base``, oldest first."""
    if not tf.io.gfile.isdir(base):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(base))
    return sorted(int(name) for name in names if _VERSION.match(name))


def model_fingerprint(model_dir: str) -> str:
    """SHA-256 over the graph and the variables index (they change with any weight)."""
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


def atomic_push(model_dir: str, base: str, version: int) -> str:
    """Copies ``model_dir`` to ``<base>/<version>`` through a hidden temporary folder.

    Returns:
      The version folder.

    Raises:
      FileExistsError: If the version folder exists already.
    """
    final = os.path.join(base, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"Version folder {final} exists already.")
    staging = os.path.join(base, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    tf.io.gfile.makedirs(base)
    try:
        io_utils.copy_dir(model_dir, staging)
        tf.io.gfile.rename(staging, final)
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    return final


def prune_versions(base: str, keep: int) -> list[int]:
    """Deletes all but the newest ``keep`` versions; returns the deleted ones."""
    versions = list_versions(base)
    doomed = versions[:-keep] if keep > 0 else []
    for version in doomed:
        tf.io.gfile.rmtree(os.path.join(base, str(version)))
    return doomed


def next_version(base: str) -> int:
    """Unix seconds, or one more than the newest version if that is later."""
    versions = list_versions(base)
    return max(int(time.time()), versions[-1] + 1 if versions else 0)


class AtomicPusherExecutor(tfx_pusher_executor.Executor):
    """Pushes blessed models to a filesystem destination atomically."""

    def Do(  # noqa: N802 (TFX API)
        self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]
    ) -> None:
        """Pushes the model if blessed; records the version in MLMD."""
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        model_dir = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("AtomicPusher pushes to a filesystem destination only.")
        base = destination.filesystem.base_directory
        custom = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
        versions = list_versions(base)
        fingerprint = model_fingerprint(model_dir)
        if versions and model_fingerprint(os.path.join(base, str(versions[-1]))) == fingerprint:
            version = versions[-1]
            serving_path = os.path.join(base, str(version))
            logging.info("The newest version %s already serves this model; nothing copied.", serving_path)
        else:
            version = next_version(base)
            serving_path = atomic_push(model_dir, base, version)
            logging.info("Model written to serving path %s.", serving_path)
        deleted = prune_versions(base, int(custom.get(KEEP_VERSIONS_KEY, 0)))
        if deleted:
            logging.info("Deleted old versions %s (keeping %s).", deleted, custom[KEEP_VERSIONS_KEY])
        io_utils.copy_dir(model_dir, pushed.uri)
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=str(version))


def create_pusher(
    model: tfx.dsl.Channel, model_blessing: tfx.dsl.Channel, base_directory: str, keep_versions: int
) -> tfx.components.Pusher:
    """A Pusher with the atomic executor; keeps the newest ``keep_versions`` (0: all)."""
    return tfx.components.Pusher(
        model=model,
        model_blessing=model_blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_directory)
        ),
        custom_config={KEEP_VERSIONS_KEY: keep_versions},
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPusherExecutor),
    )
