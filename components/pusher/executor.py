"""The Pusher's ``Do``: versions appear in the serving directory only when complete.

TFX's Pusher copies into ``<base>/<version>/`` in place, so TF Serving (which polls
the base directory) can load a half-copied model. This executor pushes with
``serving_dir.atomic_push`` (a hidden staging folder renamed to a free version
number). It skips a push when the newest version already holds the same model
(an unchanged rerun re-blesses the cached model), pushes again when the served
version is gone (the local runner never caches the Pusher, see
``pipeline/graph/uncached_nodes.py``), and keeps only the newest K versions. A blessed
candidate whose class set differs from the served model's is held back unless
class changes are allowed: a model that no longer knows a class can tie on
accuracy and would silently stop recognising it. Each new version gets the
configured TFLite file and its labels (``components/serving/tflite.py``), written into
the staging folder so the version never appears without them, and its push info
(``components/serving/sidecars.py``, ``PushInfo``: this is its only writer).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import tensorflow as tf
from pydantic import BaseModel, ConfigDict
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.evaluation import accuracy
from components.modules import features
from components.served_model import component as served_model
from components.serving import labels, model_config, sidecars, tflite
from components.serving import repository as serving_dir

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
# re-judge on this version's own test split (components/served_model/executor.py).
EXAMPLES_KEY = "examples"
# The second Evaluator's verdict: the candidate against the served model on the served
# version's own test split (images the served model was gated on and never trained on).
SERVED_TEST_BLESSING_KEY = "served_test_blessing"
SERVED_TEST_EVALUATION_KEY = "served_test_evaluation"


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
    from components.evaluation import metrics as evaluation  # TFMA: imported only where a push reads its numbers

    evaluations = input_dict.get(SERVED_TEST_EVALUATION_KEY) or []
    gate = evaluation.read_gate(evaluations[0].uri, blessed=False) if evaluations else None
    numbers = "; ".join(gate.reasons) if gate and gate.reasons else "see the served-test Evaluator"
    if gate and gate.candidate_accuracy is not None:
        numbers += (
            f"; candidate {evaluation.with_interval(gate.candidate_accuracy, gate.test_examples)}, served model "
            f"{evaluation.with_interval(gate.baseline_accuracy, gate.test_examples)}"
        )
    return (
        f"regression on the served version's own test split ({gate.test_examples if gate else '?'} images it was "
        f"gated on, held out when it was trained): {numbers}: not pushed. Check the new data against the old, or "
        "raise max_accuracy_drop"
    )


def _not_blessed_reason(input_dict: dict[str, list]) -> str:
    """Why the gate did not bless the candidate, with its numbers (from the gate's evaluation)."""
    evaluations = input_dict.get(EVALUATION_KEY) or []
    if not evaluations:
        return "see the Evaluator's blessing"
    from components.evaluation import metrics as evaluation  # TFMA: imported only where a push reads its numbers

    gate = evaluation.read_gate(evaluations[0].uri, blessed=False)
    return "; ".join(gate.reasons) or "see the Evaluator's blessing"


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
        "TFLite (%s): %s, %.1f MB, %.1f s in the Pusher.",
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
            logging.info("Pusher: not blessed: %s; nothing pushed.", _not_blessed_reason(input_dict))
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
        newest = serving_dir.serving_already(base, model_dir)
        if newest:
            serving_path, outcome = newest, ALREADY_SERVED
            logging.info("The newest version %s already serves this model; nothing copied.", serving_path)
        else:
            extra_files = on_device_files(model_dir, settings.tflite)
            serving_path, outcome = serving_dir.atomic_push(model_dir, base, extra_files=extra_files), NEW_VERSION
            logging.info("Model written to serving path %s.", serving_path)
            self._after_push(serving_path, model_dir, input_dict)
        version = int(os.path.basename(serving_path))
        root, model_name = os.path.split(base.rstrip("/"))
        spare = model_config.listed_versions(root, model_name)
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
        from components.evaluation import metrics as evaluation  # TFMA: imported only where a push reads its numbers

        gate = evaluation.read_gate(artifact_utils.get_single_uri(evaluations), blessed=True)
        return data_shift(served, gate.baseline_accuracy, gate.test_examples) or _served_test_regression(input_dict)

    def _after_push(self, serving_path: str, model_dir: str, input_dict: dict[str, list]) -> None:
        """Records where the version came from, its test accuracy and test split; with a TF Serving
        model config, lists it as the canary."""
        run_id = getattr(self._context, "pipeline_run_id", None) if self._context else None
        sidecars.write_push_info(serving_path, push_info(model_dir, input_dict, run_id or ""))
        root, model_name = os.path.split(os.path.dirname(serving_path.rstrip("/")))
        if tf.io.gfile.exists(model_config.model_config_path(root)):
            version = int(os.path.basename(serving_path))
            change = labels.set_canary(root, model_name, version)
            retry = f"`image-pipeline serving canary {version} --serving-dir {root} --model-name {model_name}`"
            logging.info("TF Serving model config: %s", change.format(retry=retry))


def push_info(model_dir: str, input_dict: dict[str, list], pipeline_run: str) -> sidecars.PushInfo:
    """What a new version records: its origin, the gate's test accuracy, the Examples it was gated on."""
    evaluations = input_dict.get(EVALUATION_KEY) or []
    examples = input_dict.get(EXAMPLES_KEY) or []
    fields: dict[str, Any] = {}
    if evaluations:
        from components.evaluation import metrics as evaluation  # TFMA: imported only where a push records its numbers

        gate = evaluation.read_gate(artifact_utils.get_single_uri(evaluations), blessed=True)
        fields.update(accuracy=gate.candidate_accuracy, test_examples=gate.test_examples)
    if examples:
        fields.update(examples_uri=examples[0].uri, span=examples[0].get_int_custom_property("span"))
    return sidecars.PushInfo(pipeline_run=pipeline_run, model_uri=model_dir, pushed_at=sidecars.utc_now(), **fields)
