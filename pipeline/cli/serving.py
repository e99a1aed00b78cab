"""``image-pipeline serving``: list versions, and move the canary/stable labels of TF Serving's model config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


@click.group()
def serving() -> None:
    """Roll out, promote and roll back model versions on TF Serving (version labels)."""


def _serving_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``--serving-dir`` and ``--model-name``, shared by every serving command."""
    for option in reversed(
        [
            click.option(
                "--serving-dir",
                required=True,
                help="Holds models.config and <model-name>/<version>/ (local, PVC, gs:// or s3://).",
            ),
            click.option(
                "--model-name", default="image_classifier", show_default=True, help="Model name on the server."
            ),
        ]
    ):
        function = option(function)
    return function


def _echo_label_change(change_labels: Callable[[], Any]) -> None:
    """Runs a label change and prints it; a refused change or a busy model config is one line."""
    try:
        change = change_labels()
    except (ValueError, FileNotFoundError, TimeoutError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(change.format(retry="this command"))


@serving.command("list")
@_serving_options
def serving_list(serving_dir: str, model_name: str) -> None:
    """Show the versions with their labels, accuracy and pipeline run."""
    from components.serving import labels, model_config
    from pipeline.cli import serving_table

    try:
        versions = labels.describe_versions(serving_dir, model_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(serving_table.format_versions(versions))  # the `serving list` table
    if not any(info.labels for info in versions):
        click.echo(
            f"No labels in {model_config.model_config_path(serving_dir)}: set one with `serving canary VERSION`."
        )


@serving.command("canary")
@click.argument("version", type=int)
@_serving_options
@click.option(
    "--server-base-path",
    help="Where TF Serving sees <serving-dir>/<model-name>, for a new config entry (e.g. /models/image_classifier).",
)
def serving_canary(version: int, serving_dir: str, model_name: str, server_base_path: str | None) -> None:
    """Put the canary label on VERSION (the first labelled version also becomes stable)."""
    from components.serving import labels as serving_ops

    _echo_label_change(lambda: serving_ops.set_canary(serving_dir, model_name, version, server_base_path))


@serving.command("promote")
@_serving_options
def serving_promote(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the canary version."""
    from components.serving import labels as serving_ops

    _echo_label_change(lambda: serving_ops.promote(serving_dir, model_name))


@serving.command("rollback")
@_serving_options
def serving_rollback(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the previous good version (no version is deleted)."""
    from components.serving import labels as serving_ops

    _echo_label_change(lambda: serving_ops.rollback(serving_dir, model_name))
