"""Compiles the pipeline for Kubeflow Pipelines v2 (KubeflowV2DagRunner).

The compiled spec runs every component in the project's container image (see
``kubeflow/Dockerfile``), with the Transform and Trainer code imported from the
installed package inside it, so nothing depends on a wheel built on the machine
that compiled. Every Trainer (by component type: the from-scratch comparison's
too) and the Tuner, whose trials train as the Trainer does, get the GPU
resources; the other components CPU and memory only.

The spec runs with one meaning on open-source KFP 2.x, Vertex AI Pipelines and
the local harness: it has no resolver executor (the gate's baseline is the
``served_model`` container step, ``components/served_model/component.py``) and nothing
depends on ``lifecycle`` hooks, which the open-source backend never runs.

``compile_pipeline`` writes PipelineSpec schema 2.1.0 (parameters as
``parameterValues``, what the KFP 2.x driver and launcher pass; schema 2.0.0's
``runtimeValue.constantValue`` is refused by the open-source KFP driver) and then
fills in what the compiler leaves out:

- limits for every container step, the FileBasedExampleGen too (the compiler
  drops ``with_platform_config`` for it, tensorflow/tfx#6146);
- ``defaultPipelineRoot``: the config's ``pipeline_root`` (a ``.yaml`` has no
  runtime config; ``kubeflow/client.py`` passes it when it submits);
- the ExampleGen driver moved out of ``lifecycle.preCacheCheck`` into a first
  step of its own, ``IngestSnapshot`` (``with_ingest_snapshot``): its output
  parameters (span, resolved pattern, input fingerprint) become the ExampleGen's
  parameters, so the ExampleGen's cache key changes when new files arrive and
  stays when none did;
- ``cachingOptions.enableCache: false`` for the steps that must look at the world
  on every run: the Pusher and the served-model step (the serving directory) and
  the ingest snapshot (the data root) (``pipeline/graph/uncached_nodes.py``).

``kubeflow/local_harness.py`` runs the compiled spec's containers' commands on
this machine.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Collection
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx import version as tfx_version
from tfx.components import FileBasedExampleGen, Trainer, Tuner
from tfx.dsl.components.base import base_component
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from components.ingest_snapshot import component as ingest_snapshot
from kubeflow import backend_rules, volumes
from pipeline.config import preflight as early_checks
from pipeline.config.pipeline_config import ConfigError, PipelineConfig
from pipeline.graph import uncached_nodes
from pipeline.graph.pipeline import create_pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """Where and how the pipeline runs on Kubeflow.

    Attributes:
      image: The pipeline image, pinned by tag or digest (never ``:latest``).
      output: The compiled file: ``.yaml`` (KFP v2 PipelineSpec, open-source KFP)
        or ``.json`` (a PipelineJob, e.g. for Vertex AI).
      trainer_gpu_type: Accelerator type for the Trainer and the Tuner (``nvidia.com/gpu``
        on KFP; empty: no GPU).
      trainer_gpu_count: GPUs for the Trainer and the Tuner.
      trainer_cpu, trainer_memory_gib: Trainer (and Tuner) CPU and memory limits.
      default_cpu, default_memory_gib: Limits of every other component.
      project_dir: Where ``kubeflow/Dockerfile`` puts the project inside the image.
      pvc_mounts: PersistentVolumeClaims mounted into every step's pod
        (``kubeflow/volumes.py``): written as a KFP platform spec, the file's
        second YAML document; ``.yaml`` output only.
    """

    image: str
    output: str = os.path.join("kubeflow", "pipeline.yaml")
    trainer_gpu_type: str = "nvidia.com/gpu"
    trainer_gpu_count: int = 1
    trainer_cpu: float = 8.0
    trainer_memory_gib: float = 32.0
    default_cpu: float = 2.0
    default_memory_gib: float = 8.0
    project_dir: str = "/app"
    pvc_mounts: tuple[volumes.PvcMount, ...] = ()

    def __post_init__(self) -> None:
        early_checks.require_pinned_image(self.image)
        volumes.check_mounts(self.pvc_mounts, self.project_dir)
        if self.pvc_mounts and self.output.endswith(".json"):
            raise ConfigError(
                "--pvc needs .yaml output: a PipelineJob (.json, Vertex AI) has no Kubernetes platform spec, and "
                "Vertex AI mounts no PersistentVolumeClaims (use gs:// paths there)."
            )
        if not self.output.endswith((".yaml", ".yml", ".json")):
            raise ConfigError(f"output must end in .yaml or .json. Received: output={self.output!r}")
        if self.trainer_gpu_count < 0 or min(self.trainer_cpu, self.trainer_memory_gib) <= 0:
            raise ConfigError("trainer_gpu_count must be >= 0 and Trainer CPU/memory > 0.")
        if min(self.default_cpu, self.default_memory_gib) <= 0:
            raise ConfigError("default_cpu and default_memory_gib must be > 0.")


def _resources(cpu: float, memory_gib: float, gpu_type: str = "", gpus: int = 0) -> ResourceSpec:
    spec = ResourceSpec(cpu_limit=cpu, memory_limit=memory_gib)
    if gpu_type and gpus:
        spec.accelerator.type = gpu_type
        spec.accelerator.count = gpus
    return spec


def component_resources(component: base_component.BaseComponent | None, kubeflow: KubeflowConfig) -> ResourceSpec:
    """The limits a component runs with: every Trainer's and Tuner's (with the GPU), or the default (also ``None``).

    A Tuner's trials are Trainer runs (``components/modules/tuner.py``), so it gets the same.
    """
    if isinstance(component, Trainer | Tuner):
        return _resources(
            kubeflow.trainer_cpu, kubeflow.trainer_memory_gib, kubeflow.trainer_gpu_type, kubeflow.trainer_gpu_count
        )
    return _resources(kubeflow.default_cpu, kubeflow.default_memory_gib)


def with_missing_resources(pipeline_spec: dict[str, Any], kubeflow: KubeflowConfig) -> dict[str, Any]:
    """A copy of a compiled PipelineSpec (JSON dict) where every container executor has limits.

    KubeflowV2DagRunner ignores ``with_platform_config`` for FileBasedExampleGen
    (tensorflow/tfx#6146); this sets ``component_resources`` on each container
    executor that the compiler left without ``resources``. Executors that have
    them are left alone.
    """
    spec = copy.deepcopy(pipeline_spec)
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor.get("container")
        if container is None or container.get("resources"):
            continue
        container["resources"] = json_format.MessageToDict(component_resources(None, kubeflow))
        logging.info("Set the resources of %s, which the compiler left without (tensorflow/tfx#6146).", label)
    return spec


INGEST_SNAPSHOT = "IngestSnapshot"  # the task and component name
_INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"


def with_ingest_snapshot(
    pipeline_spec: dict[str, Any], example_gen_id: str, kubeflow: KubeflowConfig
) -> dict[str, Any]:
    """A copy of a compiled PipelineSpec whose ExampleGen takes its span and fingerprint from a first step.

    TFX compiles the FileBasedExampleGen driver as the executor's
    ``lifecycle.preCacheCheck``: Vertex AI runs it before its cache check,
    open-source KFP never does. Here the hook goes, and a task
    ``IngestSnapshot`` (``python -m components.ingest_snapshot.executor``, never cached)
    computes what the driver did from the same parameters. Its output
    parameters ``input_config`` (``{SPAN}`` filled in), ``span`` and
    ``input_fingerprint`` are the ExampleGen's inputs (``taskOutputParameter``):
    the KFP driver puts input parameter values in the cache key
    (``backend/src/v2/cacheutils/cache.go``), so a new drop re-runs the
    ExampleGen and everything after it, and no new files reuse the cache up to
    the Evaluator, on every backend.
    """
    spec = copy.deepcopy(pipeline_spec)
    tasks = spec["root"]["dag"]["tasks"]
    gen_task = tasks[example_gen_id]
    gen_component = spec["components"][gen_task["componentRef"]["name"]]
    gen_container = spec["deploymentSpec"]["executors"][gen_component["executorLabel"]]["container"]
    gen_container.pop("lifecycle", None)
    gen_parameters = gen_component["inputDefinitions"]["parameters"]
    inputs = [key for key in ingest_snapshot.INPUT_PARAMETERS if key in gen_task["inputs"]["parameters"]]
    label = f"{INGEST_SNAPSHOT}_executor"
    spec["components"][INGEST_SNAPSHOT] = {
        "executorLabel": label,
        "inputDefinitions": {"parameters": {key: gen_parameters[key] for key in inputs}},
        "outputDefinitions": {
            "parameters": {key: {"parameterType": kind} for key, kind in ingest_snapshot.OUTPUT_PARAMETERS.items()}
        },
    }
    spec["deploymentSpec"]["executors"][label] = {
        "container": {
            "image": gen_container["image"],
            "command": ["python", "-m", "components.ingest_snapshot.executor"],
            "args": ["--executor_input", "{{$}}"],
            "resources": json_format.MessageToDict(component_resources(None, kubeflow)),
        }
    }
    tasks[INGEST_SNAPSHOT] = {
        "taskInfo": {"name": INGEST_SNAPSHOT},
        "componentRef": {"name": INGEST_SNAPSHOT},
        "inputs": {"parameters": {key: copy.deepcopy(gen_task["inputs"]["parameters"][key]) for key in inputs}},
        "cachingOptions": {"enableCache": False},
    }
    for key, kind in ingest_snapshot.OUTPUT_PARAMETERS.items():
        gen_parameters[key] = {"parameterType": kind}
        gen_task["inputs"]["parameters"][key] = {
            "taskOutputParameter": {"producerTask": INGEST_SNAPSHOT, "outputParameterKey": key}
        }
    gen_task["dependentTasks"] = sorted({*gen_task.get("dependentTasks", []), INGEST_SNAPSHOT})
    # TFX's entrypoint types exec properties by this copy of the input definitions (span: an int).
    args = gen_container["args"]
    index = args.index(_INPUTS_SPEC_FLAG) + 1
    inputs_spec = json.loads(args[index])
    inputs_spec["parameters"] = dict(gen_parameters)
    args[index] = json.dumps(inputs_spec, indent=2, sort_keys=True)
    return spec


def with_uncached_tasks(pipeline_spec: dict[str, Any], task_names: Collection[str]) -> dict[str, Any]:
    """A copy of a compiled PipelineSpec (JSON dict) where ``task_names`` never reuse a cached result.

    TFX writes the pipeline's ``enable_cache`` into every task's
    ``cachingOptions``; KFP skips a task whose cache key it has seen unless that
    task's ``enableCache`` is false.

    Raises:
      ValueError: If a task is not in the spec (e.g. a renamed component).
    """
    spec = copy.deepcopy(pipeline_spec)
    tasks = spec["root"]["dag"]["tasks"]
    unknown = sorted(set(task_names) - set(tasks))
    if unknown:
        raise ValueError(f"No task {unknown} in the compiled pipeline; its tasks are {sorted(tasks)}.")
    for name in task_names:
        tasks[name]["cachingOptions"] = {"enableCache": False}
    return spec


def kubeflow_pipeline(config: PipelineConfig, kubeflow: KubeflowConfig) -> tfx.dsl.Pipeline:
    """The pipeline as it runs on Kubeflow: installed user code, resources per component."""
    schema_file = config.schema_file or os.path.join(kubeflow.project_dir, "schemas", "schema.pbtxt")
    pipeline = create_pipeline(config.model_copy(update={"user_code": "installed", "schema_file": schema_file}))
    for component in pipeline.components:
        if not isinstance(component, base_component.BaseComponent):  # e.g. the Resolver
            continue
        component.with_platform_config(component_resources(component, kubeflow))
    return pipeline


def _example_gen_id(pipeline: tfx.dsl.Pipeline) -> str:
    (example_gen,) = (c.id for c in pipeline.components if isinstance(c, FileBasedExampleGen))
    return example_gen


def compile_pipeline(config: PipelineConfig, kubeflow: KubeflowConfig) -> str:
    """Writes the compiled pipeline to ``kubeflow.output``; returns its path.

    The runner compiles without writing; the spec gets the limits the compiler
    dropped (``with_missing_resources``), the ingest snapshot step in place of the
    ExampleGen's ``lifecycle`` hook (``with_ingest_snapshot``), the cache switched
    off for the steps that look at the world (``with_uncached_tasks``) and the
    pipeline root as ``defaultPipelineRoot``, is checked against open-source KFP's
    rules, and is written by the runner's own writer, so the file is what the
    runner would write plus those fields. With ``kubeflow.pvc_mounts`` a KFP
    platform spec mounting them into every executor follows as a second YAML
    document (``append_platform_spec``).

    Raises:
      ValueError: If the spec has something open-source KFP refuses or ignores.
    """
    output_dir, filename = os.path.split(os.path.abspath(kubeflow.output))
    os.makedirs(output_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=kubeflow.image, use_pipeline_spec_2_1=True
        ),
        output_dir=output_dir,
        output_filename=filename,
    )
    pipeline = kubeflow_pipeline(config, kubeflow)
    job = runner.run(pipeline, write_out=False)
    spec = with_missing_resources(job["pipelineSpec"], kubeflow)
    spec = with_ingest_snapshot(spec, _example_gen_id(pipeline), kubeflow)
    spec = with_uncached_tasks(spec, [*uncached_nodes.uncached_ids(pipeline), INGEST_SNAPSHOT])
    spec["defaultPipelineRoot"] = config.pipeline_root

    problems = backend_rules.open_source_errors(spec) + backend_rules.lifecycle_hooks(spec)
    if problems:
        raise ValueError(f"The compiled spec would not run on open-source Kubeflow Pipelines: {problems}")
    path = os.path.join(output_dir, filename)
    description = f"This is converted from TFX pipeline from tfx-{tfx_version.__version__}."
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file({**job, "pipelineSpec": spec}, description, path)  # noqa: SLF001 (the runner's format)
    if kubeflow.pvc_mounts:
        append_platform_spec(path, volumes.platform_spec(spec["deploymentSpec"]["executors"], kubeflow.pvc_mounts))
    return path


def append_platform_spec(path: str, platform_spec: dict[str, Any]) -> None:
    """Appends a KFP ``PlatformSpec`` to a compiled ``.yaml`` as its second document.

    The file then reads as the KFP SDK writes one with platform features
    (``yaml.dump_all([pipeline_spec, platform_spec], sort_keys=True)`` after the
    comment header, ``kfp.compiler.pipeline_spec_builder``); the KFP client and
    API server take the first document as the pipeline spec and the other as the
    platform spec.
    """
    json_format.ParseDict(platform_spec, pipeline_spec_pb2.PlatformSpec())  # its schema, before writing
    with open(path, "a") as handle:
        yaml.dump_all([platform_spec], handle, explicit_start=True, sort_keys=True)
