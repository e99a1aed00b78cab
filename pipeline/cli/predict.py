"""``image-pipeline predict``: classify image files with a pushed model (SavedModel, TFLite or TF Serving)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click


def _classifier(
    model_dir: str | None, tflite_file: str | None, server: str | None, model_name: str, use_grpc: bool
) -> Callable[..., Any]:
    """The one classifier the flags ask for (TensorFlow imports happen in ``pipeline.predict``)."""
    from pipeline.predict import predict as predict_lib

    if model_dir:
        return predict_lib.local_classifier(model_dir)
    if tflite_file:
        return predict_lib.tflite_classifier(tflite_file)
    return predict_lib.server_classifier(server, model_name, use_grpc)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model-dir", help="Run locally: a pushed model base path (newest version) or a SavedModel folder.")
@click.option(
    "--tflite",
    "tflite_file",
    type=click.Path(dir_okay=False),
    help="Run a pushed model.tflite with the TFLite interpreter (class names from labels.txt beside it).",
)
@click.option("--server", help="Ask TF Serving: http://host:8501 (REST) or host:8500 with --grpc.")
@click.option("--grpc", "use_grpc", is_flag=True, help="Use gRPC (PredictionService) instead of REST.")
@click.option("--model-name", default="image_classifier", show_default=True, help="Model name on the server.")
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    help="Classes shown per image (default: all the model returns, i.e. the config's top_k).",
)
def predict(
    images: tuple[str, ...],
    model_dir: str | None,
    tflite_file: str | None,
    server: str | None,
    use_grpc: bool,
    model_name: str,
    top_k: int | None,
) -> None:
    """Classify image files, or every image in a folder, with a pushed model: locally, its TFLite file, or TF Serving.

    Prints every good prediction, then one line per file that failed with its
    reason; exits with 1 if any file failed.
    """
    from pipeline.predict import outcomes
    from pipeline.predict import predict as predict_lib

    if sum(option is not None for option in (model_dir, tflite_file, server)) != 1:
        raise click.UsageError("Pass exactly one of --model-dir (local), --tflite (on-device file) or --server.")
    paths, failures = predict_lib.expand_paths(images)
    try:
        classify = _classifier(model_dir, tflite_file, server, model_name, use_grpc)
        results = predict_lib.classify_files(paths, classify)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    predictions = [result for result in results if isinstance(result, outcomes.Prediction)]
    failures += [result for result in results if isinstance(result, outcomes.Failure)]
    if predictions:
        click.echo(predict_lib.format_table(predictions, top_k))
    if failures:
        click.echo(predict_lib.format_failures(failures), err=True)
        click.echo(f"{len(failures)} of {len(predictions) + len(failures)} files failed.", err=True)
        sys.exit(1)
