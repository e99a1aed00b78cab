"""The gate's baseline: the model the serving directory serves now, as a Model artifact.

A plain container step (no resolver executor, no MLMD query), so the same
compiled spec runs on open-source Kubeflow Pipelines, whose Argo compiler refuses
resolver executors (kubeflow/pipelines ``backend/src/v2/compiler/argocompiler/dag.go``:
"resolver executors not implemented"), on Vertex AI Pipelines and locally.

The served version is the ``stable`` label of the TF Serving model config where
it labels one, else the newest complete version (``pipeline/serving_ops.py``,
``served_version``): what clients get. Its SavedModel is copied into the output
artifact's ``Format-Serving`` folder, where the Evaluator looks for a model, and
what its push recorded (test accuracy and test images) goes on the artifact.
With nothing served yet the artifact is empty and marked ``served_version`` 0;
the gate's Evaluator then runs without a baseline, as on a first run
(``components/gate_evaluator.py``).

Its second output, ``test_examples``, is the served version's own test split: the
Pusher records the Examples each version was gated on (``examples_uri`` in its
push info), and this step copies their ``Split-test``. A second Evaluator judges
the candidate against the served model there too, so a regression on the images
that made the served model's case blocks the push. Empty (``served_version`` 0)
when nothing is served or the version recorded no examples.

The step looks at the serving directory on every run: it is never cached
(``pipeline/uncached_nodes.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, channel_utils, component_spec, standard_artifact_utils, standard_artifacts
from tfx.types.artifact import Artifact
from tfx.utils import io_utils, path_utils

from pipeline import serving_ops  # the TF Serving model config (labels) lives with the serving commands

SERVED_MODEL_ID = "served_model"
MODEL_KEY = "model"
TEST_EXAMPLES_KEY = "test_examples"
TEST_SPLIT = "test"  # components/splits.py's name; the Examples' folder is Split-test
SERVING_MODEL_DIR_KEY = "serving_model_dir"
# Custom properties of the output Model artifact.
SERVED_VERSION = "served_version"  # 0: nothing is served
SERVED_BY = "served_by"  # "stable label" or "newest version"
PUSH_ACCURACY = "push_accuracy"  # the version's test accuracy when it was pushed
PUSH_TEST_EXAMPLES = "push_test_examples"  # ... measured on this many test images


@dataclasses.dataclass(frozen=True)
class ServedBaseline:
    """What the served-model step handed to the gate.

    Attributes:
      version: The served version (0: none).
      served_by: Why that version (``stable label``, ``newest version``; empty if none).
      push_accuracy: Its test accuracy at push time, if recorded.
      push_test_examples: The test images that accuracy was measured on.
      examples_uri: The Examples artifact its gate read (its ``Split-test``), if recorded.
    """

    version: int
    served_by: str = ""
    push_accuracy: float | None = None
    push_test_examples: int | None = None
    examples_uri: str = ""

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> ServedBaseline:
        """Reads the properties the step recorded on its Model artifact (MLMD or KFP metadata)."""

        def optional(key: str, read: Any) -> Any:
            return read(key) if artifact.has_custom_property(key) else None

        examples = optional(PUSH_TEST_EXAMPLES, artifact.get_int_custom_property)
        return cls(
            version=artifact.get_int_custom_property(SERVED_VERSION),
            served_by=artifact.get_string_custom_property(SERVED_BY),
            push_accuracy=optional(PUSH_ACCURACY, artifact.get_float_custom_property),
            push_test_examples=examples,
        )


def is_empty(artifact: Artifact) -> bool:
    """Whether a Model artifact is this step's "nothing is served" answer."""
    return artifact.has_custom_property(SERVED_VERSION) and not artifact.get_int_custom_property(SERVED_VERSION)


