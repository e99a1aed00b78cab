"""A local run's Beam flags and paths, checked and resolved before any work (pipeline/local/runner.py)."""

from __future__ import annotations

import os

import pytest

from components import beam_args
from pipeline.config.pipeline_config import build_config
from pipeline.local import runner as local_runner
from tests.helpers import tiny_run_config


def test_a_local_run_refuses_dataflow_whose_workers_cannot_reach_its_pipeline_root(tmp_path: object) -> None:
    flags = ("--runner=DataflowRunner", "--project=p", "--region=r", "--sdk_container_image=registry/pipeline:1")
    with pytest.raises(ValueError, match="cannot read or write this machine's pipeline_root .*Kubeflow or Vertex AI"):
        local_runner.preflight(tiny_run_config(str(tmp_path), beam_args=flags))


def test_a_local_run_refuses_workers_without_this_project(tmp_path: object) -> None:
    flags = ("--runner=FlinkRunner", "--flink_master=flink:8081")  # Beam's default SDK container
    with pytest.raises(beam_args.WorkerCodeError, match="--sdk_container_image="):
        local_runner.preflight(tiny_run_config(str(tmp_path), beam_args=flags))


def test_the_paths_beam_workers_see_are_made_absolute(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))
    config = build_config({"data_root": "images", "serving_dir": "serving"})
    resolved = local_runner.with_absolute_paths(config)
    assert resolved.data_root == os.path.join(str(tmp_path), "images")
    assert resolved.pipeline_root == os.path.join(str(tmp_path), "tfx_root")  # the default, relative
    assert resolved.metadata_path == os.path.join(str(tmp_path), "tfx_root", "metadata.sqlite")
    assert resolved.model_copy(update={"data_root": "images", "pipeline_root": "tfx_root"}) == config
