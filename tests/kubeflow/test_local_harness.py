"""The local harness does what the KFP 2.x driver and launcher do, checked with tiny stand-in commands.

The commands here are ``python -c`` scripts (milliseconds each); the slow
tests/kubeflow/test_kubeflow_local_run.py runs the real compiled pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import backend_rules, local_harness

# A stand-in container: logs its task name, writes each output artifact's folder and metadata file, and
# the output parameter "stamp" (the contents of the file "stamp_file") in the ExecutorOutput or its outputFile.
SCRIPT = r"""
import json, os, sys
executor_input = json.loads(sys.argv[1])
params = executor_input["inputs"].get("parameterValues", {})
with open(params["log"], "a") as handle:
    handle.write(params["task"] + "\n")
if params.get("fail"):
    print("boom: " + params["fail"])
    sys.exit(3)
output = {"artifacts": {}}
for key, listed in executor_input["outputs"].get("artifacts", {}).items():
    artifact = listed["artifacts"][0]
    with open(os.path.join(artifact["uri"], "executor_input.json"), "w") as handle:
        json.dump(executor_input, handle)
    metadata = {"made_by": params["task"]}
    output["artifacts"][key] = {"artifacts": [{"name": key, "uri": artifact["uri"], "metadata": metadata}]}
for key, target in executor_input["outputs"].get("parameters", {}).items():
    with open(params["stamp_file"]) as handle:
        stamp = handle.read()
    if params.get("via_file"):
        os.makedirs(os.path.dirname(target["outputFile"]), exist_ok=True)
        with open(target["outputFile"], "w") as handle:
            handle.write(stamp)
    else:
        output.setdefault("parameterValues", {})[key] = stamp
with open(executor_input["outputs"]["outputFile"], "w") as handle:
    json.dump(output, handle)
