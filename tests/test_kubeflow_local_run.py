"""The compiled Kubeflow spec runs: each task through its own container command, on a local pipeline root.

kubeflow/local_harness.py gives each task the executorInput KFP's launcher would
and runs ``python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``
(and the ExampleGen driver) as compiled; its docstring lists what it does not reproduce.
"""

from __future__ import annotations

import copy
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components import serving_dir
from kubeflow import local_harness
from tests.helpers import encode, noise_folder, solid, tiny_run_config

pytestmark = pytest.mark.slow

CONTAINER_TASKS = {
    "FileBasedExampleGen",
    "ImportSchemaGen",
    "StatisticsGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
}
RESOLVER_TASKS = {
    "latest_blessed_model_resolver-model-blessing-resolver",
    "latest_blessed_model_resolver-model-resolver",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny pipeline compiled as `make compile` does, reading the newest of two spans."""
    root = str(tmp_path_factory.mktemp("kfp_local"))
    noise_folder(os.path.join(root, "data", "span-0001"), ("cats", "dogs"), per_class=3, size=40, seed=1)
    noise_folder(os.path.join(root, "data", "span-0002"), ("cats", "dogs"), per_class=10, size=40, seed=0)
    config = tiny_run_config(root, input_pattern="span-{SPAN:4}/*/*")
    spec = local_harness.compile_for_local_run(config, os.path.join(root, "pipeline.yaml"))
    return {"config": config, "spec": spec}


@pytest.fixture(scope="module")
def first_run(compiled: dict) -> local_harness.RunResult:
    return local_harness.run_spec(compiled["spec"])


def test_every_task_runs_through_its_container_command(first_run: local_harness.RunResult, compiled: dict) -> None:
    assert compiled["spec"]["defaultPipelineRoot"] == compiled["config"].pipeline_root
    states = {name: task.state for name, task in first_run.tasks.items()}
    assert states == {**dict.fromkeys(CONTAINER_TASKS, "ran"), **dict.fromkeys(RESOLVER_TASKS, "resolved")}
    assert first_run.tasks["latest_blessed_model_resolver-model-resolver"].outputs == {"model": []}  # first run
    trainer = first_run.tasks["Trainer"].executor_input
    assert trainer["inputs"]["parameterValues"]["run_fn"] == "components.modules.trainer.run_fn"
    transformed = trainer["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert transformed == first_run.artifact("Transform", "transformed_examples")
    model = first_run.artifact("Trainer", "model")
    assert tf.io.gfile.exists(os.path.join(model["uri"], "Format-Serving", "saved_model.pb"))


def test_the_driver_resolves_the_newest_span(first_run: local_harness.RunResult) -> None:
    parameters = first_run.tasks["FileBasedExampleGen"].executor_input["inputs"]["parameterValues"]
    assert "span-0002/*/*" in parameters["input_config"] and parameters["span"] == 2
    examples = first_run.artifact("FileBasedExampleGen", "examples")["metadata"]
    assert examples["custom:span"] == 2  # the driver's custom property, clashing with the type's own `span`
    assert (examples["files_seen"], examples["ingested"]) == (20, 20)  # span 2 only


def test_the_pushed_model_answers_for_a_real_image(first_run: local_harness.RunResult, compiled: dict) -> None:
    pushed = first_run.artifact("Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1
    base = compiled["config"].model_push_dir
    assert serving_dir.list_versions(base) == [int(pushed["pushed_version"])]
    assert pushed["pushed_destination"] == os.path.join(base, pushed["pushed_version"])
    model = tf.saved_model.load(pushed["pushed_destination"])
    image = encode(solid((200, 10, 10), size=40), "PNG")
    outputs = model.signatures["serving_default"](image_bytes=tf.constant([image]))
    assert {name.decode() for name in outputs["classes"].numpy().ravel()} == {"cats", "dogs"}
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(), 1.0, rtol=1e-4)


def test_a_wrong_user_code_path_fails_the_run(first_run: local_harness.RunResult, compiled: dict) -> None:
    spec = copy.deepcopy(compiled["spec"])
    run_fn = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["run_fn"]["runtimeValue"]
    run_fn["constant"] = "components.modules.trainer.no_such_run_fn"
    with pytest.raises(local_harness.TaskFailedError, match=r"(?s)Task Trainer failed.*no_such_run_fn"):
        local_harness.run_spec(spec)  # ExampleGen to Transform come from the cache


def test_a_rerun_reuses_the_cache_and_the_pusher_restores_a_lost_serving_dir(
    first_run: local_harness.RunResult, compiled: dict
) -> None:
    shutil.rmtree(compiled["config"].serving_dir)
    rerun = local_harness.run_spec(compiled["spec"])
    states = {name: task.state for name, task in rerun.tasks.items()}
    assert states == {
        **dict.fromkeys(CONTAINER_TASKS - {"Evaluator", "Pusher"}, "cached"),
        **dict.fromkeys(RESOLVER_TASKS, "resolved"),
        "Evaluator": "ran",  # its baseline is now the first run's blessed model
        "Pusher": "ran",  # never cached
    }
    assert rerun.artifact("latest_blessed_model_resolver-model-resolver", "model") == first_run.artifact(
        "Trainer", "model"
    )
    pushed = rerun.artifact("Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1 and os.path.isfile(os.path.join(pushed["pushed_destination"], "saved_model.pb"))
