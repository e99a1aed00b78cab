"""What the open-source KFP 2.x backend does with a compiled spec, as rules the compiler and the harness share.

- ``open_source_errors``: what the API server refuses when a run is created
  (kubeflow/pipelines ``backend/src/v2/compiler/argocompiler/dag.go``);
- ``lifecycle_hooks``: executors with hooks that nothing in the backend runs;
- ``cache_key``: the driver's cache fingerprint (``backend/src/v2/cacheutils/cache.go``,
  ``backend/src/v2/driver/cache.go``).

``kubeflow/runner.py`` refuses to write a spec that breaks the first two;
``kubeflow/local_harness.py`` applies all three when it runs one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def cache_key(
    executor_input: Mapping[str, Any],
    container: Mapping[str, Any],
    component: Mapping[str, Any],
    task: Mapping[str, Any],
) -> str:
    """KFP's cache fingerprint: the fields of ``GenerateCacheKey`` (backend/src/v2/cacheutils/cache.go), hashed.

    ``cachingOptions.cacheKey``, where a task sets one, replaces them
    (backend/src/v2/driver/cache.go, ``getFingerPrint``).
    """
    custom = task.get("cachingOptions", {}).get("cacheKey")
    if custom:
        return hashlib.sha256(f"{task['componentRef']['name']}\0{custom}".encode()).hexdigest()
    inputs, outputs = executor_input.get("inputs", {}), executor_input["outputs"]
    output_parameters = component.get("outputDefinitions", {}).get("parameters", {})
    key = {
        "inputArtifactNames": {
            k: {"artifactNames": [a.get("name", "") for a in v.get("artifacts", [])]}
            for k, v in inputs.get("artifacts", {}).items()
        },
        "inputParameterValues": inputs.get("parameterValues", {}),
        "outputArtifactsSpec": {
            k: {"name": v["artifacts"][0].get("name", ""), "type": v["artifacts"][0].get("type"),
                "metadata": v["artifacts"][0].get("metadata", {})}
            for k, v in outputs.get("artifacts", {}).items()
            if v.get("artifacts")
        },
        "outputParametersSpec": {k: v["parameterType"] for k, v in output_parameters.items()},
        "containerSpec": {
            "image": container.get("image"),
            "cmdArgs": [*container.get("command", []), *container.get("args", [])],
            "pvcNames": [],
        },
    }  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def open_source_errors(spec: Mapping[str, Any]) -> list[str]:
    """What open-source KFP refuses in a spec when a run is created (argocompiler/dag.go), one line each."""
    errors = []
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        executor = executors.get(component.get("executorLabel", ""), {})
        if "resolver" in executor:
            errors.append(f"task {name}: resolver executors not implemented")
        elif "customJob" in executor:
            errors.append(f"task {name}: custom job executors is Google Cloud only, it's not supported")
        elif "importer" in executor and task.get("triggerPolicy", {}).get("condition"):
            errors.append(f"task {name}: triggerPolicy.condition on importer task is not supported")
    return errors


def lifecycle_hooks(spec: Mapping[str, Any]) -> list[str]:
    """The executors with ``lifecycle`` hooks: open-source KFP never runs them."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return sorted(label for label, executor in executors.items() if executor.get("container", {}).get("lifecycle"))
