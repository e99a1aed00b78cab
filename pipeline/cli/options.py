"""Config flags: one click option per pydantic config field, grouped by section in ``--help``.

Everything a flag needs comes from the models (``pipeline/config/pipeline_config.py``
and ``components/modules/settings.py``): the flag name from the dotted key, the
type (``Literal`` values become choices), the help from ``Field(description=...)``,
the shown default, and the ``--help`` section from the field's
``json_schema_extra={"cli_section": ...}`` (or that of the nested model's field,
``trainer`` and ``trainer.augmentation``). A new field thus gets its flag with no
second list; a field without a section is listed under "Other settings".
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import click
from pydantic.fields import FieldInfo

from pipeline.config import pipeline_config as config_lib

NO_AUGMENTATION = "no_augmentation"
SECTION_KEY = "cli_section"  # json_schema_extra key: the field's section in --help
FLAG_KEY = "cli_flag"  # json_schema_extra key: a flag name other than the key's (beam_args -> beam-arg)
OTHER_SECTION = "Other settings"
OPTIONS_SECTION = "Options"

config_file_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file."
)


def _extra(field: FieldInfo) -> dict[str, Any]:
    """The field's ``json_schema_extra`` mapping (empty if none)."""
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def flag_name(key: str, field: FieldInfo) -> str:
    """The flag of a config field, without dashes.

    ``trainer.stage1_epochs`` -> ``stage1-epochs``; ``trainer.augmentation.flip`` ->
    ``augmentation-flip``; a field may name its own (``beam_args`` -> ``beam-arg``).
    """
    own = _extra(field).get(FLAG_KEY)
    if own:
        return str(own)
    return key.removeprefix("trainer.").replace(".", "-").replace("_", "-")


def _dest(key: str) -> str:
    """Click parameter names must be identifiers: ``trainer.seed`` -> ``trainer__seed``."""
    return key.replace(".", "__")


def _key(dest: str) -> str:
    """The inverse of :func:`_dest`."""
    return dest.replace("__", ".")


def section_of(key: str) -> str:
    """The ``--help`` section of a config key: its own, else the nearest nested model's.

    A nested model's section names where its keys go in the file:
    ``Training (trainer: in the config file)``.
    """
    parts = key.split(".")
    model: Any = config_lib.PipelineConfig
    found = OTHER_SECTION
    for depth, part in enumerate(parts):
        field = model.model_fields[part]
        title = _extra(field).get(SECTION_KEY)
        if title:
            is_nested = depth < len(parts) - 1
            found = f"{title} ({'.'.join(parts[: depth + 1])}: in the config file)" if is_nested else str(title)
        model = field.annotation
    return found


def _click_type(annotation: Any) -> Any:
    """Literal -> its choices; ``int | None`` -> int; int, float, str as themselves."""
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice(typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _click_type(inner[0]) if len(inner) == 1 else str
    return annotation if annotation in (int, float, str) else str


def _shown_default(field: FieldInfo) -> str:
    """``required``, the default, or ``none`` for an empty default."""
    if field.is_required():
        return "required"
    return "none" if field.default in ("", None) else str(field.default)


class ConfigOption(click.Option):
    """A click option that knows its ``--help`` section."""

    def __init__(self, *args: Any, section: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def config_option(key: str, field: FieldInfo) -> ConfigOption:
    """One click option for a config field: its description as help, Literal values as choices."""
    flag, dest, section = flag_name(key, field), _dest(key), section_of(key)
    annotation = field.annotation
    if annotation is bool:
        return ConfigOption([f"--{flag}/--no-{flag}", dest], default=None, help=_help(field), section=section)
    if typing.get_origin(annotation) is tuple:
        return ConfigOption(
            [f"--{flag}", dest], multiple=True, help=f"{field.description} Repeatable.", section=section
        )
    kind = _click_type(annotation)
    return ConfigOption([f"--{flag}", dest], type=kind, default=None, help=_help(field), section=section)


def _help(field: FieldInfo) -> str:
    """The flag's help: the field's description and its shown default."""
    return f"{field.description} [default: {_shown_default(field)}]"


def _no_augmentation_option() -> ConfigOption:
    """``--no-augmentation``: the one flag that is not a field (``augmentation: none`` in a file)."""
    return ConfigOption(
        ["--no-augmentation", NO_AUGMENTATION],
        is_flag=True,
        default=False,
        help="Turn every augmentation operation off (same as 'augmentation: none').",
        section=section_of("trainer.augmentation.flip"),
    )


def config_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: adds one flag per config field (the pydantic models are the one source)."""
    params = [config_option(key, field) for key, field in config_lib.flag_fields()]
    params.append(_no_augmentation_option())
    function.__click_params__ = [*getattr(function, "__click_params__", []), *reversed(params)]  # type: ignore[attr-defined]
    return function


class ConfigCommand(click.Command):
    """A command whose config flags are listed by section in ``--help``."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Writes the options grouped: the command's own first, then one section per topic."""
        sections: dict[str, list[tuple[str, str]]] = {OPTIONS_SECTION: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", OPTIONS_SECTION), []).append(record)
        for section, records in sections.items():
            with formatter.section(section):
                formatter.write_dl(records)


def config_from_flags(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """File values, then flags that were given (empty repeatable flags count as unset).

    Raises:
      config_lib.ConfigError: On a bad value, or --no-augmentation with --augmentation-* flags.
    """
    overrides = {
        _key(dest): value for dest, value in flags.items() if value not in (None, ()) and dest != NO_AUGMENTATION
    }
    if flags.get(NO_AUGMENTATION):
        if any(key.startswith("trainer.augmentation.") for key in overrides):
            raise config_lib.ConfigError("--no-augmentation cannot be combined with --augmentation-* flags.")
        overrides = {"trainer.augmentation": "none", **overrides}
    return config_lib.load_config(config_file, overrides)


def load_or_fail(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """:func:`config_from_flags`, a config error as one ``Error:`` line (exit 1)."""
    try:
        return config_from_flags(config_file, flags)
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from None
