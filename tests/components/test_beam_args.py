"""beam_pipeline_args: the one rule for Beam flags (components/beam_args.py)."""

from __future__ import annotations

import pytest

from components import beam_args


def test_in_process_beam_runs_stage_nothing_and_a_users_dependency_flag_stands() -> None:
    assert beam_args.beam_pipeline_args(()) == ["--runner=FnApiRunner", beam_args.NOTHING_TO_STAGE]
    workers = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert beam_args.beam_pipeline_args(workers)[-1] == beam_args.NOTHING_TO_STAGE
    assert beam_args.beam_pipeline_args(("--setup_file=./setup.py",)) == [
        "--runner=FnApiRunner",
        "--setup_file=./setup.py",
    ]
    named_local = ("--runner=DirectRunner", "--direct_num_workers=2")
    assert beam_args.beam_pipeline_args(named_local) == [*named_local, beam_args.NOTHING_TO_STAGE]
    staged = ("--runner=DataflowRunner", "--project=p", "--setup_file=setup.py")
    assert beam_args.beam_pipeline_args(staged) == list(staged)


@pytest.mark.parametrize(
    "flags",
    [
        # A worker pool (what tests/pipeline/local/test_portable_runner.py runs) or a command of the same image.
        ("--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=EXTERNAL"),
        ("--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=process"),
        ("--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK"),
        ("--runner=FlinkRunner",),  # an embedded Flink on this machine: LOOPBACK
        ("--runner=PrismRunner",),  # LOOPBACK unless told otherwise
        ("--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_config=registry/pipeline:1"),
    ],
)
def test_workers_that_run_this_project_keep_tfx_staging(flags: tuple[str, ...]) -> None:
    assert beam_args.workers_run_this_project(flags)
    # Not /dev/null: a runner that stages refuses it (apache_beam/runners/portability/stager.py).
    assert beam_args.beam_pipeline_args(flags) == list(flags)


def test_an_image_flag_is_the_users_staging() -> None:
    flags = ("--runner=apache_beam.runners.DataflowRunner", "--sdk_container_image=registry/pipeline:1")
    assert beam_args.runner_name(flags) == beam_args.DATAFLOW_RUNNER
    assert beam_args.beam_pipeline_args(flags) == list(flags)  # TFX stages nothing either (dependency_utils)


@pytest.mark.parametrize(
    "flags",
    [
        ("--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/tmp"),
        ("--runner=FlinkRunner", "--flink_master=flink:8081"),  # Beam's default SDK container
        ("--runner=PortableRunner", "--job_endpoint=spark:8099", "--environment_type=DOCKER"),
    ],
)
def test_workers_from_beams_default_container_are_refused_with_the_fix(flags: tuple[str, ...]) -> None:
    assert not beam_args.workers_run_this_project(flags)
    with pytest.raises(beam_args.WorkerCodeError, match="No module named 'components'.*--sdk_container_image="):
        beam_args.beam_pipeline_args(flags)
