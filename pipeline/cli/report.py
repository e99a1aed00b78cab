"""``image-pipeline report``: (re)write a run's HTML model card from MLMD."""

from __future__ import annotations

import os

import click

from pipeline.config import pipeline_config as config_lib
from pipeline.config import preflight as early_checks

_DEFAULTS = config_lib.PipelineConfig.model_fields


def _rewrite(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str | None) -> str:
    """The report's path; a missing run or unreadable artifacts are one line."""
    from pipeline.report import html_report

    try:
        return html_report.rewrite_report(metadata_path, pipeline_name, pipeline_root, run_id)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    except (ValueError, KeyError) as error:  # pydantic's ValidationError is a ValueError
        raise click.ClickException(
            f"Cannot read that run's artifacts ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "runs made before the train/validation/test splits have no report."
        ) from None


@click.command()
@click.option("--run", "run_id", help="Run id as MLMD lists it (pipeline_run context name). Default: the latest run.")
@click.option(
    "--pipeline-root",
    default=_DEFAULTS["pipeline_root"].default,
    show_default=True,
    help="The pipeline root holding metadata.sqlite; the report goes to its reports/ folder.",
)
@click.option(
    "--pipeline-name",
    default=_DEFAULTS["pipeline_name"].default,
    show_default=True,
    help="The pipeline's name in MLMD.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the report in a web browser.")
def report(run_id: str | None, pipeline_root: str, pipeline_name: str, open_browser: bool) -> None:
    """(Re)write the HTML model card of a run from MLMD and print its path."""
    import webbrowser

    # model_construct: only the pipeline root matters for where MLMD lives.
    metadata_path = config_lib.PipelineConfig.model_construct(pipeline_root=pipeline_root).metadata_path
    default_root = pipeline_root == _DEFAULTS["pipeline_root"].default
    try:
        early_checks.check_metadata(metadata_path, pipeline_root, default_root)
    except early_checks.PathError as error:
        raise click.ClickException(str(error)) from None
    path = _rewrite(metadata_path, pipeline_name, pipeline_root, run_id)
    click.echo(path)
    if open_browser:
        webbrowser.open("file://" + os.path.abspath(path))
