"""Runs a compiled KFP v2 pipeline spec on this machine, each task through its own container command.

The golden-file and proto tests show that ``kubeflow/pipeline.yaml`` is well formed;
this shows that it runs: a wrong module path, missing package data or a bad
argument fails here as it would on a cluster. ``run_spec`` walks the spec's DAG in
dependency order and, for each container task, does what the KFP 2.x driver and
launcher do (kubeflow/pipelines ``backend/src/v2``):

- ``executorInput``: ``inputs.parameterValues`` from the task's
  ``runtimeValue.constant`` values, then the component's optional input defaults;
  ``inputs.artifacts``: the producers' recorded outputs (name, uri, type,
  metadata); ``outputs.artifacts`` at
  ``<root>/<pipeline>/<run id>/<task>/<uuid>/<output>`` with the output
  definition's type; ``outputs.outputFile`` ``output_metadata.json`` in that
  task folder; each output artifact's folder exists (on GCS, the pipeline
  root a cluster uses, a path needs no folder);
- the container's ``command`` and ``args`` as compiled, ``{{$}}`` replaced by the
  executorInput JSON, run as a subprocess (``python`` is this interpreter, the
  working directory the project: the image's ``/app``);
- the ``ExecutorOutput`` the command writes is merged into its output artifacts
  (uri, metadata fields), which are recorded (a stand-in for MLMD, with
  MLMD-style numeric names) and passed downstream;
- caching: a task runs again unless a completed execution had the same cache key
  (input artifact names, parameter values, output specs, image, command and
  args) and the task's ``cachingOptions.enableCache`` is true.

What the harness does itself, where a platform service would:

- ``lifecycle.preCacheCheck`` (the FileBasedExampleGen driver,
  ``tfx.orchestration.kubeflow.v2.file_based_example_gen.driver``) runs first with
  the same executorInput; its output parameters (span, input fingerprint, the
  pattern with the span filled in) and artifact metadata are applied to the
  executor's input before the cache check (the driver's docstring: the Vertex AI
  Pipelines service updates the task's properties and artifacts before the
  executor runs). The open-source KFP backend ignores ``lifecycle``: there an
  ``input_pattern`` with ``{SPAN}`` reaches the executor unresolved.
- Resolver executors (the LatestBlessedModel resolver's two queries) are answered
  from the harness's records of this pipeline (newest match of the filter). The
  open-source KFP backend refuses resolver executors when a run is created
  ("resolver executors not implemented"); Vertex AI answers them from its MLMD.
- Importer executors (``base_model``) record an artifact at the importer's URI.

Not reproduced: the container image itself (the Dockerfile, its installed
packages and Python: the commands run with this checkout and venv); GCS/S3
pipeline roots and the launcher's artifact download/upload (the root must be a
local folder); the cluster's MLMD (records are a JSON file under the root);
KFP's cache server (a JSON file; entries are never expired); resource requests
and limits, GPUs and node selection; retries, timeouts, ``triggerPolicy``
conditions, loops and sub-DAGs (refused); parallel execution (tasks run one at a
time); pipeline-level runtime parameters (refused); Kubernetes service accounts,
secrets and volumes.
"""

from __future__ import annotations

import copy
import dataclasses
import graphlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_DIR = ".local_harness"  # under <root>/<pipeline>: records and cache
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
_INPUT_METADATA = re.compile(r"""\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}""")
_CLAUSE = re.compile(r'^(?P<field>[A-Za-z_][\w.]*)\s*=\s*(?P<value>"[^"]*"|\S+)$')
_LOG_TAIL_LINES = 40

Artifact = dict[str, Any]  # a RuntimeArtifact as JSON: name, uri, type, metadata


class SpecError(ValueError):
    """The spec uses something the KFP 2.x driver or this harness does not run."""


