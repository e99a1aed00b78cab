"""The ``image-pipeline`` command: run, demo, predict, pretrain, generate-data.

Configuration is parsed here, once, into a typed ``PipelineConfig``; every
config field is also a flag (``--image-size 96``), and flags override the file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import warnings
from typing import Any

import click

from pipeline import config as config_lib

_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _setup_logging(verbose: bool) -> None:
    if not verbose:
        # TensorFlow's C++ start-up chatter (CUDA probing, CPU flags), read when TF
        # loads, and Google client libraries' Python 3.10 end-of-support notices.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        warnings.filterwarnings("ignore", category=FutureWarning)
    from absl import logging as absl_logging

    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, force=True)
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in ("apache_beam", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def _config_options(function: Any) -> Any:
    """Adds one flag per PipelineConfig field (the dataclass is the one source)."""
    click_types = {"int": int, "int | None": int, "float": float, "str": str}
    for field in reversed(dataclasses.fields(config_lib.PipelineConfig)):
        flag = field.name.replace("_", "-")
        help_text = f"Config field {field.name} (default: {field.default if field.default is not dataclasses.MISSING else 'required'})."
        if field.type == "bool":
            option = click.option(f"--{flag}/--no-{flag}", field.name, default=None, help=help_text)
        elif field.type.startswith("tuple"):
            option = click.option(
                "--beam-arg",
                field.name,
                multiple=True,
                help="A Beam pipeline flag, repeatable (e.g. --beam-arg=--direct_num_workers=2).",
            )
        else:
            option = click.option(f"--{flag}", field.name, type=click_types[field.type], default=None, help=help_text)
        function = option(function)
    return function


def config_from_flags(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """File values, then flags that were given (empty repeatable flags count as unset)."""
    overrides = {key: value for key, value in flags.items() if value not in (None, ())}
    return config_lib.load_config(config_file, overrides)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show TFX/Beam/TensorFlow INFO logs too.")
def main(verbose: bool) -> None:
    """Transfer-learning image classification on TFX."""
    _setup_logging(verbose)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file.")
@_config_options
def run(config_file: str | None, **flags: Any) -> None:
    """Run the whole pipeline locally on a folder of labelled images."""
    from pipeline import local_runner

    try:
        config = config_from_flags(config_file, flags)
        local_runner.preflight(config)
    except (config_lib.ConfigError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    report = local_runner.run(config)
    click.echo(report.format())


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--model-dir", help="Run locally: a pushed model base path (newest version) or a SavedModel folder.")
@click.option("--server", help="Ask TF Serving: http://host:8501 (REST) or host:8500 with --grpc.")
@click.option("--grpc", "use_grpc", is_flag=True, help="Use gRPC (PredictionService) instead of REST.")
@click.option("--model-name", default="image_classifier", show_default=True, help="Model name on the server.")
@click.option("--top-k", default=3, show_default=True, help="Classes shown per image.")
def predict(
    images: tuple[str, ...], model_dir: str | None, server: str | None, use_grpc: bool, model_name: str, top_k: int
) -> None:
    """Classify image files with a pushed model, locally or through TF Serving."""
    from pipeline import predict as predict_lib
    from pipeline import serving_client

    if (model_dir is None) == (server is None):
        raise click.UsageError("Pass exactly one of --model-dir (local) or --server (TF Serving).")
    paths = list(images)
    try:
        if model_dir:
            predictions = predict_lib.predict_files(model_dir, paths)
        else:
            encoded = predict_lib.read_images(paths)
            call = serving_client.predict_grpc if use_grpc else serving_client.predict_rest
            predictions = call(server, model_name, paths, encoded)
    except (FileNotFoundError, ValueError, ConnectionError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(predict_lib.format_table(predictions, top_k))


@main.command("generate-data")
@click.option("--out", required=True, help="Output folder (one sub-folder per class).")
@click.option("--domain", type=click.Choice(["target", "source"]), default="target", show_default=True)
@click.option("--per-class", default=100, show_default=True)
@click.option("--image-size", default=96, show_default=True)
@click.option("--seed", default=0, show_default=True)
def generate_data(out: str, domain: str, per_class: int, image_size: int, seed: int) -> None:
    """Generate the synthetic shape data set used by the demo."""
    from pipeline import demo_data

    classes = demo_data.TARGET_CLASSES if domain == "target" else demo_data.SOURCE_CLASSES
    count = demo_data.generate(out, classes, per_class, image_size, seed)
    click.echo(f"Wrote {count} images to {out}")


@main.command()
@click.option("--data-root", required=True, help="Source-domain folder, one sub-folder per class.")
@click.option("--out", required=True, help="Output weights file (*.weights.h5).")
@click.option("--backbone", default="MobileNetV2", show_default=True)
@click.option("--backbone-alpha", default=0.35, show_default=True)
@click.option("--image-size", default=96, show_default=True)
@click.option("--epochs", default=6, show_default=True)
@click.option("--seed", default=0, show_default=True)
def pretrain(
    data_root: str, out: str, backbone: str, backbone_alpha: float, image_size: int, epochs: int, seed: int
) -> None:
    """Pretrain a backbone from scratch on a source folder (offline stand-in for ImageNet)."""
    from pipeline import pretrain as pretrain_lib

    metrics = pretrain_lib.pretrain_backbone(data_root, out, backbone, image_size, backbone_alpha, epochs, seed=seed)
    click.echo(f"Saved {out}: {metrics}")


@main.command()
@click.option(
    "--workdir", default="demo_workdir", show_default=True, help="Where data, pipeline root and serving dir go."
)
@click.option(
    "--pretrain", "pretrain_here", is_flag=True, help="Pretrain the source backbone here, not the shipped file."
)
def demo(workdir: str, pretrain_here: bool) -> None:
    """Generate the embedded data, transfer a pretrained backbone, gate, push, predict."""
    from pipeline import demo as demo_lib

    try:
        sys.exit(demo_lib.run_demo(workdir, pretrain_here))
    except (config_lib.ConfigError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error


@main.command("compile")
@click.option("--target", type=click.Choice(["kubeflow"]), default="kubeflow", show_default=True)
@click.option("--image", required=True, help="Pipeline image, pinned by tag or digest (see kubeflow/Dockerfile).")
@click.option(
    "--output", default="kubeflow/pipeline.yaml", show_default=True, help=".yaml (KFP v2) or .json (PipelineJob)."
)
@click.option("--trainer-gpu-type", default="nvidia.com/gpu", show_default=True, help="Empty for no GPU.")
@click.option("--trainer-gpu-count", default=1, show_default=True)
@click.option("--trainer-cpu", default=8.0, show_default=True)
@click.option("--trainer-memory-gib", default=32.0, show_default=True)
@click.option("--default-cpu", default=2.0, show_default=True)
@click.option("--default-memory-gib", default=8.0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file.")
@_config_options
def compile_command(
    target: str,
    image: str,
    output: str,
    trainer_gpu_type: str,
    trainer_gpu_count: int,
    trainer_cpu: float,
    trainer_memory_gib: float,
    default_cpu: float,
    default_memory_gib: float,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Compile the pipeline for Kubeflow Pipelines v2 (no cluster needed)."""
    from kubeflow import runner

    try:
        config = config_from_flags(config_file, flags)
        kubeflow = runner.KubeflowConfig(
            image=image,
            output=output,
            trainer_gpu_type=trainer_gpu_type,
            trainer_gpu_count=trainer_gpu_count,
            trainer_cpu=trainer_cpu,
            trainer_memory_gib=trainer_memory_gib,
            default_cpu=default_cpu,
            default_memory_gib=default_memory_gib,
        )
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Compiled {target} pipeline to {runner.compile_pipeline(config, kubeflow)}")