"""
MODEL = {"artifactType": {"schemaTitle": "tfx.Model"}}
BLESSING = {"artifactType": {"schemaTitle": "tfx.ModelBlessing"}}
PUSHED = {"artifactType": {"schemaTitle": "tfx.PushedModel"}}


def _produced(task: str, key: str) -> dict:
    return {"taskOutputArtifact": {"producerTask": task, "outputArtifactKey": key}}


def _container_task(name: str, log: str, artifacts: dict, depends: list[str], cache: bool = True) -> dict:
    return {
        "taskInfo": {"name": name},
        "componentRef": {"name": name},
        "dependentTasks": depends,
        "cachingOptions": {"enableCache": cache},
        "inputs": {
            "parameters": {"task": {"runtimeValue": {"constant": name}}, "log": {"runtimeValue": {"constant": log}}},
            "artifacts": artifacts,
        },
    }


def _component(name: str, inputs: dict, outputs: dict, output_parameters: dict | None = None) -> dict:
    parameters = {
        "task": {"parameterType": "STRING"},
        "log": {"parameterType": "STRING"},
        "fail": {"parameterType": "STRING", "isOptional": True, "defaultValue": ""},
    }
    return {
        "executorLabel": f"{name}_executor",
        "inputDefinitions": {"parameters": parameters, "artifacts": inputs},
        "outputDefinitions": {"artifacts": outputs, "parameters": output_parameters or {}},
    }


def _spec(root: str) -> dict:
    """Scout (looks at a file, never cached) -> Train (its output parameter as input) -> Evaluate -> Push."""
    log = os.path.join(root, "runs.log")
    stamp_file = os.path.join(root, "stamp.txt")
    if not os.path.exists(stamp_file):
        with open(stamp_file, "w") as handle:
            handle.write("drop-1")
    container = {"image": "img:1", "command": ["python", "-c", SCRIPT], "args": ["{{$}}"]}
    scout = _container_task("Scout", log, {}, [], cache=False)
    scout["inputs"]["parameters"]["stamp_file"] = {"runtimeValue": {"constant": stamp_file}}
    train = _container_task("Train", log, {}, ["Scout"])
    train["inputs"]["parameters"]["stamp"] = {
        "taskOutputParameter": {"producerTask": "Scout", "outputParameterKey": "stamp"}
    }
    components = {
        "Scout": _component("Scout", {}, {}, {"stamp": {"parameterType": "STRING"}}),
        "Train": _component("Train", {}, {"model": MODEL}),
        "Evaluate": _component("Evaluate", {"model": MODEL}, {"blessing": BLESSING}),
        "Push": _component("Push", {"model": MODEL, "blessing": BLESSING}, {"pushed": PUSHED}),
    }
    components["Scout"]["inputDefinitions"]["parameters"]["stamp_file"] = {"parameterType": "STRING"}
    components["Train"]["inputDefinitions"]["parameters"]["stamp"] = {"parameterType": "STRING"}
    return {
        "pipelineInfo": {"name": "toy"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "test",
        "defaultPipelineRoot": os.path.join(root, "pipeline_root"),
        "components": components,
        "deploymentSpec": {
            "executors": {f"{name}_executor": {"container": copy.deepcopy(container)} for name in components}
        },
        "root": {
            "dag": {
                "tasks": {
                    "Push": _container_task(
                        "Push",
                        log,
                        {"model": _produced("Train", "model"), "blessing": _produced("Evaluate", "blessing")},
                        ["Evaluate", "Train"],
                        cache=False,
                    ),
                    "Evaluate": _container_task("Evaluate", log, {"model": _produced("Train", "model")}, ["Train"]),
                    "Train": train,
                    "Scout": scout,
                }
            }
        },
    }


def _runs(root: str) -> list[str]:
    with open(os.path.join(root, "runs.log")) as handle:
        return handle.read().split()


def test_each_command_gets_the_launchers_executor_input(tmp_path: object) -> None:
    root = str(tmp_path)
    result = local_harness.run_spec(_spec(root))
    assert list(result.tasks) == ["Scout", "Train", "Evaluate", "Push"]
    assert result.run_root.startswith(os.path.join(root, "pipeline_root", "toy") + os.sep)
    evaluate = result.tasks["Evaluate"].executor_input
    # Constants, then the optional input's default (the launcher's addDefaultParams).
    assert evaluate["inputs"]["parameterValues"] == {"task": "Evaluate", "log": f"{root}/runs.log", "fail": ""}
    # Upstream outputs as recorded: MLMD-style name, the uri, the command's metadata merged in.
    trained = result.artifact("Train", "model")
    assert evaluate["inputs"]["artifacts"]["model"]["artifacts"] == [trained]
    assert trained["name"] == "1" and trained["metadata"] == {"made_by": "Train"}
    assert trained["type"] == {"schemaTitle": "tfx.Model"}
    # Outputs under <root>/<pipeline>/<run>/<task>/<uuid>/<key>, the metadata file beside them.
    (blessing,) = evaluate["outputs"]["artifacts"]["blessing"]["artifacts"]
    assert re.fullmatch(re.escape(result.run_root) + r"/Evaluate/[0-9a-f]{32}/blessing", blessing["uri"])
    assert evaluate["outputs"]["outputFile"] == os.path.join(os.path.dirname(blessing["uri"]), "output_metadata.json")
    # The command got exactly this JSON in place of {{$}}.
    with open(os.path.join(blessing["uri"], "executor_input.json")) as handle:
        assert json.load(handle) == evaluate
    # An output parameter reaches the task that reads it (taskOutputParameter).
    assert result.tasks["Scout"].parameters == {"stamp": "drop-1"}
    assert result.tasks["Train"].executor_input["inputs"]["parameterValues"]["stamp"] == "drop-1"
    scout_outputs = result.tasks["Scout"].executor_input["outputs"]
    assert scout_outputs["parameters"]["stamp"]["outputFile"].endswith("/outputs/stamp")


def _states(result: local_harness.RunResult) -> dict[str, str]:
    return {name: task.state for name, task in result.tasks.items()}


def test_a_rerun_reuses_cached_tasks_and_a_new_parameter_value_runs_them_again(tmp_path: object) -> None:
    root = str(tmp_path)
    first = local_harness.run_spec(_spec(root))
    second = local_harness.run_spec(_spec(root))
    assert _states(second) == {"Scout": "ran", "Train": "cached", "Evaluate": "cached", "Push": "ran"}
    assert second.artifact("Train", "model") == first.artifact("Train", "model")
    with open(os.path.join(root, "stamp.txt"), "w") as handle:
        handle.write("drop-2")  # the scout's output parameter, and so Train's cache key, changes
    third = local_harness.run_spec(_spec(root))
    assert _states(third) == dict.fromkeys(["Scout", "Train", "Evaluate", "Push"], "ran")
    assert _runs(root) == ["Scout", "Train", "Evaluate", "Push", "Scout", "Push", "Scout", "Train", "Evaluate", "Push"]


def test_an_output_parameter_can_come_from_its_output_file(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["root"]["dag"]["tasks"]["Scout"]["inputs"]["parameters"]["via_file"] = {"runtimeValue": {"constant": "1"}}
    assert local_harness.run_spec(spec).tasks["Train"].executor_input["inputs"]["parameterValues"]["stamp"] == "drop-1"


def _new_image(spec: dict) -> None:
    spec["deploymentSpec"]["executors"]["Train_executor"]["container"]["image"] = "img:2"


def _new_arg(spec: dict) -> None:
    spec["deploymentSpec"]["executors"]["Train_executor"]["container"]["args"].append("--verbose")


def _new_output_parameter(spec: dict) -> None:
    spec["components"]["Train"]["outputDefinitions"]["parameters"]["x"] = {"parameterType": "STRING"}
    scout_file = spec["root"]["dag"]["tasks"]["Scout"]["inputs"]["parameters"]["stamp_file"]
    spec["root"]["dag"]["tasks"]["Train"]["inputs"]["parameters"]["stamp_file"] = scout_file


def _new_display_name(spec: dict) -> None:
    spec["root"]["dag"]["tasks"]["Train"]["taskInfo"]["name"] = "Renamed"


@pytest.mark.parametrize(
    ("change", "state"),
    [(_new_image, "ran"), (_new_arg, "ran"), (_new_output_parameter, "ran"), (_new_display_name, "cached")],
)
def test_the_cache_key_holds_the_fields_of_cache_go(tmp_path: object, change: object, state: str) -> None:
    root = str(tmp_path)
    local_harness.run_spec(_spec(root))
    spec = _spec(root)
    change(spec)
    assert local_harness.run_spec(spec).tasks["Train"].state == state


@pytest.mark.skipif(
    "cache_key" not in pipeline_spec_pb2.PipelineTaskSpec.CachingOptions.DESCRIPTOR.fields_by_name,
    reason="this kfp-pipeline-spec has no cachingOptions.cacheKey",
)
def test_a_task_cache_key_replaces_the_fields(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["root"]["dag"]["tasks"]["Train"]["cachingOptions"]["cacheKey"] = "fixed"
    local_harness.run_spec(spec)
    with open(os.path.join(root, "stamp.txt"), "w") as handle:
        handle.write("drop-2")
    assert local_harness.run_spec(spec).tasks["Train"].state == "cached"  # the stamp changed, the key did not


def test_lifecycle_hooks_never_run(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    hook = {"command": ["python", "-c", "open(__import__('sys').argv[1], 'a').write('hook ')"], "args": ["{{$}}"]}
    spec["deploymentSpec"]["executors"]["Train_executor"]["container"]["lifecycle"] = {"preCacheCheck": hook}
    assert backend_rules.lifecycle_hooks(spec) == ["Train_executor"]
    local_harness.run_spec(spec)
    assert "hook" not in _runs(root)


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"resolver": {"outputArtifactQueries": {}}}, "task Evaluate: resolver executors not implemented"),
        ({"customJob": {}}, "task Evaluate: custom job executors is Google Cloud only, it's not supported"),
    ],
)
def test_open_source_kfp_refuses_resolver_and_custom_job_executors_before_any_task_runs(
    tmp_path: object, executor: dict, message: str
) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["deploymentSpec"]["executors"]["Evaluate_executor"] = executor
    assert backend_rules.open_source_errors(spec) == [message]
    with pytest.raises(local_harness.SpecError, match=f"refuses this spec: {re.escape(message)}"):
        local_harness.run_spec(spec)
    assert not os.path.exists(os.path.join(root, "runs.log"))  # refused when the run is created


def test_a_failing_command_stops_the_run_with_its_log(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["root"]["dag"]["tasks"]["Evaluate"]["inputs"]["parameters"]["fail"] = {"runtimeValue": {"constant": "bad"}}
    with pytest.raises(local_harness.TaskFailedError, match=r"(?s)Task Evaluate failed \(exit code 3\).*boom: bad"):
        local_harness.run_spec(spec)
    assert _runs(root) == ["Scout", "Train", "Evaluate"]


def _broken(root: str, path: list[str], value: object) -> dict:
    spec = copy.deepcopy(_spec(root))
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["root", "dag", "tasks", "Train", "inputs", "parameters", "task"],
            {"runtimeValue": {"constantValue": {"stringValue": "Train"}}},
            "schema 2.0.0.*use_pipeline_spec_2_1",
        ),
        (["deploymentSpec", "executors", "Train_executor", "container", "args"], ["{{$.inputs.x}}"], "Placeholders"),
        (["root", "dag", "tasks", "Train", "triggerPolicy"], {"condition": "x"}, "triggerPolicy"),
        (["defaultPipelineRoot"], "gs://bucket/root", "local pipeline root only"),
    ],
)
def test_what_the_harness_or_kfp_cannot_run_is_refused(
    tmp_path: object, path: list, value: object, message: str
) -> None:
    with pytest.raises(local_harness.SpecError, match=message):
        local_harness.run_spec(_broken(str(tmp_path), path, value))


def test_an_importer_records_an_artifact_at_its_uri(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["components"]["base_model_importer"] = {
        "executorLabel": "importer",
        "outputDefinitions": {"artifacts": {"result": MODEL}},
    }
    spec["deploymentSpec"]["executors"]["importer"] = {
        "importer": {"artifactUri": {"constant": "/models/base"}, "typeSchema": {"schemaTitle": "tfx.Model"}}
    }
    spec["root"]["dag"]["tasks"]["base_model_importer"] = {
        "taskInfo": {"name": "base_model_importer"},
        "componentRef": {"name": "base_model_importer"},
    }
    spec["components"]["Train"]["inputDefinitions"]["artifacts"] = {"base_model": MODEL}
    spec["root"]["dag"]["tasks"]["Train"]["inputs"]["artifacts"] = {
        "base_model": _produced("base_model_importer", "result")
    }
    result = local_harness.run_spec(spec)
    assert result.tasks["base_model_importer"].state == "imported"
    imported = result.artifact("base_model_importer", "result")
    assert imported["uri"] == "/models/base" and imported["type"] == {"schemaTitle": "tfx.Model"}
    assert result.tasks["Train"].executor_input["inputs"]["artifacts"]["base_model"]["artifacts"] == [imported]
