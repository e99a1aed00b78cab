"""What the KFP 2.x driver and launcher do for one task, as the local harness needs it.

The task order, the executorInput (parameters from constants, task outputs and
component defaults; input artifacts from producers), the ``{{$}}`` placeholder,
the proto round trip the launcher marshals it through, and the output parameters
it collects (kubeflow/pipelines ``backend/src/v2/driver/driver.go``,
``backend/src/v2/component/launcher_v2.go``). ``kubeflow/local_harness.py`` runs
the tasks with these.
"""

from __future__ import annotations

import copy
import graphlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

Artifact = dict[str, Any]  # a RuntimeArtifact as JSON: name, uri, type, metadata
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


class SpecError(ValueError):
    """The spec uses something the KFP 2.x driver or this harness does not run."""


def order(tasks: Mapping[str, Any]) -> list[str]:
    """Task names in dependency order (``dependentTasks`` and input producers), ties by name."""
    graph: dict[str, set[str]] = {}
    for name, task in tasks.items():
        producers = {
            spec[kind]["producerTask"]
            for group in ("artifacts", "parameters")
            for spec in task.get("inputs", {}).get(group, {}).values()
            for kind in ("taskOutputArtifact", "taskOutputParameter")
            if kind in spec
        }
        graph[name] = set(task.get("dependentTasks", [])) | producers
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def parameter_values(
    name: str, task: Mapping[str, Any], component: Mapping[str, Any], produced: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """Task parameters as the KFP driver resolves them, then optional component defaults (the launcher)."""
    values: dict[str, Any] = {}
    for key, spec in task.get("inputs", {}).get("parameters", {}).items():
        runtime = spec.get("runtimeValue", {})
        if "constant" in runtime:
            values[key] = runtime["constant"]
        elif "constantValue" in runtime:
            raise SpecError(
                f"Task {name} parameter {key} is a runtimeValue.constantValue (PipelineSpec schema 2.0.0): "
                "the KFP 2.x driver does not implement it. Compile with use_pipeline_spec_2_1=True."
            )
        elif "taskOutputParameter" in spec:
            source = spec["taskOutputParameter"]
            upstream = produced.get(source["producerTask"], {})
            if source["outputParameterKey"] not in upstream:
                raise SpecError(f"Task {name} parameter {key}: {source} was not produced.")
            values[key] = upstream[source["outputParameterKey"]]
        else:
            raise SpecError(f"Task {name} parameter {key}: only constants and task outputs are supported ({spec}).")
    for key, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if key not in values and definition.get("isOptional") and "defaultValue" in definition:
            values[key] = definition["defaultValue"]
    return values


def input_artifacts(
    name: str, task: Mapping[str, Any], produced: Mapping[str, dict[str, list[Artifact]]]
) -> dict[str, list[Artifact]]:
    artifacts = {}
    for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in spec:
            raise SpecError(f"Task {name} input artifact {key}: only task outputs are supported ({spec}).")
        source = spec["taskOutputArtifact"]
        artifacts[key] = copy.deepcopy(produced[source["producerTask"]].get(source["outputArtifactKey"], []))
    return artifacts


def substitute(part: str, executor_input_json: str) -> str:
    part = part.replace("{{$}}", executor_input_json)
    unknown = _PLACEHOLDER.findall(part)
    if unknown:
        raise SpecError(f"Placeholders {unknown} are not supported by the harness (only {{{{$}}}}).")
    return part


def payload(executor_input: Mapping[str, Any]) -> str:
    """The executorInput JSON, through the proto as the launcher marshals it (empty lists drop out)."""
    message = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
    return json_format.MessageToJson(message, indent=None, sort_keys=True)


def output_parameters(
    name: str, component: Mapping[str, Any], executor_input: Mapping[str, Any], executor_output: Mapping[str, Any]
) -> dict[str, Any]:
    """The launcher's collectOutputParameters: the ExecutorOutput's values first, else each outputFile."""
    values = dict(executor_output.get("parameterValues", {}))
    for key, definition in component.get("outputDefinitions", {}).get("parameters", {}).items():
        if key in values:
            continue
        path = executor_input["outputs"]["parameters"][key]["outputFile"]
        if not os.path.exists(path):
            raise SpecError(f"Task {name}: failed to read output parameter name={key!r} path={path!r}")
        with open(path) as handle:
            text = handle.read()
        kind = definition["parameterType"]
        values[key] = text if kind == "STRING" else json.loads(text)
    return values
