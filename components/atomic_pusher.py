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

from components import accuracy, served_model, serving_dir, tflite
from components.modules import features
from pipeline import serving_ops  # the TF Serving model config (labels) lives with the serving commands

NOT_PUSHED_REASON = "not_pushed_reason"
# "new_version" (a version folder was written) or "already_served" (the newest version holds this model).
PUSH_OUTCOME = "push_outcome"
NEW_VERSION = "new_version"
ALREADY_SERVED = "already_served"
# The gate's ModelEvaluation: its test accuracy is recorded with each pushed version.
EVALUATION_KEY = "evaluation"
# The served-model step's Model: the gate's baseline, and its accuracy when it was pushed.
SERVED_MODEL_KEY = "served_model"
# The ingested Examples: their URI goes into each version's push info, so a later run can
# re-judge on this version's own test split (components/served_model.py).
EXAMPLES_KEY = "examples"
# The second Evaluator's verdict: the candidate against the served model on the served
# version's own test split (images the served model was gated on and never trained on).
SERVED_TEST_BLESSING_KEY = "served_test_blessing"
SERVED_TEST_EVALUATION_KEY = "served_test_evaluation"
PUSHER_ID = "Pusher"


class PusherSettings(BaseModel):
    """The Pusher's ``custom_config``.

    Attributes:
      keep_versions: Pushed versions kept (0: all).
      allow_class_changes: Push a candidate whose classes differ from the served model's.
      allow_data_shift: Push a candidate even when the served model's accuracy on this run's
        test split is surely below its accuracy at push time (``data_shift``).
      tflite: The on-device variant written into each new version (``none``: no TFLite file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_versions: int
    allow_class_changes: bool
    allow_data_shift: bool = False
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


def data_shift(served: served_model.ServedBaseline, baseline_now: float | None, test_examples: int | None) -> str:
    """Why the served model's accuracy on this run's test split says the data changed, or ``""``.

    The served version was pushed with test accuracy ``served.push_accuracy`` on
    ``served.push_test_examples`` images; on this run's test split it scores
    ``baseline_now``. When the two 95% Wilson intervals do not overlap
    (``accuracy.surely_lower``), the served model did not get worse: the images or
    their labels did. "No worse than served" then compares two models on data that
    no longer means what it meant, so a candidate that wins there proves nothing
    (e.g. shuffled labels: served 1.000 at push, 0.471 now, candidate 0.529).
    Non-overlap is a strict test (two-sided p below about 0.006), so normal
    sampling noise between spans never holds a push back.
    """
    before, before_n = served.push_accuracy, served.push_test_examples
    if not served.version or before is None or not before_n or baseline_now is None or not test_examples:
        return ""
    if not accuracy.surely_lower(baseline_now, test_examples, before, before_n):
        return ""
    now_low, now_high = accuracy.accuracy_interval(baseline_now, test_examples)
    then_low, then_high = accuracy.accuracy_interval(before, before_n)
    return (
        f"data shift: the served version {served.version} scores {baseline_now:.3f} "
        f"(95% interval {now_low:.3f}-{now_high:.3f}) on this run's {test_examples} test images, against "
        f"{before:.3f} ({then_low:.3f}-{then_high:.3f}, {before_n} images) when it was pushed, so the images or their "
        "labels changed and beating it here proves nothing: not pushed. Check the new data, or set "
        "allow_data_shift: true to push it"
    )


def _served_test_regression(input_dict: dict[str, list]) -> str:
    """Why the candidate is worse than the served model on the served version's own test split, or ``""``."""
    blessings = input_dict.get(SERVED_TEST_BLESSING_KEY) or []
    if not blessings or blessings[0].get_int_custom_property("blessed"):
        return ""
    from pipeline import evaluation  # TFMA: imported only where a push reads its numbers

    evaluations = input_dict.get(SERVED_TEST_EVALUATION_KEY) or []
    gate = evaluation.read_gate(evaluations[0].uri, blessed=False) if evaluations else None
    numbers = "; ".join(gate.reasons) if gate and gate.reasons else "see the served-test Evaluator"
    return (
        f"regression on the served version's own test split ({gate.test_examples if gate else '?'} images it was "
        f"gated on, held out when it was trained): {numbers}: not pushed. Check the new data against the old, or "
        "raise max_accuracy_drop"
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
        reason = self._hold_back_reason(input_dict, base, model_dir, settings)
        if reason:
            logging.warning("Pusher: %s.", reason)
            self._MarkNotPushed(pushed)
            pushed.set_string_custom_property(NOT_PUSHED_REASON, reason)
            return
        newest = serving_dir.newest_model_dir(base)
        if newest and serving_dir.model_fingerprint(newest) == serving_dir.model_fingerprint(model_dir):
            serving_path, outcome = newest, ALREADY_SERVED
            logging.info("The newest version %s already serves this model; nothing copied.", serving_path)
        else:
            extra_files = on_device_files(model_dir, settings.tflite)
            serving_path, outcome = serving_dir.atomic_push(model_dir, base, extra_files=extra_files), NEW_VERSION
            logging.info("Model written to serving path %s.", serving_path)
            self._after_push(serving_path, model_dir, input_dict)
        version = int(os.path.basename(serving_path))
        root, model_name = os.path.split(base.rstrip("/"))
        spare = serving_ops.listed_versions(root, model_name)
        deleted = serving_dir.prune_versions(base, settings.keep_versions, spare)
        if deleted:
            logging.info("Deleted old versions %s (keeping %s).", deleted, settings.keep_versions)
        io_utils.copy_dir(model_dir, pushed.uri)
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=str(version))
        pushed.set_string_custom_property(PUSH_OUTCOME, outcome)

    @staticmethod
    def _hold_back_reason(input_dict: dict[str, list], base: str, model_dir: str, settings: PusherSettings) -> str:
        """Why a blessed candidate is held back (class change, data shift), or ``""``."""
        served_dirs = input_dict.get(SERVED_MODEL_KEY) or []
        served = served_model.ServedBaseline.from_artifact(served_dirs[0]) if served_dirs else None
        if served is not None:
            served_dir = os.path.join(base, str(served.version)) if served.version else None
        else:
            served_dir = serving_dir.newest_model_dir(base)
        if served_dir and not settings.allow_class_changes:
            reason = class_change(served_dir, model_dir)
            if reason:
                return reason
        evaluations = input_dict.get(EVALUATION_KEY) or []
        if served is None or not evaluations:
            return ""
        if settings.allow_data_shift:
            return _served_test_regression(input_dict)
        from pipeline import evaluation  # TFMA: imported only where a push reads its numbers

        gate = evaluation.read_gate(artifact_utils.get_single_uri(evaluations), blessed=True)
        return data_shift(served, gate.baseline_accuracy, gate.test_examples) or _served_test_regression(input_dict)

    def _after_push(self, serving_path: str, model_dir: str, input_dict: dict[str, list]) -> None:
        """Records where the version came from, its test accuracy and test split; with a TF Serving
        model config, lists it as the canary."""
        evaluations = input_dict.get(EVALUATION_KEY) or []
        examples = input_dict.get(EXAMPLES_KEY) or []
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
        if examples:
            info.update(examples_uri=examples[0].uri, span=examples[0].get_int_custom_property("span"))
        serving_ops.record_push_info(serving_path, info)
        if tf.io.gfile.exists(serving_ops.model_config_path(root)):
            version = int(os.path.basename(serving_path))
            change = serving_ops.set_canary(root, model_name, version)
            retry = f"`image-pipeline serving canary {version} --serving-dir {root} --model-name {model_name}`"
            logging.info("TF Serving model config: %s", change.format(retry=retry))