def find_served(serving_model_dir: str) -> tuple[str, ServedBaseline] | None:
    """The served version folder under ``<serving_dir>/<model>`` and what its push recorded; None if none."""
    serving_root, model_name = os.path.split(serving_model_dir.rstrip("/"))
    served = serving_ops.served_version(serving_root, model_name)
    if served is None:
        return None
    version, served_by = served
    version_dir = os.path.join(serving_model_dir, str(version))
    info = serving_ops.read_push_info(version_dir)
    accuracy, examples = info.get("accuracy"), info.get("test_examples")
    return version_dir, ServedBaseline(
        version=version,
        served_by=served_by,
        push_accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
        push_test_examples=int(examples) if isinstance(examples, int) else None,
        examples_uri=str(info.get("examples_uri") or ""),
    )


class ServedModelExecutor(base_executor.BaseExecutor):
    """Copies the served version into the output Model artifact (or leaves it empty)."""

    def Do(  # noqa: N802 (TFX API)
        self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]
    ) -> None:
        """Finds the served version under ``serving_model_dir`` and records it, with its test split."""
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        test_examples = artifact_utils.get_single_instance(output_dict[TEST_EXAMPLES_KEY])
        test_examples.split_names = standard_artifact_utils.encode_split_names([TEST_SPLIT])
        base = exec_properties[SERVING_MODEL_DIR_KEY]
        found = find_served(base)
        if found is None:
            logging.info("Served model: none under %s yet; the gate runs without a baseline.", base)
            model.set_int_custom_property(SERVED_VERSION, 0)
            test_examples.set_int_custom_property(SERVED_VERSION, 0)
            return
        version_dir, served = found
        io_utils.copy_dir(version_dir, path_utils.serving_model_dir(model.uri))
        model.set_int_custom_property(SERVED_VERSION, served.version)
        model.set_string_custom_property(SERVED_BY, served.served_by)
        if served.push_accuracy is not None:
            model.set_float_custom_property(PUSH_ACCURACY, served.push_accuracy)
        if served.push_test_examples is not None:
            model.set_int_custom_property(PUSH_TEST_EXAMPLES, served.push_test_examples)
        logging.info("Served model: version %s (%s) is the gate's baseline.", version_dir, served.served_by)
        copied = _copy_test_split(served.examples_uri, test_examples.uri)
        test_examples.set_int_custom_property(SERVED_VERSION, served.version if copied else 0)


def _copy_test_split(examples_uri: str, output_uri: str) -> bool:
    """Copies ``<examples_uri>/Split-test`` into ``output_uri``; False if there is none (not recorded, deleted)."""
    source = os.path.join(examples_uri, f"Split-{TEST_SPLIT}") if examples_uri else ""  # TFX's split layout
    if not source or not tf.io.gfile.isdir(source):
        logging.info("Served model: no test split recorded with it (%r); only this run's test split gates.", source)
        return False
    io_utils.copy_dir(source, os.path.join(output_uri, f"Split-{TEST_SPLIT}"))
    return True


class ServedModelSpec(component_spec.ComponentSpec):
    """No inputs: the serving directory is the input, read on every run."""

    PARAMETERS = {SERVING_MODEL_DIR_KEY: component_spec.ExecutionParameter(type=str)}
    INPUTS: dict[str, Any] = {}
    OUTPUTS = {
        MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        TEST_EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
    }


class ServedModel(base_component.BaseComponent):
    """The model the serving directory serves now, as the gate's baseline Model."""

    SPEC_CLASS = ServedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServedModelExecutor)

    def __init__(self, serving_model_dir: str) -> None:
        """Reads ``<serving_dir>/<model_name>`` through ``tf.io.gfile``: a local path, a PVC or a bucket."""
        spec = ServedModelSpec(
            serving_model_dir=serving_model_dir,
            model=channel_utils.as_channel([standard_artifacts.Model()]),
            test_examples=channel_utils.as_channel([standard_artifacts.Examples()]),
        )
        super().__init__(spec=spec)


def create_served_model(serving_model_dir: str) -> ServedModel:
    """The ``served_model`` node."""
    return ServedModel(serving_model_dir).with_id(SERVED_MODEL_ID)