class TaskFailedError(RuntimeError):
    """A task's command exited non-zero; the message ends with its log's last lines."""

    def __init__(self, task: str, returncode: int, log_path: str) -> None:
        self.task, self.returncode, self.log_path = task, returncode, log_path
        with open(log_path, errors="replace") as handle:
            tail = "".join(handle.readlines()[-_LOG_TAIL_LINES:])
        super().__init__(f"Task {task} failed (exit code {returncode}); log {log_path}, last lines:\n{tail}")


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """One task of a run.

    Attributes:
      name: The task name in the spec.
      state: ``ran``, ``cached``, ``resolved`` (resolver) or ``imported`` (importer).
      seconds: Wall time, the driver included.
      outputs: Output key -> artifacts (empty when a resolver found nothing).
      executor_input: The executorInput JSON the command got (container tasks).
    """

    name: str
    state: str
    seconds: float
    outputs: dict[str, list[Artifact]]
    executor_input: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A whole run: where it wrote and what each task did, in execution order."""

    run_id: str
    run_root: str
    tasks: dict[str, TaskResult]

    def artifact(self, task: str, key: str) -> Artifact | None:
        """The task's single output artifact ``key``, None if it has none."""
        artifacts = self.tasks[task].outputs.get(key, [])
        return artifacts[0] if artifacts else None


def load_spec(path: str) -> dict[str, Any]:
    """A compiled PipelineSpec (``.yaml``) or PipelineJob (``.json``) as a PipelineSpec dict."""
    with open(path) as handle:
        document = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
    return document.get("pipelineSpec", document)


def _title(artifact_type: Mapping[str, Any]) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    return yaml.safe_load(artifact_type.get("instanceSchema", "")).get("title", "")


class _Records:
    """Recorded artifacts and cache entries of one pipeline (the harness's MLMD and cache server)."""

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self._path = os.path.join(folder, "records.json")
        self._data: dict[str, Any] = {"artifacts": [], "cache": {}}
        if os.path.exists(self._path):
            with open(self._path) as handle:
                self._data = json.load(handle)

    def _save(self) -> None:
        with open(self._path + ".tmp", "w") as handle:
            json.dump(self._data, handle, indent=1, sort_keys=True)
        os.replace(self._path + ".tmp", self._path)

    def record(self, artifact: Artifact) -> Artifact:
        """Stores an output artifact under a new MLMD-style name (its id)."""
        recorded = {**copy.deepcopy(artifact), "name": str(len(self._data["artifacts"]) + 1)}
        self._data["artifacts"].append(recorded)
        self._save()
        return recorded

    def newest(self, clauses: list[tuple[str, str]]) -> Artifact | None:
        """The most recently recorded artifact matching every ``field=value`` clause."""
        for artifact in reversed(self._data["artifacts"]):
            if all(_matches(artifact, field, value) for field, value in clauses):
                return copy.deepcopy(artifact)
        return None

    def cached(self, key: str) -> dict[str, list[Artifact]] | None:
        outputs = self._data["cache"].get(key)
        return copy.deepcopy(outputs) if outputs is not None else None

    def cache(self, key: str, outputs: dict[str, list[Artifact]]) -> None:
        self._data["cache"][key] = outputs
        self._save()


def _matches(artifact: Artifact, field: str, value: str) -> bool:
    if field == "schema_title":
        return _title(artifact.get("type", {})) == value
    if field == "state":
        return value == "LIVE"  # recorded artifacts are never marked deleted
    if field == "name":
        return artifact.get("name") == value
    parts = field.split(".")
    if len(parts) == 3 and parts[0] == "metadata" and parts[2] in ("number_value", "string_value"):
        actual = artifact.get("metadata", {}).get(parts[1])
        if actual is None:
            return False
        return float(actual) == float(value) if parts[2] == "number_value" else str(actual) == value
    raise SpecError(f"Resolver filter clause {field}={value} is not supported by the harness.")


