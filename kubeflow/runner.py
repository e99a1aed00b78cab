"""Compiles the pipeline for Kubeflow Pipelines v2 (KubeflowV2DagRunner).

The compiled spec runs every component in the project's container image (see
``kubeflow/Dockerfile``), with the Transform and Trainer code imported from the
installed package inside it, so nothing depends on a wheel built on the machine
that compiled. The Trainer gets the GPU resources; the other components CPU and
memory only.

``compile_pipeline`` writes PipelineSpec schema 2.1.0 (parameters as
``parameterValues``, what the KFP 2.x driver and launcher pass; schema 2.0.0's
``runtimeValue.constantValue`` is refused by the open-source KFP driver) and then
fills in what the compiler leaves out:

- limits for every container step, the FileBasedExampleGen too (the compiler
  drops ``with_platform_config`` for it, tensorflow/tfx#6146);
- ``defaultPipelineRoot``: the config's ``pipeline_root`` (a ``.yaml`` has no
  runtime config; ``kubeflow/client.py`` passes it when it submits);
- ``cachingOptions.enableCache: false`` for the Pusher, which must look at the
  serving directory on every run (see ``pipeline/uncached_nodes.py``).

``kubeflow/local_harness.py`` runs the compiled spec's containers' commands on
this machine.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
from collections.abc import Collection
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx import version as tfx_version
from tfx.dsl.components.base import base_component
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipeline import uncached_nodes
from pipeline.config import ConfigError, PipelineConfig
from pipeline.pipeline import create_pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
_PINNED_IMAGE = re.compile(r"^[^\s:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """Where and how the pipeline runs on Kubeflow.

    Attributes:
      image: The pipeline image, pinned by tag or digest (never ``:latest``).
      output: The compiled file: ``.yaml`` (KFP v2 PipelineSpec, open-source KFP)
        or ``.json`` (a PipelineJob, e.g. for Vertex AI).
      trainer_gpu_type: Accelerator type for the Trainer (``nvidia.com/gpu`` on KFP;
        empty: no GPU).
      trainer_gpu_count: GPUs for the Trainer.
      trainer_cpu, trainer_memory_gib: Trainer CPU and memory limits.
      default_cpu, default_memory_gib: Limits of every other component.
      project_dir: Where ``kubeflow/Dockerfile`` puts the project inside the image.
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

    def __post_init__(self) -> None:
        if not _PINNED_IMAGE.match(self.image) or self.image.endswith(":latest"):
            raise ConfigError(f"image must be pinned by tag or digest (not :latest). Received: image={self.image!r}")
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


def component_resources(component_id: str, kubeflow: KubeflowConfig) -> ResourceSpec:
    """The limits a component runs with: the Trainer's (with its GPU), or the default."""
    if component_id == "Trainer":
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
    component_of = {component["executorLabel"]: name for name, component in spec["components"].items()}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        container = executor.get("container")
        if container is None or container.get("resources"):
            continue
        component = component_of.get(label, label)
        container["resources"] = json_format.MessageToDict(component_resources(component, kubeflow))
        logging.info("Set the resources of %s, which the compiler left without (tensorflow/tfx#6146).", label)
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
        component.with_platform_config(component_resources(component.id, kubeflow))
    return pipeline


def compile_pipeline(config: PipelineConfig, kubeflow: KubeflowConfig) -> str:
    """Writes the compiled pipeline to ``kubeflow.output``; returns its path.

    The runner compiles without writing; the spec gets the limits the compiler
    dropped (``with_missing_resources``), the Pusher's cache switched off
    (``with_uncached_tasks``) and the pipeline root as ``defaultPipelineRoot``,
    and is written by the runner's own writer, so the file is what the runner
    would write plus those fields.
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
    spec = with_uncached_tasks(spec, uncached_nodes.pusher_ids(pipeline))
    spec["defaultPipelineRoot"] = config.pipeline_root
    path = os.path.join(output_dir, filename)
    description = f"This is converted from TFX pipeline from tfx-{tfx_version.__version__}."
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file({**job, "pipelineSpec": spec}, description, path)  # noqa: SLF001 (the runner's format)
    return path
