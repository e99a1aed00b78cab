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
- output parameters: taken from the ExecutorOutput's ``parameterValues``, else
  read from each parameter's ``outputFile`` (``launcher_v2.go``,
  ``collectOutputParameters``), and passed on to ``taskOutputParameter`` inputs;
- caching: a task runs again unless a completed execution had the same cache key
  and the task's ``cachingOptions.enableCache`` is true. The key holds exactly
  the fields of ``backend/src/v2/cacheutils/cache.go`` (``GenerateCacheKey``):
  input artifact names, input parameter values, output artifact specs (name,
  type, metadata; no uri), output parameter types, image, command and args, PVC
  names (none here); a task's ``cachingOptions.cacheKey`` replaces them all
  (``backend/src/v2/driver/cache.go``, ``getFingerPrint``). A cache hit reuses
  the execution's output artifacts and parameters.

The open-source backend's refusals apply before any task runs, as the API server
compiles the whole spec to an Argo workflow when a run is created
(``backend/src/v2/compiler/argocompiler/dag.go``; ``open_source_errors``): a
resolver executor ("resolver executors not implemented"), a customJob executor
("custom job executors is Google Cloud only, it's not supported"), a
``triggerPolicy.condition`` on an importer. ``lifecycle`` hooks are never run:
nothing in the backend reads them (Vertex AI runs ``preCacheCheck``; a spec whose
correctness needed it would behave differently there, so ``kubeflow/runner.py``
compiles none). Importer executors (``base_model``) record an artifact at the
importer's URI.

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
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import harness_driver
from kubeflow.backend_rules import cache_key, open_source_errors
from kubeflow.harness_driver import Artifact, SpecError

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_DIR = ".local_harness"  # under <root>/<pipeline>: records and cache
_LOG_TAIL_LINES = 40


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
      state: ``ran``, ``cached`` or ``imported`` (importer).
      seconds: Wall time.
      outputs: Output key -> artifacts.
      executor_input: The executorInput JSON the command got (container tasks).
      parameters: Output parameter key -> value.
    """

    name: str
    state: str
    seconds: float
    outputs: dict[str, list[Artifact]]
    executor_input: dict[str, Any] | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


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
    """A compiled PipelineSpec (``.yaml``) or PipelineJob (``.json``) as a PipelineSpec dict.

    A ``.yaml`` may hold more documents: the first is the PipelineSpec, as the KFP
    client reads it; a platform spec (``compile --pvc``) may follow. The harness
    mounts no volumes.
    """
    with open(path) as handle:
        document = json.load(handle) if path.endswith(".json") else next(yaml.safe_load_all(handle))
    return document.get("pipelineSpec", document)


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

    def cached(self, key: str) -> tuple[dict[str, list[Artifact]], dict[str, Any]] | None:
        """The outputs and output parameters of the execution with cache key ``key``, if any."""
        entry = self._data["cache"].get(key)
        return (copy.deepcopy(entry["artifacts"]), copy.deepcopy(entry["parameters"])) if entry else None

    def cache(self, key: str, outputs: dict[str, list[Artifact]], parameters: dict[str, Any]) -> None:
        self._data["cache"][key] = {"artifacts": outputs, "parameters": parameters}
        self._save()


class _Run:
    def __init__(
        self, spec: Mapping[str, Any], pipeline_root: str, python: str, cwd: str, env: Mapping[str, str] | None
    ) -> None:
        if "://" in pipeline_root:
            raise SpecError(f"The harness runs on a local pipeline root only. Received: {pipeline_root!r}")
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields fail
        errors = open_source_errors(spec)
        if errors:
            raise SpecError("Open-source Kubeflow Pipelines refuses this spec: " + "; ".join(errors))
        self.spec, self.python, self.cwd = spec, python, cwd
        self.env = dict(os.environ if env is None else env)
        self.run_id = str(uuid.uuid4())
        pipeline_dir = os.path.join(os.path.abspath(pipeline_root), spec["pipelineInfo"]["name"])
        self.run_root = os.path.join(pipeline_dir, self.run_id)
        self.records = _Records(os.path.join(pipeline_dir, STATE_DIR))
        self.produced: dict[str, dict[str, list[Artifact]]] = {}
        self.parameters: dict[str, dict[str, Any]] = {}

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
        parameters: dict[str, Any] | None = None,
    ) -> TaskResult:
        self.produced[name] = outputs
        self.parameters[name] = dict(parameters or {})
        seconds = round(time.monotonic() - started, 1)
        return TaskResult(name, state, seconds, outputs, executor_input, dict(parameters or {}))

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
        task_root = os.path.join(self.run_root, name, uuid.uuid4().hex)
        os.makedirs(task_root)
        outputs = component.get("outputDefinitions", {})
        executor_input = {
            "inputs": {
                "parameterValues": harness_driver.parameter_values(name, task, component, self.parameters),
                "artifacts": {
                    k: {"artifacts": v} for k, v in harness_driver.input_artifacts(name, task, self.produced).items()
                },
            },
            "outputs": {
                "artifacts": {
                    key: {"artifacts": [{"name": key, "uri": f"{task_root}/{key}", "type": spec["artifactType"]}]}
                    for key, spec in outputs.get("artifacts", {}).items()
                },
                "parameters": {
                    key: {"outputFile": os.path.join(task_root, "outputs", key)}
                    for key in outputs.get("parameters", {})
                },
                "outputFile": os.path.join(task_root, "output_metadata.json"),
            },
        }
        for listed in executor_input["outputs"]["artifacts"].values():
            os.makedirs(listed["artifacts"][0]["uri"])  # on GCS a path needs no folder; TFX's local launcher makes them
        container = {**container, "args": container.get("args", [])}
        sent = json.loads(harness_driver.payload(executor_input))
        key = cache_key(sent, container, component, task)
        cached = self.records.cached(key) if task.get("cachingOptions", {}).get("enableCache") else None
        if cached is not None:
            return self._done(name, "cached", started, cached[0], sent, cached[1])
        executor_output = self._execute(name, container, executor_input, os.path.join(task_root, "log.txt"))
        self._merge(executor_input["outputs"]["artifacts"], executor_output)
        artifacts = {
            key: [self.records.record(artifact) for artifact in listed["artifacts"]]
            for key, listed in executor_input["outputs"]["artifacts"].items()
        }
        parameters = harness_driver.output_parameters(name, component, executor_input, executor_output)
        self.records.cache(key, artifacts, parameters)
        return self._done(name, "ran", started, artifacts, sent, parameters)

    def _execute(
        self, name: str, container: Mapping[str, Any], executor_input: Mapping[str, Any], log_path: str
    ) -> dict[str, Any]:
        """Runs one command with the executorInput; returns its ExecutorOutput (empty if it wrote none)."""
        payload = harness_driver.payload(executor_input)
        argv = [harness_driver.substitute(part, payload) for part in [*container["command"], *container["args"]]]
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
    tasks = {name: run.task(name) for name in harness_driver.order(spec["root"]["dag"]["tasks"])}
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
