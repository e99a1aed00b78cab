"""Pusher whose versions appear in the serving directory only when complete.

TFX's Pusher copies into ``<base>/<version>/`` in place, so TF Serving (which polls
the base directory) can load a half-copied model. This executor pushes with
``serving_dir.atomic_push`` (a hidden staging folder renamed to a free version
number). It skips a push when the newest version already holds the same model
(an unchanged rerun re-blesses the cached model), pushes again when the served
version is gone (the local runner never caches the Pusher, see
``pipeline/uncached_nodes.py``), and keeps only the newest K versions.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from tfx import v1 as tfx
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import serving_dir

KEEP_VERSIONS_KEY = "keep_versions"


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
        newest = serving_dir.newest_model_dir(base)
        if newest and serving_dir.model_fingerprint(newest) == serving_dir.model_fingerprint(model_dir):
            serving_path = newest
            logging.info("The newest version %s already serves this model; nothing copied.", serving_path)
        else:
            serving_path = serving_dir.atomic_push(model_dir, base)
            logging.info("Model written to serving path %s.", serving_path)
        version = int(os.path.basename(serving_path))
        deleted = serving_dir.prune_versions(base, int(custom.get(KEEP_VERSIONS_KEY, 0)))
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