class AtomicPusherSpec(component_spec.ComponentSpec):
    """TFX's PusherSpec plus the gate's evaluation (optional), to record each version's test accuracy."""

    PARAMETERS = dict(standard_component_specs.PusherSpec.PARAMETERS)
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        SERVED_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model, optional=True),
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples, optional=True),
        SERVED_TEST_BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        SERVED_TEST_EVALUATION_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.ModelEvaluation, optional=True
        ),
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
        served: Channel | None = None,
        examples: Channel | None = None,
        served_test: tuple[Channel, Channel] | None = None,
    ) -> None:
        spec = AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            evaluation=evaluation,
            served_model=served,
            examples=examples,
            served_test_blessing=served_test[0] if served_test else None,
            served_test_evaluation=served_test[1] if served_test else None,
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
    served: Channel | None = None,
    examples: Channel | None = None,
    served_test: tuple[Channel, Channel] | None = None,
) -> Pusher:
    """The ``Pusher`` node: pushes blessed models atomically, recording ``evaluation``'s test accuracy.

    Args:
      model: The Trainer's model.
      model_blessing: The gate's blessing.
      base_directory: ``<serving_dir>/<model_name>``.
      settings: Versions kept, class changes, TFLite variant.
      evaluation: The gate's ModelEvaluation (its test accuracy goes into each version's push info).
      served: The served-model step's Model (the gate's baseline): class changes are judged
        against it, and its push-time accuracy tells a data shift (``data_shift``).
      examples: The ingested Examples, recorded with each version (its test split is re-judged later).
      served_test: The second Evaluator's blessing and evaluation on the served version's test split.
    """
    pusher = AtomicPusher(model, model_blessing, evaluation, base_directory, settings, served, examples, served_test)
    return pusher.with_id(PUSHER_ID)
