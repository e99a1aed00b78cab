"""Scheduled retraining through the compiled Kubeflow spec, by open-source KFP's rules.

kubeflow/local_harness.py gives each task the executorInput KFP's driver and
launcher would, runs its container command, computes cache keys from the fields
of the backend's ``cache.go``, never runs ``lifecycle`` hooks and refuses resolver
executors (its docstring lists what it does not reproduce). Four nightly runs of
one compiled spec over one pipeline root and serving directory:

1. span 1 arrives: trained, gated with no baseline, pushed;
2. span 2 arrives: read, gated against span 1's served version, pushed;
3. nothing new: no ExampleGen, Transform or Trainer run, nothing pushed;
4. span 3 holds span 2's images with shuffled labels: the served model's accuracy
   on it falls far below its push-time accuracy, so the candidate is held back
   (the gate's own bounds are open here, so the data-shift rule alone decides).
"""

from __future__ import annotations

import copy
import os
import random

import numpy as np
import pytest
import tensorflow as tf

from components.pusher import component as atomic_pusher
from components.serving import repository as serving_dir
from components.serving import sidecars
from kubeflow import backend_rules, local_harness, runner
from pipeline.demo import demo
from tests.helpers import encode, solid, tiny_run_config, write

pytestmark = pytest.mark.slow

# Cached when the data is unchanged; the BulkInferrer predicts test with the Trainer's model for the card.
TRAINING = {"FileBasedExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Trainer", "BulkInferrer"}
EVERY_RUN = {"IngestSnapshot", "served_model", "Pusher"}  # never cached: they look at the data and serving dirs
GATES = {"Evaluator", "served_test_evaluator"}  # this run's test split, and the served version's
COLORS = {"red": (210, 30, 30), "blue": (30, 30, 210)}


