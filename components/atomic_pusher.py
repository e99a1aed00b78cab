"""Pusher whose versions appear in the serving directory only when complete.

TFX's Pusher copies into ``<base>/<version>/`` in place, so TF Serving (which polls
the base directory) can load a half-copied model. This executor pushes with
``serving_dir.atomic_push`` (a hidden staging folder renamed to a free version
number). It skips a push when the newest version already holds the same model
(an unchanged rerun re-blesses the cached model), pushes again when the served
version is gone (the local runner never caches the Pusher, see
``pipeline/uncached_nodes.py``), and keeps only the newest K versions. A blessed
candidate whose class set differs from the served model's is held back unless
class changes are allowed: a model that no longer knows a class can tie on
accuracy and would silently stop recognising it. Each new version gets the
configured TFLite file and its labels (``components/tflite.py``), written into
the staging folder so the version never appears without them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import tensorflow as tf
from pydantic import BaseModel, ConfigDict
from tfx.components import Pusher
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, channel_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.utils import io_utils, json_utils, proto_utils

from components import serving_dir, tflite
from components.modules import features
from pipeline import serving_ops  # the TF Serving model config (labels) lives with the serving commands

NOT_PUSHED_REASON = "not_pushed_reason"
# The gate's ModelEvaluation: its test accuracy is recorded with each pushed version.
EVALUATION_KEY = "evaluation"
PUSHER_ID = "Pusher"


class PusherSettings(BaseModel):
    """The Pusher's ``custom_config``.

    Attributes:
      keep_versions: Pushed versions kept (0: all).
      allow_class_changes: Push a candidate whose classes differ from the served model's.
      tflite: The on-device variant written into each new version (``none``: no TFLite file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_versions: int
    allow_class_changes: bool
    tflite: tflite.TfliteVariant


def class_names(model_dir: str) -> list[str] | None:
    """The classes a pushed model answers with (its label vocabulary), None if it has none."""
    path = os.path.join(model_dir, "assets", features.LABEL_VOCAB_NAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def class_change(served_dir: str, candidate_dir: str) -> str:
    """Why the candidate's classes differ from the served model's, or ``""`` if they do not."""
    served, candidate = class_names(served_dir), class_names(candidate_dir)
    if served is None or candidate is None or set(served) == set(candidate):
        return ""
    lost, new = sorted(set(served) - set(candidate)), sorted(set(candidate) - set(served))
    parts = ([f"the served model's classes {lost} are missing"] if lost else []) + (
        [f"new classes {new}"] if new else []
    )
    return (
        f"class set changed ({'; '.join(parts)}): not pushed. Add the missing class folders back, "
        "or set allow_class_changes: true to serve the new class set"
    )


def on_device_files(model_dir: str, variant: tflite.TfliteVariant) -> dict[str, bytes]:
    """The TFLite file and labels of the model for its version folder (none for ``none``).

    Raises:
      tflite.ConversionError: If the model cannot be converted (the push fails; nothing appears).
    """
    if variant == "none":
        return {}
    names = class_names(model_dir)
    if names is None:
        raise tflite.ConversionError(
            f"The model at {model_dir} has no assets/{features.LABEL_VOCAB_NAME} (class names) for its "
            f"{tflite.LABELS_FILE}: was it trained by this pipeline? Set tflite: none to push it without TFLite."
        )
    started = time.monotonic()
    files = tflite.export_files(model_dir, variant, names)
    logging.info(
        "TFLite (%s): %s, %.1f MB, converted in %.1f s.",
        variant,
        tflite.TFLITE_FILE,
        len(files[tflite.TFLITE_FILE]) / 1e6,
        time.monotonic() - started,
    )
    return files


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
        settings = PusherSettings.model_validate_json(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
        newest = serving_dir.newest_model_dir(base)
        reason = class_change(newest, model_dir) if newest and not settings.allow_class_changes else ""
        if reason:
            logging.warning("Pusher: %s.", reason)
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(NOT_PUSHED_REASON, reason)
            return
        if newest and serving_dir.model_fingerprint(newest) == serving_dir.model_fingerprint(model_dir):
            serving_path = newest
            logging.info("The newest version %s already serves this model; nothing copied.", serving_path)
        else:
            extra_files = on_device_files(model_dir, settings.tflite)
            serving_path = serving_dir.atomic_push(model_dir, base, extra_files=extra_files)
            logging.info("Model written to serving path %s.", serving_path)
            self._after_push(serving_path, model_dir, input_dict.get(EVALUATION_KEY, []))
        version = int(os.path.basename(serving_path))
        root, model_name = os.path.split(base.rstrip("/"))
        spare = serving_ops.listed_versions(root, model_name)
        deleted = serving_dir.prune_versions(base, settings.keep_versions, spare)
        if deleted:
            logging.info("Deleted old versions %s (keeping %s).", deleted, settings.keep_versions)
        io_utils.copy_dir(model_dir, pushed.uri)
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=str(version))

    def _after_push(self, serving_path: str, model_dir: str, evaluations: list) -> None:
        """Records where the version came from and its test accuracy; with a TF Serving model
        config, lists it as the canary."""
        root, model_name = os.path.split(os.path.dirname(serving_path.rstrip("/")))
        run_id = getattr(self._context, "pipeline_run_id", None) if self._context else None
        info: dict[str, Any] = {
            "pipeline_run": run_id or "",
            "model_uri": model_dir,
            "pushed_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if evaluations:
            from pipeline import evaluation  # TFMA: imported only where a push records its numbers

            gate = evaluation.read_gate(artifact_utils.get_single_uri(evaluations), blessed=True)
            info.update(accuracy=gate.candidate_accuracy, test_examples=gate.test_examples)
        serving_ops.record_push_info(serving_path, info)
        if tf.io.gfile.exists(serving_ops.model_config_path(root)):
            change = serving_ops.set_canary(root, model_name, int(os.path.basename(serving_path)))
            logging.info("TF Serving model config: %s", change.format())


class AtomicPusherSpec(component_spec.ComponentSpec):
    """TFX's PusherSpec plus the gate's evaluation (optional), to record each version's test accuracy."""

    PARAMETERS = dict(standard_component_specs.PusherSpec.PARAMETERS)
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }
    OUTPUTS = dict(standard_component_specs.PusherSpec.OUTPUTS)


class AtomicPusher(Pusher):
    """TFX's Pusher with the atomic executor and the gate's evaluation as an extra input.

    It stays a ``tfx.components.Pusher`` (``pipeline/uncached_nodes.py`` finds Pushers by type).
    """

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)

    def __init__(  # noqa: D107 (documented by create_pusher)
        self,
        model: Channel,
        model_blessing: Channel,
        evaluation: Channel | None,
        base_directory: str,
        settings: PusherSettings,
    ) -> None:
        spec = AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            evaluation=evaluation,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory)
            ),
            custom_config=json_utils.dumps(settings.model_dump()),
            pushed_model=channel_utils.as_channel([standard_artifacts.PushedModel()]),
        )
        base_component.BaseComponent.__init__(self, spec=spec)


def create_pusher(
    model: Channel,
    model_blessing: Channel,
    base_directory: str,
    settings: PusherSettings,
    evaluation: Channel | None = None,
) -> Pusher:
    """The ``Pusher`` node: pushes blessed models atomically, recording ``evaluation``'s test accuracy.

    Args:
      model: The Trainer's model.
      model_blessing: The gate's blessing.
      base_directory: ``<serving_dir>/<model_name>``.
      settings: Versions kept, class changes, TFLite variant.
      evaluation: The gate's ModelEvaluation (its test accuracy goes into each version's push info).
    """
    return AtomicPusher(model, model_blessing, evaluation, base_directory, settings).with_id(PUSHER_ID)
