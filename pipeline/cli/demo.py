"""The demo commands: ``demo``, ``generate-data`` (the synthetic shapes) and ``pretrain`` (a source backbone)."""

from __future__ import annotations

import sys

import click

from pipeline.cli import run as run_command
from pipeline.config import pipeline_config as config_lib
from pipeline.demo import demo_data


@click.command()
@click.option(
    "--workdir", default="demo_workdir", show_default=True, help="Where data, pipeline root and serving dir go."
)
@click.option(
    "--pretrain", "pretrain_here", is_flag=True, help="Pretrain the source backbone here, not the shipped file."
)
def demo(workdir: str, pretrain_here: bool) -> None:
    """Generate the embedded data, transfer a pretrained backbone, gate, push, predict."""
    from pipeline.demo import demo as demo_lib

    try:
        sys.exit(demo_lib.run_demo(workdir, pretrain_here, execute=run_command.execute))
    except (config_lib.ConfigError, ValueError, RuntimeError, OSError) as error:
        raise click.ClickException(str(error)) from None


@click.command("generate-data")
@click.option("--out", required=True, help="Output folder (one sub-folder per class).")
@click.option("--domain", type=click.Choice(["target", "source"]), default="target", show_default=True)
@click.option("--per-class", default=100, show_default=True)
@click.option("--image-size", default=96, show_default=True)
@click.option("--seed", default=0, show_default=True)
def generate_data(out: str, domain: str, per_class: int, image_size: int, seed: int) -> None:
    """Generate the synthetic shape data set used by the demo."""
    classes = demo_data.TARGET_CLASSES if domain == "target" else demo_data.SOURCE_CLASSES
    count = demo_data.generate(out, classes, per_class, image_size, seed)
    click.echo(f"Wrote {count} images to {out}")


@click.command()
@click.option("--data-root", required=True, help="Source-domain folder, one sub-folder per class.")
@click.option("--out", required=True, help="Output weights file (*.weights.h5).")
@click.option("--backbone", default=demo_data.BACKBONE, show_default=True)
@click.option("--backbone-alpha", default=demo_data.ALPHA, show_default=True)
@click.option("--image-size", default=demo_data.IMAGE_SIZE, show_default=True)
@click.option("--epochs", default=demo_data.PRETRAIN_EPOCHS, show_default=True)
@click.option("--batch-size", default=demo_data.PRETRAIN_BATCH_SIZE, show_default=True)
@click.option("--seed", default=demo_data.PRETRAIN_SEED, show_default=True)
def pretrain(
    data_root: str,
    out: str,
    backbone: str,
    backbone_alpha: float,
    image_size: int,
    epochs: int,
    batch_size: int,
    seed: int,
) -> None:
    """Pretrain a backbone from scratch on a source folder (offline stand-in for ImageNet)."""
    from pipeline.demo import pretrain as pretrain_lib

    metrics = pretrain_lib.pretrain_backbone(
        data_root, out, backbone, image_size, backbone_alpha, epochs, batch_size=batch_size, seed=seed
    )
    click.echo(f"Saved {out}: {metrics}")
