"""Chosen nodes run on every local run while the rest of the pipeline stays cached."""

# No `from __future__ import annotations`: TFX reads the component functions' annotations as types.

import os
import shutil

import pytest
from tfx import v1 as tfx

from components.pusher import component as atomic_pusher
from components.served_model import component as served_model
from components.serving import repository as serving_dir
from pipeline.graph import node_ids, uncached_nodes

Model = tfx.types.standard_artifacts.Model
ModelBlessing = tfx.types.standard_artifacts.ModelBlessing


@tfx.dsl.components.component
def Produce(examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples]) -> None:  # noqa: N802
    """Writes one file; records that it ran."""
    with open(os.path.join(examples.uri, "data"), "w") as handle:
        handle.write("data")


@tfx.dsl.components.component
def Check(  # noqa: N802
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    log: tfx.dsl.components.Parameter[str],
) -> None:
    """Appends a line to ``log`` each time it runs."""
    with open(log, "a") as handle:
        handle.write(f"{examples.uri}\n")


def _run_twice(root: str, uncached: list[str] | None) -> list[str]:
    """Runs Produce -> Check twice with caching on; returns Check's log lines."""
    log = os.path.join(root, "check.log")
    for _ in range(2):
        produce = Produce()
        check = Check(examples=produce.outputs["examples"], log=log)
        pipeline = tfx.dsl.Pipeline(
            pipeline_name="uncached-test",
            pipeline_root=os.path.join(root, "tfx_root"),
            components=[produce, check],
            enable_cache=True,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                os.path.join(root, "metadata.sqlite")
            ),
        )
        runner = tfx.orchestration.LocalDagRunner()
        if uncached is not None:
            runner = uncached_nodes.UncachedNodesRunner(runner, uncached)
        runner.run(pipeline)
    with open(log) as handle:
        return handle.read().splitlines()


def test_an_uncached_node_runs_on_every_run_on_cached_inputs(tmp_path: object) -> None:
    assert len(_run_twice(str(tmp_path / "cached"), None)) == 1  # TFX's default: the second run is cached
    lines = _run_twice(str(tmp_path / "uncached"), ["Check"])
    assert len(lines) == 2
    assert lines[0] == lines[1]  # the same (cached) Produce output both times: Produce did not run again


def test_an_unknown_node_id_is_an_error(tmp_path: object) -> None:
    with pytest.raises(ValueError, match=r"No node \['Pusher'\] in pipeline 'uncached-test'; its nodes are \["):
        _run_twice(str(tmp_path), ["Pusher"])


def test_uncached_ids_are_the_pusher_and_the_served_model_step() -> None:
    pusher = atomic_pusher.create_pusher(
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        base_directory="/serving/model",
        settings=atomic_pusher.PusherSettings(keep_versions=2, allow_class_changes=False, tflite="none"),
    ).with_id("my_pusher")
    served = served_model.create_served_model("/serving/model").with_id("my_served_model")
    pipeline = tfx.dsl.Pipeline(pipeline_name="p", pipeline_root="/tmp/unused", components=[pusher, served])
    # Found by component type, whatever the graph named them.
    assert sorted(uncached_nodes.uncached_ids(pipeline)) == ["my_pusher", "my_served_model"]


@tfx.dsl.components.component
def TrainAndBless(  # noqa: N802
    model: tfx.dsl.components.OutputArtifact[Model], blessing: tfx.dsl.components.OutputArtifact[ModelBlessing]
) -> None:
    """A blessed stand-in for the Trainer's SavedModel."""
    os.makedirs(os.path.join(model.uri, "Format-Serving", "variables"))
    for name in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"):
        with open(os.path.join(model.uri, "Format-Serving", name), "w") as handle:
            handle.write(name)
    blessing.set_int_custom_property("blessed", 1)


def test_a_lost_serving_dir_is_pushed_again_by_a_cached_rerun(tmp_path: object) -> None:
    base = str(tmp_path / "serving" / "image_classifier")
    pushed_to = []
    for run in range(3):
        if run == 2:
            shutil.rmtree(base)
        train = TrainAndBless()
        pusher = atomic_pusher.create_pusher(
            train.outputs["model"],
            train.outputs["blessing"],
            base,
            atomic_pusher.PusherSettings(keep_versions=2, allow_class_changes=False, tflite="none"),
        ).with_id(node_ids.PUSHER)
        pipeline = tfx.dsl.Pipeline(
            pipeline_name="repair-test",
            pipeline_root=str(tmp_path / "tfx_root"),
            components=[train, pusher],
            enable_cache=True,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(tmp_path / "metadata.sqlite")
            ),
        )
        runner = uncached_nodes.UncachedNodesRunner(tfx.orchestration.LocalDagRunner(), [node_ids.PUSHER])
        runner.run(pipeline)
        pushed_to.append(serving_dir.list_versions(base))
    assert len(os.listdir(tmp_path / "tfx_root" / "TrainAndBless" / "model")) == 1  # cached on reruns
    assert pushed_to[0] == pushed_to[1] and len(pushed_to[0]) == 1  # an unchanged rerun copies nothing
    assert len(pushed_to[2]) == 1  # pushed again after the loss
    assert os.path.exists(os.path.join(base, str(pushed_to[2][0]), "saved_model.pb"))
