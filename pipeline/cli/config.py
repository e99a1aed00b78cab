"""``image-pipeline config show``: the effective configuration (defaults, file, flags) as YAML."""

from __future__ import annotations

from typing import Any

import click

from pipeline.cli import options


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show", cls=options.ConfigCommand)
@options.config_file_option
@options.config_options
def config_show(config_file: str | None, **flags: Any) -> None:
    """Print the effective configuration (defaults, then the file, then flags) as YAML."""
    import yaml

    config = options.load_or_fail(config_file, flags)
    click.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)
