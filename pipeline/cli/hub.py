"""``image-pipeline hub-download``: fill the TF Hub cache where there is network, for offline ``hub:`` backbones."""

from __future__ import annotations

import click


@click.command("hub-download")
@click.argument("handle")
@click.option(
    "--cache-dir",
    help="Cache folder to fill (default: $TFHUB_CACHE_DIR, else <system temp>/tfhub_modules, as tensorflow_hub).",
)
def hub_download(handle: str, cache_dir: str | None) -> None:
    """Download a TF Hub / Kaggle Models model into the cache and print its folder.

    Run it where there is network and copy the printed folder to the same name
    under the training machines' $TFHUB_CACHE_DIR; `backbone: hub:HANDLE` then
    loads it offline. HANDLE is the model URL (a leading hub: is accepted).
    """
    from components.modules import hub_cache

    try:
        click.echo(hub_cache.resolve(handle.removeprefix("hub:"), cache_dir))
    except hub_cache.HubError as error:
        raise click.ClickException(str(error)) from None
