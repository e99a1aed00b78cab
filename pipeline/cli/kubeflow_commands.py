"""The Kubeflow commands: ``compile``, ``kubeflow-dry-run`` (the spec run here), ``submit`` and ``schedule``.

(Not named ``kubeflow.py``: run as a script, that would shadow the top-level ``kubeflow`` package.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from pipeline.cli import options
from pipeline.config import pipeline_config as config_lib
from pipeline.config import preflight as early_checks


@click.command("compile", cls=options.ConfigCommand)
@click.option("--target", type=click.Choice(["kubeflow"]), default="kubeflow", show_default=True)
@click.option("--image", required=True, help="Pipeline image, pinned by tag or digest (see kubeflow/Dockerfile).")
@click.option(
    "--output", default="kubeflow/pipeline.yaml", show_default=True, help=".yaml (KFP v2) or .json (PipelineJob)."
)
@click.option(
    "--trainer-gpu-type",
    default="nvidia.com/gpu",
    show_default=True,
    help="The Trainer's (and with tuning on the Tuner's) accelerator; empty for no GPU.",
)
@click.option("--trainer-gpu-count", default=1, show_default=True, help="GPUs of the Trainer and the Tuner.")
@click.option("--trainer-cpu", default=8.0, show_default=True)
@click.option("--trainer-memory-gib", default=32.0, show_default=True)
@click.option("--default-cpu", default=2.0, show_default=True)
@click.option("--default-memory-gib", default=8.0, show_default=True)
@click.option(
    "--pvc",
    "pvc",
    multiple=True,
    metavar="NAME:/MOUNT/PATH",
    help="Mount PersistentVolumeClaim NAME at /MOUNT/PATH in every step (repeatable; .yaml output). "
    "data_root and serving_dir may then be paths under it.",
)
@options.config_file_option
@options.config_options
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
    pvc: tuple[str, ...],
    config_file: str | None,
    **flags: Any,
) -> None:
    """Compile the pipeline for Kubeflow Pipelines v2 (no cluster needed).

    Prints a warning (stderr) for each path the pipeline's pods cannot reach: a
    relative path or one under /tmp that no --pvc mount holds, and a pipeline_root
    that is not a bucket URI.
    """
    from kubeflow import volumes

    try:
        early_checks.require_pinned_image(image)  # before the TFX import (seconds)
        mounts = tuple(volumes.PvcMount.parse(text) for text in pvc)
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    from kubeflow import runner

    try:
        config = options.config_from_flags(config_file, flags)
        kubeflow = runner.KubeflowConfig(
            image=image,
            output=output,
            trainer_gpu_type=trainer_gpu_type,
            trainer_gpu_count=trainer_gpu_count,
            trainer_cpu=trainer_cpu,
            trainer_memory_gib=trainer_memory_gib,
            default_cpu=default_cpu,
            default_memory_gib=default_memory_gib,
            pvc_mounts=mounts,
        )
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    for warning in volumes.local_path_warnings(volumes.cluster_paths(config), mounts):
        click.echo(warning, err=True)
    click.echo(f"Compiled {target} pipeline to {runner.compile_pipeline(config, kubeflow)}")


def _local_config(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """The dry run's config: valid, with local data, pipeline root and serving folders."""
    try:
        config = options.config_from_flags(config_file, flags)
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    remote = [path for path in (config.data_root, config.pipeline_root, config.serving_dir) if "://" in path]
    if remote:
        raise click.ClickException(f"kubeflow-dry-run needs local folders; pass local paths instead of {remote}.")
    try:
        early_checks.check_run(config)
    except early_checks.PathError as error:
        raise click.ClickException(str(error)) from None
    return config


@click.command("kubeflow-dry-run", cls=options.ConfigCommand)
@options.config_file_option
@options.config_options
def kubeflow_dry_run(config_file: str | None, **flags: Any) -> None:
    """Run the compiled Kubeflow spec on this machine, each step through its container command.

    Compiles the config as `compile` does, then gives every task the input KFP's
    launcher would and runs its command (kubeflow/local_harness.py). data_root,
    pipeline_root and serving_dir must be local folders. Checks the spec and the
    code, not the image or the cluster.
    """
    config = _local_config(config_file, flags)
    from kubeflow import local_harness

    spec = local_harness.compile_for_local_run(config, os.path.join(config.pipeline_root, "pipeline.yaml"))
    try:
        result = local_harness.run_spec(spec)
    except (local_harness.SpecError, local_harness.TaskFailedError) as error:
        raise click.ClickException(str(error)) from error
    for name, task in result.tasks.items():
        click.echo(f"{name:<55} {task.state:<9} {task.seconds:7.1f} s")
    click.echo(dry_run_outcome(result))


