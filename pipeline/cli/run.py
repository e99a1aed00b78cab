"""``image-pipeline run``: the whole pipeline on this machine, and the run-with-a-log-file step ``demo`` shares."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from pipeline.cli import options
from pipeline.config import pipeline_config as config_lib
from pipeline.config import preflight as early_checks
from pipeline.local import console

# `run` exit codes (README, "Operations").
EXIT_NOT_BLESSED = 3
EXIT_HELD_BACK = 4


def execute(config: config_lib.PipelineConfig, wait_seconds: float = 0.0) -> Any:
    """Runs the pipeline with a log file in the pipeline root; a failure becomes one line.

    Args:
      config: The validated config.
      wait_seconds: How long to wait for another run holding the pipeline root.

    Returns:
      The run report (``pipeline.report.run_report.RunReport``), its log file path in ``log_path``.

    Raises:
      click.ClickException: The pipeline root is busy, or a step failed (one line; the traceback in the log).
    """
    from pipeline.local import run_lock, run_log
    from pipeline.local import runner as local_runner
    from pipeline.report import html_report, mlmd_reader

    verbose = click.get_current_context().find_root().params["verbose"]
    earlier_run = mlmd_reader.latest_run_id(config.metadata_path, config.pipeline_name)
    log_path, handler = run_log.attach_log_file(config.pipeline_root)
    click.echo(f"Full log: {log_path}", err=True)
    try:
        with console.raw_output_to(log_path, enabled=not verbose):
            report = local_runner.run(config, wait_seconds, steps=console.progress.expect)
        report.log_path = log_path
        try:
            report.report_path = html_report.write_run_report(report, config.pipeline_root, config.to_dict())
        except Exception as error:  # noqa: BLE001 (the model is pushed; a report problem must not hide that)
            logging.warning("Could not write the HTML report: %s (details in the log file)", run_log.cause(error))
            logging.getLogger(run_log.FILE_ONLY_LOGGER).exception("HTML report")
    except run_lock.PipelineRootBusyError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # noqa: BLE001 (any step failure: one line here, the traceback in the log)
        component = mlmd_reader.failed_component(config.metadata_path, config.pipeline_name, earlier_run)
        raise click.ClickException(run_log.failure_line(component, error, log_path)) from None
    finally:
        run_log.detach(handler)
    return report


def _checked_config(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """The config, its paths and (after the TensorFlow import) its weights checked; a problem is one line."""
    try:
        config = options.config_from_flags(config_file, flags)
        early_checks.check_run(config)
    except (config_lib.ConfigError, early_checks.PathError) as error:
        raise click.ClickException(str(error)) from None
    from pipeline.local import (
        runner as local_runner,  # TensorFlow and TFX: after the config and paths are known to be good
    )

    try:
        local_runner.preflight(config)
    except (config_lib.ConfigError, ValueError, RuntimeError, OSError) as error:
        raise click.ClickException(str(error)) from None
    return config


@click.command(cls=options.ConfigCommand)
@options.config_file_option
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="If another run holds the pipeline root: seconds to wait for it (-1: no limit; 0: stop at once).",
)
@click.option(
    "--fail-if-not-blessed",
    is_flag=True,
    help=f"Exit {EXIT_NOT_BLESSED} when the gate does not bless the model, {EXIT_HELD_BACK} when a blessed model "
    "is held back (class set changed, or a data shift), so a scheduler can tell the outcomes apart.",
)
@options.config_options
def run(config_file: str | None, wait_seconds: float, fail_if_not_blessed: bool, **flags: Any) -> None:
    """Run the whole pipeline locally on a folder of labelled images."""
    config = _checked_config(config_file, flags)
    report = execute(config, wait_seconds)
    click.echo(report.format())
    if fail_if_not_blessed and report.blessed is False:
        sys.exit(EXIT_NOT_BLESSED)
    if fail_if_not_blessed and report.not_pushed_reason:
        sys.exit(EXIT_HELD_BACK)
