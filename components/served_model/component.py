"""The gate's baseline: the model the serving directory serves now, as a Model artifact.

A plain container step (no resolver executor, no MLMD query), so the same
compiled spec runs on open-source Kubeflow Pipelines, whose Argo compiler refuses
resolver executors (kubeflow/pipelines ``backend/src/v2/compiler/argocompiler/dag.go``:
"resolver executors not implemented"), on Vertex AI Pipelines and locally.

The served version is the ``stable`` label of the TF Serving model config where
it labels one, else the newest complete version; what the step hands on is in
``components/served_model/executor.py``. Its second output, ``test_examples``, is the
served version's own test split: a second Evaluator judges the candidate against the
served model there too, so a regression on the images that made the served model's
case blocks the push.

The step looks at the serving directory on every run: it is never cached
(``pipeline/graph/uncached_nodes.py``).
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, component_spec, standard_artifacts

from components.served_model.executor import (
    MODEL_KEY,
    PUSH_ACCURACY,
    PUSH_TEST_EXAMPLES,
    SERVED_BY,
    SERVED_VERSION,
    SERVING_MODEL_DIR_KEY,
    TEST_EXAMPLES_KEY,
    TEST_SPLIT,
    ServedBaseline,
    ServedModelExecutor,
    is_empty,
)

__all__ = [
    "MODEL_KEY",
    "PUSH_ACCURACY",
    "PUSH_TEST_EXAMPLES",
    "SERVED_BY",
    "SERVED_VERSION",
    "SERVING_MODEL_DIR_KEY",
    "TEST_EXAMPLES_KEY",
    "TEST_SPLIT",
    "ServedBaseline",
    "ServedModel",
    "ServedModelSpec",
    "create_served_model",
    "is_empty",
]


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
    return ServedModel(serving_model_dir)