def _filter_clauses(query: str, inputs: Mapping[str, list[Artifact]]) -> list[tuple[str, str]] | None:
    """The ``field=value`` clauses of a resolver filter; None if it reads an input that resolved to nothing."""

    def metadata(match: re.Match[str]) -> str:
        artifacts = inputs.get(match.group(1)) or []
        value = artifacts[0].get("metadata", {}).get(match.group(2)) if artifacts else None
        if value is None:
            raise LookupError
        return str(value)

    try:
        query = _INPUT_METADATA.sub(metadata, query)
    except LookupError:
        return None
    clauses = []
    for clause in query.split(" AND "):
        match = _CLAUSE.match(clause.strip())
        if not match:
            raise SpecError(f"Cannot read resolver filter clause {clause!r} (filter {query!r}).")
        clauses.append((match["field"], match["value"].strip('"')))
    return clauses


def _order(tasks: Mapping[str, Any]) -> list[str]:
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


def _parameter_values(name: str, task: Mapping[str, Any], component: Mapping[str, Any]) -> dict[str, Any]:
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
        else:
            raise SpecError(f"Task {name} parameter {key}: only constant runtime values are supported ({spec}).")
    for key, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if key not in values and definition.get("isOptional") and "defaultValue" in definition:
            values[key] = definition["defaultValue"]
    return values


def _input_artifacts(
    name: str, task: Mapping[str, Any], produced: Mapping[str, dict[str, list[Artifact]]]
) -> dict[str, list[Artifact]]:
    artifacts = {}
    for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in spec:
            raise SpecError(f"Task {name} input artifact {key}: only task outputs are supported ({spec}).")
        source = spec["taskOutputArtifact"]
        artifacts[key] = copy.deepcopy(produced[source["producerTask"]].get(source["outputArtifactKey"], []))
    return artifacts


def _substitute(part: str, executor_input_json: str) -> str:
    part = part.replace("{{$}}", executor_input_json)
    unknown = _PLACEHOLDER.findall(part)
    if unknown:
        raise SpecError(f"Placeholders {unknown} are not supported by the harness (only {{{{$}}}}).")
    return part


def _payload(executor_input: Mapping[str, Any]) -> str:
    """The executorInput JSON, through the proto as the launcher marshals it (empty lists drop out)."""
    message = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
    return json_format.MessageToJson(message, indent=None, sort_keys=True)


