"""The served-model step's ``Do``: copy the served version into the gate's baseline Model.

The served version is the ``stable`` label of the TF Serving model config where
it labels one, else the newest complete version (``components/serving/labels.py``,
``served_version``): what clients get. Its SavedModel is copied into the output
artifact's ``Format-Serving`` folder, where the Evaluator looks for a model, and
what its push recorded (test accuracy and test images, ``components/serving/sidecars.py``)
goes on the artifact. With nothing served yet the artifact is empty and marked
``served_version`` 0; the gate's Evaluator then runs without a baseline, as on a first run
(``components/gate_evaluator/component.py``).

The second output, ``test_examples``, is the served version's own test split: the
Pusher records the Examples each version was gated on (``examples_uri`` in its
push info), and this step copies their ``Split-test``. Empty (``served_version`` 0)
when nothing is served or the version recorded no examples.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import io_utils, path_utils

from components.serving import labels, repository, sidecars

MODEL_KEY = "model"
TEST_EXAMPLES_KEY = "test_examples"
TEST_SPLIT = "test"  # components/ingest/splits.py's name; the Examples' folder is Split-test
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
    served = labels.served_version(serving_root, model_name)
    if served is None:
        return None
    version, served_by = served
    version_dir = repository.version_path(serving_model_dir, version)
    info = sidecars.read_push_info(version_dir)
    return version_dir, ServedBaseline(
        version=version,
        served_by=served_by,
        push_accuracy=info.accuracy,
        push_test_examples=info.test_examples,
        examples_uri=info.examples_uri or "",
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
        _record_baseline(model, served)
        logging.info("Served model: version %s (%s) is the gate's baseline.", version_dir, served.served_by)
        copied = _copy_test_split(served.examples_uri, test_examples.uri)
        test_examples.set_int_custom_property(SERVED_VERSION, served.version if copied else 0)


def _record_baseline(model: Artifact, served: ServedBaseline) -> None:
    """Puts what ``ServedBaseline.from_artifact`` reads on the Model artifact."""
    model.set_int_custom_property(SERVED_VERSION, served.version)
    model.set_string_custom_property(SERVED_BY, served.served_by)
    if served.push_accuracy is not None:
        model.set_float_custom_property(PUSH_ACCURACY, served.push_accuracy)
    if served.push_test_examples is not None:
        model.set_int_custom_property(PUSH_TEST_EXAMPLES, served.push_test_examples)


def _copy_test_split(examples_uri: str, output_uri: str) -> bool:
    """Copies ``<examples_uri>/Split-test`` into ``output_uri``; False if there is none (not recorded, deleted)."""
    source = os.path.join(examples_uri, f"Split-{TEST_SPLIT}") if examples_uri else ""  # TFX's split layout
    if not source or not tf.io.gfile.isdir(source):
        logging.info("Served model: no test split recorded with it (%r); only this run's test split gates.", source)
        return False
    io_utils.copy_dir(source, os.path.join(output_uri, f"Split-{TEST_SPLIT}"))
    return True