def dry_run_outcome(result: Any) -> str:
    """The dry run's last line: what was pushed, or why not, with the gate's numbers (as `run` says it).

    Args:
      result: The ``kubeflow.local_harness.RunResult`` of the dry run.
    """
    from components.evaluation import metrics as evaluation
    from components.pusher import component as atomic_pusher
    from pipeline.graph import node_ids

    pushed = (result.artifact(node_ids.PUSHER, "pushed_model") or {}).get("metadata", {})
    blessing = (result.artifact(node_ids.EVALUATOR, "blessing") or {}).get("metadata", {})
    evaluated = result.artifact(node_ids.EVALUATOR, "evaluation")
    gate = evaluation.read_gate(evaluated["uri"], bool(blessing.get("blessed"))) if evaluated else None
    numbers = ""
    if gate is not None and gate.candidate_accuracy is not None:
        served = "none"
        if gate.baseline_accuracy is not None:
            served = evaluation.with_interval(gate.baseline_accuracy, gate.test_examples)
        interval = gate.candidate_interval
        spread = f", 95% interval {interval[0]:.3f}-{interval[1]:.3f}" if interval else ""
        numbers = (
            f" (test accuracy {gate.candidate_accuracy:.3f} on {gate.test_examples} images{spread}; "
            f"served model {served})"
        )
    destination = pushed.get("pushed_destination") if pushed.get("pushed") else None
    if destination and pushed.get(atomic_pusher.PUSH_OUTCOME) == atomic_pusher.ALREADY_SERVED:
        return f"Already served: {destination}, no new version written{numbers}."
    if destination:
        return f"Pushed {destination}{numbers}."
    if pushed.get(atomic_pusher.NOT_PUSHED_REASON):
        return f"Held back: {pushed[atomic_pusher.NOT_PUSHED_REASON]}."
    reasons = "; ".join(gate.reasons) if gate is not None and gate.reasons else "see the Evaluator's blessing"
    where = f" Evaluation: {evaluated['uri']}" if evaluated else ""
    return f"Not pushed: not blessed: {reasons}{numbers}.{where}"


def _kfp_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: ``--package``, ``--endpoint`` and ``--experiment``, shared by submit and schedule."""
    for option in reversed(
        [
            click.option("--package", default="kubeflow/pipeline.yaml", show_default=True, help="Compiled pipeline."),
            click.option("--endpoint", envvar="KFP_ENDPOINT", help="KFP API host (or KFP_ENDPOINT)."),
            click.option("--experiment", default="image-transfer", show_default=True),
        ]
    ):
        function = option(function)
    return function


def _echo_created(create: Callable[[], Any]) -> None:
    """Calls the KFP client and prints what it created; a bad package or an unreachable API is one line."""
    try:
        created = create()
    except (ValueError, OSError) as error:  # OSError: a missing package, an unreachable API
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {created.kind} {created.id} in experiment {created.experiment_id}")


@click.command()
@_kfp_options
@click.option("--run-name", default="image-transfer", show_default=True)
def submit(package: str, endpoint: str | None, experiment: str, run_name: str) -> None:
    """Start one run of the compiled pipeline on Kubeflow Pipelines."""
    from kubeflow import client

    _echo_created(lambda: client.submit(package, endpoint or "", experiment, run_name))


@click.command()
@_kfp_options
@click.option("--cron", required=True, help="KFP cron (6 fields, seconds first), e.g. '0 0 3 * * *' for 03:00 daily.")
@click.option("--job-name", default="image-transfer-retraining", show_default=True)
def schedule(package: str, endpoint: str | None, experiment: str, cron: str, job_name: str) -> None:
    """Create a recurring run (scheduled retraining on the newest data span)."""
    from kubeflow import client

    _echo_created(lambda: client.schedule(package, endpoint or "", experiment, job_name, cron))
