"""The local harness does what the KFP 2.x driver and launcher do, checked with tiny stand-in commands.

The commands here are ``python -c`` scripts (milliseconds each); the slow
tests/test_kubeflow_local_run.py runs the real compiled pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest

from kubeflow import local_harness

# A stand-in container: logs its task name, writes each output artifact's folder and metadata file.
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
for key, listed in executor_input["outputs"]["artifacts"].items():
    artifact = listed["artifacts"][0]
    with open(os.path.join(artifact["uri"], "executor_input.json"), "w") as handle:
        json.dump(executor_input, handle)
    metadata = {"made_by": params["task"]}
    if key == "blessing":
        model = executor_input["inputs"]["artifacts"]["model"]["artifacts"][0]
        metadata.update(blessed=1, current_model_id=model["name"])
    output["artifacts"][key] = {"artifacts": [{"name": key, "uri": artifact["uri"], "metadata": metadata}]}
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


def _component(name: str, inputs: dict, outputs: dict) -> dict:
    parameters = {
        "task": {"parameterType": "STRING"},
        "log": {"parameterType": "STRING"},
        "fail": {"parameterType": "STRING", "isOptional": True, "defaultValue": ""},
    }
    return {
        "executorLabel": f"{name}_executor",
        "inputDefinitions": {"parameters": parameters, "artifacts": inputs},
        "outputDefinitions": {"artifacts": outputs},
    }


def _spec(root: str) -> dict:
    """Train -> (latest blessed model resolver) -> Evaluate -> Push, shaped as KubeflowV2DagRunner compiles it."""
    log = os.path.join(root, "runs.log")
    container = {"image": "img:1", "command": ["python", "-c", SCRIPT], "args": ["{{$}}"]}
    blessed = 'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1'
    by_name = "schema_title=\"tfx.Model\" AND state=LIVE AND name=\"{{$.inputs.artifacts['input'].metadata['current_model_id']}}\""
    return {
        "pipelineInfo": {"name": "toy"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "test",
        "defaultPipelineRoot": os.path.join(root, "pipeline_root"),
        "components": {
            "Train": _component("Train", {}, {"model": MODEL}),
            "Evaluate": _component("Evaluate", {"model": MODEL, "baseline": MODEL}, {"blessing": BLESSING}),
            "Push": _component("Push", {"model": MODEL, "blessing": BLESSING}, {"pushed": PUSHED}),
            "blessing-resolver": {
                "executorLabel": "blessing_resolver",
                "outputDefinitions": {"artifacts": {"b": BLESSING}},
            },
            "model-resolver": {
                "executorLabel": "model_resolver",
                "inputDefinitions": {"artifacts": {"input": BLESSING}},
                "outputDefinitions": {"artifacts": {"model": MODEL}},
            },
        },
        "deploymentSpec": {
            "executors": {
                "Train_executor": {"container": container},
                "Evaluate_executor": {"container": container},
                "Push_executor": {"container": container},
                "blessing_resolver": {"resolver": {"outputArtifactQueries": {"b": {"filter": blessed}}}},
                "model_resolver": {"resolver": {"outputArtifactQueries": {"model": {"filter": by_name}}}},
            }
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
                    "Evaluate": _container_task(
                        "Evaluate",
                        log,
                        {"model": _produced("Train", "model"), "baseline": _produced("model-resolver", "model")},
                        ["Train", "model-resolver"],
                    ),
                    "Train": _container_task("Train", log, {}, []),
                    "blessing-resolver": {"taskInfo": {"name": "b"}, "componentRef": {"name": "blessing-resolver"}},
                    "model-resolver": {
                        "taskInfo": {"name": "m"},
                        "componentRef": {"name": "model-resolver"},
                        "inputs": {"artifacts": {"input": _produced("blessing-resolver", "b")}},
                    },
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
    assert list(result.tasks) == ["Train", "blessing-resolver", "model-resolver", "Evaluate", "Push"]
    assert result.run_root.startswith(os.path.join(root, "pipeline_root", "toy") + os.sep)
    evaluate = result.tasks["Evaluate"].executor_input
    # Constants, then the optional input's default (the launcher's addDefaultParams).
    assert evaluate["inputs"]["parameterValues"] == {"task": "Evaluate", "log": f"{root}/runs.log", "fail": ""}
    # Upstream outputs as recorded: MLMD-style name, the uri, the command's metadata merged in.
    trained = result.artifact("Train", "model")
    assert evaluate["inputs"]["artifacts"]["model"]["artifacts"] == [trained]
    assert trained["name"] == "1" and trained["metadata"] == {"made_by": "Train"}
    assert trained["type"] == {"schemaTitle": "tfx.Model"}
    assert evaluate["inputs"]["artifacts"]["baseline"] == {}  # no blessed model yet: an empty list
    # Outputs under <root>/<pipeline>/<run>/<task>/<uuid>/<key>, the metadata file beside them.
    (blessing,) = evaluate["outputs"]["artifacts"]["blessing"]["artifacts"]
    assert re.fullmatch(re.escape(result.run_root) + r"/Evaluate/[0-9a-f]{32}/blessing", blessing["uri"])
    assert evaluate["outputs"]["outputFile"] == os.path.join(os.path.dirname(blessing["uri"]), "output_metadata.json")
    # The command got exactly this JSON in place of {{$}}.
    with open(os.path.join(blessing["uri"], "executor_input.json")) as handle:
        assert json.load(handle) == evaluate


def test_a_rerun_reuses_cached_tasks_runs_uncached_ones_and_resolves_the_last_blessing(tmp_path: object) -> None:
    root = str(tmp_path)
    first = local_harness.run_spec(_spec(root))
    second = local_harness.run_spec(_spec(root))
    assert {name: task.state for name, task in second.tasks.items()} == {
        "Train": "cached",  # same inputs, same command: the first run's model
        "blessing-resolver": "resolved",
        "model-resolver": "resolved",
        "Evaluate": "ran",  # its baseline input changed: the first run's blessed model
        "Push": "ran",  # enableCache: false
    }
    assert _runs(root) == ["Train", "Evaluate", "Push", "Evaluate", "Push"]
    assert second.artifact("Train", "model") == first.artifact("Train", "model")
    assert second.artifact("blessing-resolver", "b") == first.artifact("Evaluate", "blessing")
    assert second.artifact("model-resolver", "model") == first.artifact("Train", "model")


def test_a_failing_command_stops_the_run_with_its_log(tmp_path: object) -> None:
    root = str(tmp_path)
    spec = _spec(root)
    spec["root"]["dag"]["tasks"]["Evaluate"]["inputs"]["parameters"]["fail"] = {"runtimeValue": {"constant": "bad"}}
    with pytest.raises(local_harness.TaskFailedError, match=r"(?s)Task Evaluate failed \(exit code 3\).*boom: bad"):
        local_harness.run_spec(spec)
    assert _runs(root) == ["Train", "Evaluate"]


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
