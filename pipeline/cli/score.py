"""``image-pipeline score``: one CSV or JSONL row per file of a folder, scored by a pushed model."""

from __future__ import annotations

import contextlib
import sys

import click

from pipeline.config import pipeline_config as config_lib

# Mirror pipeline.predict.score's defaults: it imports TensorFlow, so it is imported inside the command.
_DEFAULT_TOP_K = 3
_DEFAULT_BATCH_SIZE = 64
# Ingest's per-file limits, as a run's config sets them by default.
_INGEST_FIELDS = config_lib.PipelineConfig.model_fields


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--model-dir",
    required=True,
    help="A model base path (<serving_dir>/<model_name>: its stable-labelled version, else the newest) "
    "or a SavedModel folder.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="The rows file: *.csv or *.jsonl (the extension picks the format).",
)
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=_DEFAULT_TOP_K,
    show_default=True,
    help="Classes per row (fewer if the model returns fewer).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=_DEFAULT_BATCH_SIZE, show_default=True, help="Files per batch."
)
@click.option(
    "--min-side",
    type=click.IntRange(min=1),
    default=_INGEST_FIELDS["min_side"].default,
    show_default=True,
    help="Refuse images with a shorter side (pixels), as ingest does (the config's min_side).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=_INGEST_FIELDS["max_pixels"].default,
    show_default=True,
    help="Refuse images with more pixels before decoding, as ingest does (the config's max_pixels).",
)
def score(
    folder: str,
    model_dir: str,
    output: str,
    overwrite: bool,
    top_k: int,
    batch_size: int,
    min_side: int,
    max_pixels: int,
) -> None:
    """Score every file under FOLDER: one row each, with its top classes or the reason it was refused.

    Files are checked as ingest checks them (hidden, empty, not an image,
    truncated, too small, ...), the rest go to the model in batches; a file the
    model refuses gets its own row with the model's reason. Rows are written as
    batches finish. Exits 0 once every file has its row, even if every file was
    refused (the last line says so); non-zero only for a bad folder, model or
    output file, or an error that stopped the run.
    """
    from components.ingest import image_files
    from pipeline.predict import score as score_lib
    from pipeline.predict import score_rows

    try:
        score_rows.output_format(output)
        version_dir, why = score_lib.resolve_served_model(model_dir)
        classify = score_lib.local_batch_classifier(version_dir)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Model: {version_dir} ({why})", err=True)
    with contextlib.ExitStack() as stack:
        bars: list = []

        def start(files: int) -> None:
            """The bar starts once the files are counted."""
            bars.append(
                stack.enter_context(click.progressbar(length=files, label="Scoring", file=sys.stderr, show_pos=True))
            )

        try:
            summary = score_lib.score_folder(
                folder,
                classify,
                output,
                model=f"{version_dir} ({why})",
                top_k=top_k,
                overwrite=overwrite,
                limits=image_files.IngestLimits(max_pixels=max_pixels, min_side=min_side),
                batch_size=batch_size,
                on_start=start,
                on_progress=lambda files: bars[0].update(files),
            )
        except (image_files.NoImagesError, FileExistsError, score_lib.ScoringStoppedError) as error:
            raise click.ClickException(str(error)) from error
    click.echo(score_rows.format_summary(summary))