def _cache_key(executor_input: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """KFP's cache key (backend/src/v2/cacheutils): input names and values, output specs, container."""
    inputs, outputs = executor_input.get("inputs", {}), executor_input["outputs"]
    key = {
        "inputArtifactNames": {
            k: [a.get("name", "") for a in v.get("artifacts", [])] for k, v in inputs.get("artifacts", {}).items()
        },
        "inputParameterValues": inputs.get("parameterValues", {}),
        "outputArtifactsSpec": {k: v["artifacts"][0].get("type") for k, v in outputs.get("artifacts", {}).items()},
        "containerSpec": {"image": container.get("image"), "cmdArgs": [*container["command"], *container["args"]]},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class _Run:
    def __init__(
        self, spec: Mapping[str, Any], pipeline_root: str, python: str, cwd: str, env: Mapping[str, str] | None
    ) -> None:
        if "://" in pipeline_root:
            raise SpecError(f"The harness runs on a local pipeline root only. Received: {pipeline_root!r}")
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields fail
        self.spec, self.python, self.cwd = spec, python, cwd
        self.env = dict(os.environ if env is None else env)
        self.run_id = str(uuid.uuid4())
        pipeline_dir = os.path.join(os.path.abspath(pipeline_root), spec["pipelineInfo"]["name"])
        self.run_root = os.path.join(pipeline_dir, self.run_id)
        self.records = _Records(os.path.join(pipeline_dir, STATE_DIR))
        self.produced: dict[str, dict[str, list[Artifact]]] = {}

    def task(self, name: str) -> TaskResult:
        task = self.spec["root"]["dag"]["tasks"][name]
        for unsupported in ("triggerPolicy", "iteratorPolicy", "parameterIterator", "artifactIterator"):
            if task.get(unsupported):
                raise SpecError(f"Task {name} has {unsupported}, which the harness does not run.")
        component = self.spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            raise SpecError(f"Task {name} is a sub-DAG, which the harness does not run.")
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        started = time.monotonic()
        if "resolver" in executor:
            inputs = _input_artifacts(name, task, self.produced)
            outputs = {}
            for key, query in executor["resolver"]["outputArtifactQueries"].items():
                clauses = _filter_clauses(query["filter"], inputs)
                found = self.records.newest(clauses) if clauses is not None else None
                outputs[key] = [found] if found else []
            return self._done(name, "resolved", started, outputs)
        if "importer" in executor:
            return self._done(name, "imported", started, self._imported(name, executor["importer"], component))
        if "container" in executor:
            return self._container(name, task, component, executor["container"], started)
        raise SpecError(f"Task {name}: executor kind {sorted(executor)} is not supported by the harness.")

    def _done(
        self,
        name: str,
        state: str,
        started: float,
        outputs: dict[str, list[Artifact]],
        executor_input: dict[str, Any] | None = None,
    ) -> TaskResult:
        self.produced[name] = outputs
        return TaskResult(name, state, round(time.monotonic() - started, 1), outputs, executor_input)

    def _imported(self, name: str, importer: Mapping[str, Any], component: Mapping[str, Any]) -> dict:
        uri = importer.get("artifactUri", {}).get("constant")
        if not isinstance(uri, str):
            raise SpecError(f"Importer {name}: only a constant artifactUri is supported ({importer}).")
        (key,) = component["outputDefinitions"]["artifacts"]
        artifact = {"uri": uri, "type": importer["typeSchema"], "metadata": importer.get("metadata", {})}
        return {key: [self.records.record(artifact)]}

    def _container(
        self, name: str, task: Mapping[str, Any], component: Mapping[str, Any], container: Any, started: float
    ) -> TaskResult:
        if component.get("outputDefinitions", {}).get("parameters"):
            raise SpecError(f"Task {name} has output parameters, which the harness does not collect.")
        task_root = os.path.join(self.run_root, name, uuid.uuid4().hex)
        os.makedirs(task_root)
        executor_input = {
            "inputs": {
                "parameterValues": _parameter_values(name, task, component),
                "artifacts": {k: {"artifacts": v} for k, v in _input_artifacts(name, task, self.produced).items()},
            },
            "outputs": {
                "artifacts": {
                    key: {"artifacts": [{"name": key, "uri": f"{task_root}/{key}", "type": spec["artifactType"]}]}
                    for key, spec in component.get("outputDefinitions", {}).get("artifacts", {}).items()
                },
                "outputFile": os.path.join(task_root, "output_metadata.json"),
            },
        }
        for listed in executor_input["outputs"]["artifacts"].values():
            os.makedirs(listed["artifacts"][0]["uri"])  # on GCS a path needs no folder; TFX's local launcher makes them
        container = {**container, "args": container.get("args", [])}
        log_path = os.path.join(task_root, "log.txt")
        pre_cache_check = container.get("lifecycle", {}).get("preCacheCheck")
        if pre_cache_check:
            driver_output = self._execute(name, {"args": [], **pre_cache_check}, executor_input, log_path)
            executor_input["inputs"]["parameterValues"].update(driver_output.get("parameterValues", {}))
            self._merge(executor_input["outputs"]["artifacts"], driver_output)
        sent = json.loads(_payload(executor_input))
        key = _cache_key(sent, container)
        cached = self.records.cached(key) if task.get("cachingOptions", {}).get("enableCache") else None
        if cached is not None:
            return self._done(name, "cached", started, cached, sent)
        executor_output = self._execute(name, container, executor_input, log_path)
        self._merge(executor_input["outputs"]["artifacts"], executor_output)
        outputs = {
            key: [self.records.record(artifact) for artifact in listed["artifacts"]]
            for key, listed in executor_input["outputs"]["artifacts"].items()
        }
        self.records.cache(key, outputs)
        return self._done(name, "ran", started, outputs, sent)

    def _execute(
        self, name: str, container: Mapping[str, Any], executor_input: Mapping[str, Any], log_path: str
    ) -> dict[str, Any]:
        """Runs one command with the executorInput; returns its ExecutorOutput (empty if it wrote none)."""
        payload = _payload(executor_input)
        argv = [_substitute(part, payload) for part in [*container["command"], *container["args"]]]
        if argv[0] == "python":
            argv[0] = self.python
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(argv[:3])} ...\n")
            log.flush()
            process = subprocess.run(argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if process.returncode:
            raise TaskFailedError(name, process.returncode, log_path)
        output_file = executor_input["outputs"]["outputFile"]
        if not os.path.exists(output_file):
            return {}
        with open(output_file) as handle:
            output = json_format.Parse(handle.read(), pipeline_spec_pb2.ExecutorOutput(), ignore_unknown_fields=True)
        return json_format.MessageToDict(output)

    @staticmethod
    def _merge(outputs: dict[str, Any], executor_output: Mapping[str, Any]) -> None:
        """The launcher's mergeRuntimeArtifacts: the command's uri and metadata fields win."""
        for key, listed in executor_output.get("artifacts", {}).items():
            if key not in outputs or not listed.get("artifacts"):
                continue
            source, target = listed["artifacts"][0], outputs[key]["artifacts"][0]
            if source.get("uri"):
                target["uri"] = source["uri"]
            target.setdefault("metadata", {}).update(source.get("metadata", {}))


def run_spec(
    spec: Mapping[str, Any],
    pipeline_root: str | None = None,
    *,
    python: str = sys.executable,
    cwd: str = PROJECT_DIR,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Runs every task of a compiled PipelineSpec (JSON dict) in dependency order.

    Args:
      spec: The PipelineSpec, e.g. ``load_spec("pipeline.yaml")``.
      pipeline_root: A local folder (default: the spec's ``defaultPipelineRoot``).
        Records and cache entries under it carry over between runs.
      python: The interpreter that runs the containers' ``python`` commands.
      cwd: The working directory of the commands (the image's ``/app``).
      env: The commands' environment (default: this process's).

    Returns:
      What each task did and produced.

    Raises:
      SpecError: If the spec uses something the harness or the KFP 2.x driver
        does not run (checked when the task is reached).
      TaskFailedError: If a command exits non-zero; later tasks do not run.
    """
    root = pipeline_root or spec.get("defaultPipelineRoot")
    if not root:
        raise SpecError("The spec has no defaultPipelineRoot: pass pipeline_root.")
    run = _Run(spec, root, python, cwd, env)
    tasks = {name: run.task(name) for name in _order(spec["root"]["dag"]["tasks"])}
    return RunResult(run.run_id, run.run_root, tasks)


LOCAL_IMAGE = "localhost/tfx-image-transfer:local"  # never pulled: the harness runs this checkout


def compile_for_local_run(config: Any, output: str, project_dir: str = PROJECT_DIR) -> dict[str, Any]:
    """Compiles ``config`` (a PipelineConfig) as ``make compile`` does, for a run here; returns the spec.

    The schema file is read from ``project_dir`` (the image reads it from ``/app``)
    and the Trainer asks for no GPU; everything else is what a cluster gets.
    """
    from kubeflow import runner  # imports TFX

    kubeflow = runner.KubeflowConfig(image=LOCAL_IMAGE, output=output, trainer_gpu_count=0, project_dir=project_dir)
    return load_spec(runner.compile_pipeline(config, kubeflow))
