"""The Kubeflow target: golden compiled spec, KFP proto validation, images, resources, parameters."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import backend_rules, runner
from pipeline.cli import main as cli
from pipeline.config.pipeline_config import ConfigError, load_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG = os.path.join(ROOT, "kubeflow", "config.yaml")
GOLDEN = os.path.join(ROOT, "kubeflow", "pipeline.yaml")
IMAGE = "ghcr.io/tfx-image-transfer/pipeline:0.1.0"  # as in the Makefile's compile target


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = str(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")
    result = CliRunner().invoke(cli.main, ["compile", "--config", CONFIG, "--image", IMAGE, "--output", output])
    assert result.exit_code == 0, result.output
    with open(output) as handle:
        text = handle.read()
    return {"text": text, "spec": yaml.safe_load(text)}


def _parameter(spec: dict, task: str, name: str) -> str:
    return spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def test_recompiling_matches_the_checked_in_spec(compiled: dict) -> None:
    with open(GOLDEN) as handle:
        assert compiled["text"] == handle.read(), "kubeflow/pipeline.yaml is stale: run `make compile`"


def test_spec_is_a_valid_kfp_pipeline_spec(compiled: dict) -> None:
    spec = json_format.ParseDict(compiled["spec"], pipeline_spec_pb2.PipelineSpec())  # unknown fields fail
    assert spec.pipeline_info.name == "image-transfer"
    assert set(spec.root.dag.tasks) >= {"FileBasedExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"}


def test_parameters_reach_the_executor_as_the_kfp_2_launcher_passes_them(compiled: dict) -> None:
    # Schema 2.1.0: constants the KFP 2.x driver resolves (it refuses 2.0.0's constantValue), and the
    # inputs spec the TFX entrypoint needs to read executorInput.inputs.parameterValues.
    spec = compiled["spec"]
    assert spec["schemaVersion"] == "2.1.0"
    assert "constantValue" not in compiled["text"]
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if label != "IngestSnapshot_executor":
            assert "--json_serialized_inputs_spec_args" in executor["container"]["args"]


def test_open_source_kfp_accepts_the_spec(compiled: dict) -> None:
    # No resolver or customJob executor (argocompiler/dag.go refuses them), no lifecycle hook (never run there).

    spec = compiled["spec"]
    assert backend_rules.open_source_errors(spec) == []
    assert backend_rules.lifecycle_hooks(spec) == []
    assert {kind for executor in spec["deploymentSpec"]["executors"].values() for kind in executor} == {"container"}
    assert "resolver" not in compiled["text"] and "lifecycle" not in compiled["text"]


def test_the_example_gen_reads_span_and_fingerprint_from_the_snapshot_step(compiled: dict) -> None:
    # The ExampleGen's cache key (input parameter values) changes exactly when the span's files do.
    tasks = compiled["spec"]["root"]["dag"]["tasks"]
    gen = tasks["FileBasedExampleGen"]
    assert "IngestSnapshot" in gen["dependentTasks"]
    for key in ("input_config", "span", "input_fingerprint"):
        assert gen["inputs"]["parameters"][key]["taskOutputParameter"]["producerTask"] == "IngestSnapshot"
    snapshot = tasks["IngestSnapshot"]["inputs"]["parameters"]
    assert "span-{SPAN:4}/*/*" in snapshot["input_config"]["runtimeValue"]["constant"]
    args = compiled["spec"]["deploymentSpec"]["executors"]["FileBasedExampleGen_executor"]["container"]["args"]
    types = json.loads(args[args.index("--json_serialized_inputs_spec_args") + 1])["parameters"]
    assert types["span"] == {"parameterType": "NUMBER_INTEGER"}  # TFX's entrypoint reads span as an int


def test_the_evaluator_baseline_is_the_served_model_step(compiled: dict) -> None:
    tasks = compiled["spec"]["root"]["dag"]["tasks"]
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]
    assert baseline == {"producerTask": "served_model", "outputArtifactKey": "model"}
    assert _parameter(compiled["spec"], "served_model", "serving_model_dir") == (
        "gs://image-transfer-data/serving/image_classifier"
    )


def test_the_pipeline_root_is_in_the_spec(compiled: dict) -> None:
    assert compiled["spec"]["defaultPipelineRoot"] == load_config(CONFIG, {}).pipeline_root


def test_the_steps_that_look_at_the_world_never_reuse_a_cached_result(compiled: dict) -> None:
    # A cached Pusher would not notice a lost serving directory, a cached served-model step would hand
    # the gate yesterday's baseline, a cached snapshot would miss a new drop (pipeline/graph/uncached_nodes.py).
    tasks = compiled["spec"]["root"]["dag"]["tasks"]
    caching = {name: task["cachingOptions"]["enableCache"] for name, task in tasks.items() if "cachingOptions" in task}
    for name in ("Pusher", "served_model", "IngestSnapshot"):
        assert caching.pop(name) is False
    assert caching and all(caching.values()), caching


def test_uncaching_an_unknown_task_fails() -> None:
    spec = {"root": {"dag": {"tasks": {"Pusher": {"cachingOptions": {"enableCache": True}}}}}}
    assert runner.with_uncached_tasks(spec, ["Pusher"])["root"]["dag"]["tasks"]["Pusher"]["cachingOptions"] == {
        "enableCache": False
    }
    assert spec["root"]["dag"]["tasks"]["Pusher"]["cachingOptions"] == {"enableCache": True}  # input untouched
    with pytest.raises(ValueError, match=r"No task \['Pushr'\].*'Pusher'"):
        runner.with_uncached_tasks(spec, ["Pushr"])


def test_every_step_runs_the_pinned_image(compiled: dict) -> None:
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    containers = {label: executor["container"] for label, executor in executors.items()}
    assert len(containers) == 12  # the graph's 11 steps (the BulkInferrer among them) and the IngestSnapshot
    assert {container["image"] for container in containers.values()} == {IMAGE}
    assert containers.pop("IngestSnapshot_executor")["command"] == [
        "python",
        "-m",
        "components.ingest_snapshot.executor",
    ]
    assert all("kubeflow_v2_run_executor" in " ".join(container["command"]) for container in containers.values())


def test_only_the_trainer_gets_a_gpu(compiled: dict) -> None:
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    trainer = executors["Trainer_executor"]["container"]["resources"]
    assert trainer["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    assert (trainer["cpuLimit"], trainer["memoryLimit"]) == (8.0, 32.0)
    others = [
        e["container"].get("resources", {})
        for n, e in executors.items()
        if n != "Trainer_executor" and "container" in e
    ]
    assert all("accelerator" not in resources for resources in others)
    assert {(r.get("cpuLimit"), r.get("memoryLimit")) for r in others} == {(2.0, 8.0)}


def test_with_tuning_on_the_tuner_gets_the_trainers_gpu(tmp_path: object) -> None:
    config = load_config(CONFIG, {"tuning.trials": 4, "tuning.algorithm": "hyperband"})
    kubeflow = runner.KubeflowConfig(
        image=IMAGE, output=f"{tmp_path}/pipeline.yaml", trainer_gpu_count=2, trainer_cpu=6.0, trainer_memory_gib=24.0
    )
    with open(runner.compile_pipeline(config, kubeflow)) as handle:
        spec = yaml.safe_load(handle)
    executors = spec["deploymentSpec"]["executors"]
    resources = {label.removesuffix("_executor"): e["container"]["resources"] for label, e in executors.items()}
    assert {name for name, limits in resources.items() if "accelerator" in limits} == {"Tuner", "Trainer"}
    assert resources["Tuner"] == resources["Trainer"]
    assert resources["Tuner"] == {
        "accelerator": {"type": "nvidia.com/gpu", "count": "2"},
        "cpuLimit": 6.0,
        "memoryLimit": 24.0,
    }
    # The trials run the installed user module, on train and validation; the Trainer takes their best values.
    assert _parameter(spec, "Tuner", "tuner_fn") == "components.modules.tuner.tuner_fn"
    assert json.loads(_parameter(spec, "Tuner", "train_args")) == {"splits": ["train"]}
    assert json.loads(_parameter(spec, "Tuner", "eval_args")) == {"splits": ["validation"]}
    assert json.loads(_parameter(spec, "Tuner", "custom_config"))["tuning"]["trials"] == 4
    trainer_inputs = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["artifacts"]["hyperparameters"]
    assert trainer_inputs["taskOutputArtifact"] == {
        "producerTask": "Tuner",
        "outputArtifactKey": "best_hyperparameters",
    }
    assert backend_rules.open_source_errors(spec) == []


def _steps_without_limits(executors: dict) -> list[str]:
    return [
        name
        for name, executor in executors.items()
        if "container" in executor
        and not {"cpuLimit", "memoryLimit"} <= set(executor["container"].get("resources", {}))
    ]


def test_every_container_step_has_cpu_and_memory_limits(compiled: dict) -> None:
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    assert _steps_without_limits(executors) == []
    # The compiler drops with_platform_config for ExampleGen (tensorflow/tfx#6146); compile_pipeline sets it.
    assert executors["FileBasedExampleGen_executor"]["container"]["resources"] == {"cpuLimit": 2.0, "memoryLimit": 8.0}


def test_missing_resources_are_filled_and_others_kept() -> None:
    kubeflow = runner.KubeflowConfig(image=IMAGE, default_cpu=3.0, default_memory_gib=12.0)
    spec = {
        "components": {
            "Gen": {"executorLabel": "Gen_executor"},
            "Trainer": {"executorLabel": "Trainer_executor"},
        },
        "deploymentSpec": {
            "executors": {
                "Gen_executor": {"container": {"image": IMAGE}},
                "Trainer_executor": {"container": {"image": IMAGE, "resources": {"cpuLimit": 1.0}}},
                "Importer_executor": {"importer": {}},
            }
        },
    }
    filled = runner.with_missing_resources(spec, kubeflow)["deploymentSpec"]["executors"]
    assert filled["Gen_executor"]["container"]["resources"] == {"cpuLimit": 3.0, "memoryLimit": 12.0}
    assert filled["Trainer_executor"]["container"]["resources"] == {"cpuLimit": 1.0}
    assert filled["Importer_executor"] == {"importer": {}}
    assert "resources" not in spec["deploymentSpec"]["executors"]["Gen_executor"]["container"]  # input untouched


def test_parameters_come_from_the_config_and_code_from_the_image(compiled: dict) -> None:
    spec = compiled["spec"]
    config = load_config(CONFIG, {})
    trainer_config = json.loads(_parameter(spec, "Trainer", "custom_config"))
    assert trainer_config == json.loads(json.dumps(config.trainer.model_dump(mode="json")))
    assert _parameter(spec, "Trainer", "run_fn") == "components.modules.trainer.run_fn"
    assert _parameter(spec, "Transform", "preprocessing_fn") == "components.modules.transform.preprocessing_fn"
    tasks = spec["root"]["dag"]["tasks"]
    assert "module_file" not in tasks["Trainer"]["inputs"]["parameters"]
    assert _parameter(spec, "FileBasedExampleGen", "input_base") == "gs://image-transfer-data/images"
    assert _parameter(spec, "IngestSnapshot", "input_base") == "gs://image-transfer-data/images"
    assert "span-{SPAN:4}/*/*" in _parameter(spec, "IngestSnapshot", "input_config")
    assert "gs://image-transfer-data/serving/image_classifier" in _parameter(spec, "Pusher", "push_destination")
    assert _parameter(spec, "ImportSchemaGen", "schema_file") == "/app/schemas/schema.pbtxt"
    assert spec["sdkVersion"] == "tfx-1.21.0"
    assert not any(path in compiled["text"] for path in (os.path.abspath(ROOT), "/tmp/"))


def test_trainer_reads_train_and_validation_and_the_evaluator_only_test(compiled: dict) -> None:
    spec = compiled["spec"]
    assert json.loads(_parameter(spec, "Trainer", "train_args")) == {"splits": ["train"]}
    assert json.loads(_parameter(spec, "Trainer", "eval_args")) == {"splits": ["validation"]}
    assert json.loads(_parameter(spec, "Evaluator", "example_splits")) == ["test"]
    splits = json.loads(_parameter(spec, "FileBasedExampleGen", "output_config"))["split_config"]["splits"]
    assert [split["name"] for split in splits] == ["train", "validation", "test"]


def test_json_output_is_a_pipeline_job_with_every_limit(tmp_path: object) -> None:
    config = load_config(CONFIG, {})
    kubeflow = runner.KubeflowConfig(
        image=IMAGE, output=f"{tmp_path}/job.json", default_cpu=3.0, default_memory_gib=12.0
    )
    output = runner.compile_pipeline(config, kubeflow)
    with open(output) as handle:
        job = json_format.Parse(handle.read(), pipeline_spec_pb2.PipelineJob(), ignore_unknown_fields=False)
    assert job.display_name == "image-transfer"
    assert job.runtime_config.gcs_output_directory == config.pipeline_root
    spec = json_format.MessageToDict(job.pipeline_spec)
    assert spec["root"]["dag"]["tasks"]["Pusher"]["cachingOptions"] == {"enableCache": False}
    executors = spec["deploymentSpec"]["executors"]
    assert _steps_without_limits(executors) == []
    assert executors["FileBasedExampleGen_executor"]["container"]["resources"] == {"cpuLimit": 3.0, "memoryLimit": 12.0}


@pytest.mark.parametrize("image", ["ghcr.io/x/pipeline:latest", "ghcr.io/x/pipeline", "bad image:1"])
def test_unpinned_images_are_refused(image: str) -> None:
    with pytest.raises(ConfigError, match="pinned"):
        runner.KubeflowConfig(image=image)


def test_the_dry_run_refuses_cluster_paths_before_compiling() -> None:
    result = CliRunner().invoke(cli.main, ["kubeflow-dry-run", "--config", CONFIG])
    assert result.exit_code != 0
    assert "needs local folders" in result.output and "gs://image-transfer-data/images" in result.output