def _drop(data_root: str, span: int, per_class: int, shuffle_labels: bool = False) -> None:
    """Solid-colour images (a tint per image, so no two are alike); optionally filed under random classes."""
    rng = random.Random(span)
    for true_label, (r, g, b) in COLORS.items():
        for index in range(per_class):
            label = rng.choice(sorted(COLORS)) if shuffle_labels else true_label
            image = solid((r + index % 40, g + index // 40 * 7, b), size=32)
            write(
                os.path.join(data_root, f"span-{span:04d}", label, f"{true_label}_{index:03d}.png"),
                encode(image, "PNG"),
            )


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = str(tmp_path_factory.mktemp("kfp_nightly"))
    config = tiny_run_config(
        root,
        trainer={
            "weights": demo.SHIPPED_WEIGHTS,
            "backbone_alpha": demo.ALPHA,
            "stage1_epochs": 5,
            "stage1_learning_rate": 0.02,
            "augmentation": "none",  # colour is the whole task
        },
        input_pattern="span-{SPAN:4}/*/*",
        max_accuracy_drop=1.0,  # the change threshold never blocks: run 4 shows the data-shift rule
        # Solid colours a tint apart are near duplicates to the perceptual hash (one group per class
        # would fill one split); here each tint is its own image. Exact copies are still grouped.
        near_duplicate_distance=-1,
    )
    spec = local_harness.compile_for_local_run(config, os.path.join(root, "pipeline.yaml"))
    data_root = config.data_root
    runs = {"config": config, "spec": spec}
    _drop(data_root, 1, per_class=40)
    runs["span1"] = local_harness.run_spec(spec)
    runs["versions1"] = serving_dir.list_versions(config.model_push_dir)
    _drop(data_root, 2, per_class=48)
    runs["span2"] = local_harness.run_spec(spec)
    runs["versions2"] = serving_dir.list_versions(config.model_push_dir)
    runs["unchanged"] = local_harness.run_spec(spec)
    runs["versions3"] = serving_dir.list_versions(config.model_push_dir)
    _drop(data_root, 3, per_class=48, shuffle_labels=True)
    runs["shuffled"] = local_harness.run_spec(spec)
    runs["versions4"] = serving_dir.list_versions(config.model_push_dir)
    return runs


def _states(run: local_harness.RunResult) -> dict[str, str]:
    return {name: task.state for name, task in run.tasks.items()}


def _metadata(run: local_harness.RunResult, task: str, key: str) -> dict:
    return run.artifact(task, key)["metadata"]


def test_the_spec_has_nothing_open_source_kfp_refuses_or_ignores(nightly: dict) -> None:
    spec = nightly["spec"]
    assert backend_rules.open_source_errors(spec) == [] and backend_rules.lifecycle_hooks(spec) == []
    kinds = {kind for executor in spec["deploymentSpec"]["executors"].values() for kind in executor}
    assert kinds == {"container"}
    gen = spec["root"]["dag"]["tasks"]["FileBasedExampleGen"]["inputs"]["parameters"]
    for key in ("input_config", "span", "input_fingerprint"):
        assert gen[key] == {"taskOutputParameter": {"producerTask": "IngestSnapshot", "outputParameterKey": key}}
    uncached = {
        name for name, task in spec["root"]["dag"]["tasks"].items() if not task["cachingOptions"]["enableCache"]
    }
    assert uncached == EVERY_RUN


def test_span_1_is_trained_gated_without_a_baseline_and_pushed(nightly: dict) -> None:
    run = nightly["span1"]
    assert _states(run) == dict.fromkeys(TRAINING | EVERY_RUN | GATES | {"ImportSchemaGen"}, "ran")
    skipped = _metadata(run, "served_test_evaluator", "blessing")
    assert (skipped["blessed"], skipped["skipped"]) == (1, "no served version with a recorded test split")
    assert run.tasks["IngestSnapshot"].parameters["span"] == 1
    examples = _metadata(run, "FileBasedExampleGen", "examples")
    assert (examples["custom:span"], examples["files_seen"]) == (1, 80)
    assert examples["input_fingerprint"] == run.tasks["IngestSnapshot"].parameters["input_fingerprint"]
    assert _metadata(run, "served_model", "model")["served_version"] == 0  # nothing served yet
    pushed = _metadata(run, "Pusher", "pushed_model")
    assert (pushed["pushed"], pushed[atomic_pusher.PUSH_OUTCOME]) == (1, atomic_pusher.NEW_VERSION)
    assert nightly["versions1"] == [int(pushed["pushed_version"])]
    info = sidecars.read_push_info(pushed["pushed_destination"])
    assert info.accuracy == 1.0 and info.test_examples >= 10  # red and blue: a clear task


def test_the_pushed_model_answers_for_a_real_image(nightly: dict) -> None:
    destination = _metadata(nightly["span1"], "Pusher", "pushed_model")["pushed_destination"]
    model = tf.saved_model.load(destination)
    image = encode(solid((220, 30, 30), size=32), "PNG")
    outputs = model.signatures["serving_default"](image_bytes=tf.constant([image]))
    assert outputs["classes"].numpy().ravel()[0].decode() == "red"
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(), 1.0, rtol=1e-4)


def test_span_2_is_read_and_gated_against_the_served_version(nightly: dict) -> None:
    run = nightly["span2"]
    assert _states(run) == {**dict.fromkeys(TRAINING | EVERY_RUN | GATES, "ran"), "ImportSchemaGen": "cached"}
    assert (
        "span-0002/*/*" in run.tasks["FileBasedExampleGen"].executor_input["inputs"]["parameterValues"]["input_config"]
    )
    assert _metadata(run, "FileBasedExampleGen", "examples")["files_seen"] == 96
    served = _metadata(run, "served_model", "model")
    first_version = nightly["versions1"][0]
    assert (served["served_version"], served["served_by"]) == (first_version, "newest version")
    baseline = run.tasks["Evaluator"].executor_input["inputs"]["artifacts"]["baseline_model"]["artifacts"][0]
    assert baseline == run.artifact("served_model", "model")
    assert tf.io.gfile.exists(os.path.join(baseline["uri"], "Format-Serving", "saved_model.pb"))
    # The second gate read span 1's test split, which the served version was gated on.
    served_test = run.tasks["served_test_evaluator"].executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert served_test["metadata"]["served_version"] == first_version
    span1_examples = nightly["span1"].artifact("FileBasedExampleGen", "examples")["uri"]
    copied = sorted(os.listdir(os.path.join(served_test["uri"], "Split-test")))
    assert copied == sorted(os.listdir(os.path.join(span1_examples, "Split-test")))
    assert _metadata(run, "served_test_evaluator", "blessing")["blessed"] == 1
    pushed = _metadata(run, "Pusher", "pushed_model")
    assert pushed[atomic_pusher.PUSH_OUTCOME] == atomic_pusher.NEW_VERSION
    assert nightly["versions2"] == [first_version, int(pushed["pushed_version"])]


def test_no_new_data_trains_nothing_and_pushes_nothing(nightly: dict) -> None:
    run = nightly["unchanged"]
    states = _states(run)
    assert {name: states[name] for name in TRAINING} == dict.fromkeys(TRAINING, "cached")
    assert {name: states[name] for name in EVERY_RUN} == dict.fromkeys(EVERY_RUN, "ran")
    assert run.tasks["IngestSnapshot"].parameters == nightly["span2"].tasks["IngestSnapshot"].parameters
    pushed = _metadata(run, "Pusher", "pushed_model")
    assert pushed[atomic_pusher.PUSH_OUTCOME] == atomic_pusher.ALREADY_SERVED
    assert nightly["versions3"] == nightly["versions2"]
    # The candidate is the served model: nothing to compare on its own test split, no TFMA pass.
    assert _metadata(run, "served_test_evaluator", "blessing")["skipped"] == "the candidate is the served model"


def test_a_shuffled_label_span_is_held_back_with_its_reason(nightly: dict) -> None:
    run = nightly["shuffled"]
    assert run.tasks["Trainer"].state == "ran"
    assert _metadata(run, "served_model", "model")["served_version"] == nightly["versions2"][-1]
    pushed = _metadata(run, "Pusher", "pushed_model")
    assert pushed["pushed"] == 0
    reason = pushed[atomic_pusher.NOT_PUSHED_REASON]
    assert reason.startswith(f"data shift: the served version {nightly['versions2'][-1]} scores ")
    assert "allow_data_shift: true" in reason
    assert nightly["versions4"] == nightly["versions2"]


def test_the_dry_run_says_what_each_night_did(nightly: dict) -> None:
    from pipeline.cli.kubeflow_commands import dry_run_outcome as _dry_run_outcome

    assert _dry_run_outcome(nightly["span1"]).startswith("Pushed ")
    assert "(test accuracy 1.000 on " in _dry_run_outcome(nightly["span1"])
    assert "served model none)" in _dry_run_outcome(nightly["span1"])
    assert _dry_run_outcome(nightly["unchanged"]).startswith("Already served: ")
    assert _dry_run_outcome(nightly["shuffled"]).startswith("Held back: data shift: the served version ")


def test_a_wrong_user_code_path_fails_the_run(nightly: dict) -> None:
    spec = copy.deepcopy(nightly["spec"])
    run_fn = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["run_fn"]["runtimeValue"]
    run_fn["constant"] = "components.modules.trainer.no_such_run_fn"
    with pytest.raises(local_harness.TaskFailedError, match=r"(?s)Task Trainer failed.*no_such_run_fn"):
        local_harness.run_spec(spec)  # ExampleGen to Transform come from the cache


def test_every_trainer_gets_the_gpu(tmp_path: object) -> None:
    config = tiny_run_config(str(tmp_path), compare_from_scratch=True)
    output = os.path.join(str(tmp_path), "pipeline.yaml")
    kubeflow = runner.KubeflowConfig(image="example.com/pipeline:1.0", output=output, trainer_gpu_count=2)
    spec = local_harness.load_spec(runner.compile_pipeline(config, kubeflow))
    executors = spec["deploymentSpec"]["executors"]
    gpus = {
        label.removesuffix("_executor"): executor["container"]["resources"].get("accelerator", {}).get("count")
        for label, executor in executors.items()
    }
    assert {name for name, count in gpus.items() if count} == {"Trainer", "from_scratch_trainer"}
    assert int(gpus["Trainer"]) == int(gpus["from_scratch_trainer"]) == 2
