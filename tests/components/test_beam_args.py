"""beam_pipeline_args: the one rule for Beam flags (components/beam_args.py)."""

from __future__ import annotations

from components import beam_args


def test_in_process_beam_runs_stage_nothing_and_user_runners_keep_tfx_staging() -> None:
    assert beam_args.beam_pipeline_args(()) == ["--runner=FnApiRunner", beam_args.NOTHING_TO_STAGE]
    workers = ("--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert beam_args.beam_pipeline_args(workers)[-1] == beam_args.NOTHING_TO_STAGE
    assert beam_args.beam_pipeline_args(("--setup_file=./setup.py",)) == [
        "--runner=FnApiRunner",
        "--setup_file=./setup.py",
    ]
    dataflow = ("--runner=DataflowRunner", "--project=p")
    assert beam_args.beam_pipeline_args(dataflow) == list(dataflow)
    named_local = ("--runner=DirectRunner", "--direct_num_workers=2")
    assert beam_args.beam_pipeline_args(named_local) == [*named_local, beam_args.NOTHING_TO_STAGE]
