"""Run a pipeline with caching on, except for the nodes that must look at the world each run.

A cached Pusher trusts MLMD: if the serving directory was deleted, a rerun with
every input unchanged reuses the old PushedModel and reports a version that no
longer exists. The Pusher must run on every run to check what is served.

TFX (1.16, still in 1.21) has no per-node cache switch in the DSL: the compiler writes the
pipeline's ``enable_cache`` into every node's ``execution_options.caching_options``
(tfx/dsl/compiler/compiler.py, ``_set_node_execution_options``), and the launcher
reads that per-node field (tfx/orchestration/portable/launcher.py, step 8 of
``_prepare_execution``). ``UncachedNodesRunner`` sets it to false for the chosen
nodes in the compiled IR, between ``IrBasedRunner.run`` (compile) and
``run_with_ir`` (execute), so ``create_pipeline`` stays pure. The Kubeflow
compile does the same in the compiled spec (``kubeflow/runner.py``,
``with_uncached_tasks``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tfx.components import Pusher
from tfx.orchestration.pipeline import Pipeline
from tfx.orchestration.portable import tfx_runner
from tfx.proto.orchestration import pipeline_pb2

from components.served_model.component import ServedModel

_LOOK_AT_THE_WORLD = (Pusher, ServedModel)


def uncached_ids(pipeline: Pipeline) -> list[str]:
    """The ids of the nodes that read the serving directory: every Pusher and served-model step."""
    return [component.id for component in pipeline.components if isinstance(component, _LOOK_AT_THE_WORLD)]


def disable_cache(ir: pipeline_pb2.Pipeline, node_ids: Collection[str]) -> None:
    """Turns caching off for ``node_ids`` in a compiled pipeline, in place.

    Raises:
      ValueError: If a node id is not in the pipeline (e.g. a renamed component).
    """
    nodes = {node.pipeline_node.node_info.id: node.pipeline_node for node in ir.nodes}
    unknown = sorted(set(node_ids) - set(nodes))
    if unknown:
        raise ValueError(f"No node {unknown} in pipeline {ir.pipeline_info.id!r}; its nodes are {sorted(nodes)}.")
    for node_id in node_ids:
        nodes[node_id].execution_options.caching_options.enable_cache = False


class UncachedNodesRunner(tfx_runner.IrBasedRunner):
    """Wraps an IR-based runner (LocalDagRunner, BeamDagRunner) and never caches some nodes."""

    def __init__(self, runner: tfx_runner.IrBasedRunner, node_ids: Collection[str]) -> None:
        """Wraps ``runner``; the nodes ``node_ids`` run on every run."""
        self._runner = runner
        self._node_ids = tuple(node_ids)

    def run_with_ir(
        self, pipeline: pipeline_pb2.Pipeline, run_options: pipeline_pb2.RunOptions | None = None, **kwargs: Any
    ) -> Any:
        """Runs the compiled ``pipeline`` with caching off for the chosen nodes."""
        disable_cache(pipeline, self._node_ids)
        return self._runner.run_with_ir(pipeline, run_options=run_options, **kwargs)