def _kfp_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--package", default="kubeflow/pipeline.yaml", show_default=True, help="Compiled pipeline."),
            click.option("--endpoint", envvar="KFP_ENDPOINT", help="KFP API host (or KFP_ENDPOINT)."),
            click.option("--experiment", default="image-transfer", show_default=True),
        ]
    ):
        function = option(function)
    return function


@main.command()
@_kfp_options
@click.option("--run-name", default="image-transfer", show_default=True)
def submit(package: str, endpoint: str | None, experiment: str, run_name: str) -> None:
    """Start one run of the compiled pipeline on Kubeflow Pipelines."""
    from kubeflow import client

    try:
        created = client.submit(package, endpoint or "", experiment, run_name)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {created.kind} {created.id} in experiment {created.experiment_id}")


@main.command()
@_kfp_options
@click.option("--cron", required=True, help="KFP cron (6 fields, seconds first), e.g. '0 0 3 * * *' for 03:00 daily.")
@click.option("--job-name", default="image-transfer-retraining", show_default=True)
def schedule(package: str, endpoint: str | None, experiment: str, cron: str, job_name: str) -> None:
    """Create a recurring run (scheduled retraining on the newest data span)."""
    from kubeflow import client

    try:
        created = client.schedule(package, endpoint or "", experiment, job_name, cron)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {created.kind} {created.id} in experiment {created.experiment_id}")


@main.group()
def serving() -> None:
    """Roll out, promote and roll back model versions on TF Serving (version labels)."""


def _serving_options(function: Any) -> Any:
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


@serving.command("list")
@_serving_options
def serving_list(serving_dir: str, model_name: str) -> None:
    """Show the versions with their labels, accuracy and pipeline run."""
    from pipeline import serving_ops

    try:
        versions = serving_ops.describe_versions(serving_dir, model_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(serving_ops.format_versions(versions))
    if not any(info.labels for info in versions):
        click.echo(f"No labels in {serving_ops.model_config_path(serving_dir)}: set one with `serving canary VERSION`.")


@serving.command("canary")
@click.argument("version", type=int)
@_serving_options
@click.option(
    "--server-base-path",
    help="Where TF Serving sees <serving-dir>/<model-name>, for a new config entry (e.g. /models/image_classifier).",
)
def serving_canary(version: int, serving_dir: str, model_name: str, server_base_path: str | None) -> None:
    """Put the canary label on VERSION (the first labelled version also becomes stable)."""
    from pipeline import serving_ops

    try:
        change = serving_ops.set_canary(serving_dir, model_name, version, server_base_path)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(change.format())


@serving.command("promote")
@_serving_options
def serving_promote(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the canary version."""
    from pipeline import serving_ops

    try:
        change = serving_ops.promote(serving_dir, model_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(change.format())


@serving.command("rollback")
@_serving_options
def serving_rollback(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the previous good version (no version is deleted)."""
    from pipeline import serving_ops

    try:
        change = serving_ops.rollback(serving_dir, model_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(change.format())


if __name__ == "__main__":
    main()
