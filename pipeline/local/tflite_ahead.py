"""The candidate's TFLite conversion started when the Trainer finishes, not when the Pusher runs.

LocalDagRunner runs one step at a time in this process (the loop over
``pipeline.nodes`` in tfx/orchestration/local/local_dag_runner.py, ``run_with_ir``),
and the BulkInferrer and the two Evaluators that follow the Trainer keep about one of
two cores busy. The Pusher's conversion (4 s of a 2k-image run on 2 cores,
benchmarks/README.md, "Fixed cost") can run beside them: after the Trainer's launch
returns, this starts ``tflite.convert_ahead`` on the exported model, and the Pusher's
``tflite.export_files`` takes that result. Nothing is decided here: the Pusher still
converts only what it pushes, and converts itself when nothing was started (a
Kubeflow step, a cached Trainer).

It is not started where the Pusher would not convert: ``tflite: none``, a Trainer
that did not run (cached), or a model the newest served version already holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from tfx.orchestration.portable import launcher
from tfx.utils import path_utils

from components.modules import log_names
from components.serving import repository as serving_dir
from components.serving import tflite
from pipeline.graph import node_ids

_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.tflite")


def start_after_trainer(execution_info: Any, variant: tflite.TfliteVariant, push_dir: str) -> bool:
    """Starts the conversion of the model a Trainer execution just exported.

    Args:
      execution_info: What ``Launcher.launch`` returned for the Trainer (None: it did not run).
      variant: The configured TFLite variant.
      push_dir: The serving directory the Pusher pushes to (``<serving_dir>/<model_name>``).

    Returns:
      Whether a conversion was started.
    """
    model_dir = _model_dir(execution_info)
    if variant == "none" or not model_dir:
        return False
    if not os.path.isdir(model_dir) or serving_dir.serving_already(push_dir, model_dir):
        return False
    return tflite.convert_ahead(model_dir, variant)


def _model_dir(execution_info: Any) -> str:
    """The SavedModel folder of a Trainer execution's model, as the Pusher's ``GetModelPath`` finds it."""
    models = (execution_info.output_dict.get("model") or []) if execution_info else []
    if not models:
        return ""
    return path_utils.serving_model_path(models[0].uri, path_utils.is_old_model_artifact(models[0]))


@contextlib.contextmanager
def converting_after_trainer(variant: tflite.TfliteVariant, push_dir: str) -> Iterator[None]:
    """While the block runs, a Trainer launched in this process starts its model's TFLite conversion.

    When the block ends, a conversion no push took (the gate refused the model, or the
    Pusher held it back) is discarded.
    """
    original = launcher.Launcher.launch
    started: list[str] = []

    def launch(self: launcher.Launcher) -> Any:
        info = original(self)
        node_id = self._pipeline_node.node_info.id  # noqa: SLF001 (the launcher keeps its node there)
        if node_id == node_ids.TRAINER and _ran(info):
            try:
                if start_after_trainer(info, variant, push_dir):
                    started.append(_model_dir(info))
            except Exception:  # noqa: BLE001 (an optimisation: the Pusher converts itself)
                logging.warning("Could not start the TFLite conversion early; the Pusher converts.", exc_info=True)
        return info

    launcher.Launcher.launch = launch
    try:
        yield
    finally:
        if launcher.Launcher.launch is launch:  # not another run's wrapper, installed since
            launcher.Launcher.launch = original
        for model_dir in started:
            if tflite.discard_ahead(model_dir, variant):
                _file_log.info("TFLite (%s): the conversion of %s was not pushed; discarded.", variant, model_dir)


def _ran(info: Any) -> bool:
    """Whether the launch executed the step: only then has it an executor output URI (the launcher's
    ``_prepare_execution``: a cached step's info names new output artifacts that nothing wrote)."""
    return info is not None and bool(getattr(info, "execution_output_uri", None))
