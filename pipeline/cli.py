"""The ``image-pipeline`` command: run, demo, predict, pretrain, generate-data, Kubeflow compile/dry run/submit.

Configuration is parsed here, once, into a typed ``PipelineConfig``; every
config field is also a flag (``--image-size 96``), and flags override the file.
"""

from __future__ import annotations

import logging
import os
import sys
import typing
import warnings
from collections.abc import Callable
from typing import Any

import click

from pipeline import config as config_lib
from pipeline import console, demo_data, early_checks

# Sections of `--help`: top-level config keys by topic (trainer keys have their own sections).
_SECTIONS = {
    "Data and splits": (
        "data_root", "input_pattern", "span", "validation_percent", "test_percent", "max_pixels", "min_side",
        "schema_file",
    ),
    "Gate and serving": (
        "min_accuracy", "max_accuracy_drop", "allow_class_changes", "allow_data_shift", "serving_dir", "model_name",
        "keep_versions", "tflite",
    ),
    "Comparison and transfer": ("compare_from_scratch", "base_model"),
    "Pipeline and runtime": (
        "pipeline_name", "pipeline_root", "runner", "beam_args", "enable_cache", "user_code", "transform_statistics",
    ),
}  # fmt: skip
_TRAINER_SECTION = "Training (trainer: in the config file)"
_AUGMENTATION_SECTION = "Augmentation (trainer.augmentation: in the config file)"
NO_AUGMENTATION = "no_augmentation"


def _flag_name(key: str) -> str:
    """``trainer.stage1_epochs`` -> ``stage1-epochs``; ``trainer.augmentation.flip`` -> ``augmentation-flip``."""
    return key.removeprefix("trainer.").replace(".", "-").replace("_", "-")


def _dest(key: str) -> str:
    """Click parameter names must be identifiers: ``trainer.seed`` -> ``trainer__seed``."""
    return key.replace(".", "__")


def _section(key: str) -> str:
    if key.startswith("trainer.augmentation."):
        return _AUGMENTATION_SECTION
    if key.startswith("trainer."):
        return _TRAINER_SECTION
    return next(section for section, keys in _SECTIONS.items() if key in keys)


def _option(key: str, field: Any) -> click.Option:
    """One click option for a config field: its description as help, Literal values as choices."""
    flag = _flag_name(key)
    default = "required" if field.is_required() else field.default if field.default not in ("", None) else "none"
    help_text = f"{field.description} [default: {default}]"
    annotation = field.annotation
    if annotation is bool:
        return click.Option([f"--{flag}/--no-{flag}", _dest(key)], default=None, help=help_text)
    if typing.get_origin(annotation) is tuple:
        return click.Option(["--beam-arg", _dest(key)], multiple=True, help=f"{field.description} Repeatable.")
    if typing.get_origin(annotation) is typing.Literal:
        kind: Any = click.Choice(typing.get_args(annotation))
    else:
        kind = {int: int, float: float, str: str}.get(annotation, int)  # int | None -> int
    return click.Option([f"--{flag}", _dest(key)], type=kind, default=None, help=help_text)


class ConfigCommand(click.Command):
    """A command whose config flags are listed by section in ``--help``."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Writes the options grouped: the command's own first, then one section per topic."""
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            key = (param.name or "").replace("__", ".")
            is_config = key in _CONFIG_KEYS or key == NO_AUGMENTATION
            section = _AUGMENTATION_SECTION if key == NO_AUGMENTATION else _section(key) if is_config else "Options"
            sections.setdefault(section, []).append(record)
        for section, records in sections.items():
            with formatter.section(section):
                formatter.write_dl(records)


_CONFIG_KEYS = {key for key, _ in config_lib.flag_fields()}


def _config_options(function: Any) -> Any:
    """Adds one flag per config field (the pydantic models are the one source)."""
    params = [_option(key, field) for key, field in config_lib.flag_fields()]
    params.append(
        click.Option(
            ["--no-augmentation", NO_AUGMENTATION],
            is_flag=True,
            default=False,
            help="Turn every augmentation operation off (same as 'augmentation: none').",
        )
    )
    function.__click_params__ = [*getattr(function, "__click_params__", []), *reversed(params)]
    return function


def config_from_flags(config_file: str | None, flags: dict[str, Any]) -> config_lib.PipelineConfig:
    """File values, then flags that were given (empty repeatable flags count as unset)."""
    overrides = {
        key.replace("__", "."): value
        for key, value in flags.items()
        if value not in (None, ()) and key != NO_AUGMENTATION
    }
    if flags.get(NO_AUGMENTATION):
        if any(key.startswith("trainer.augmentation.") for key in overrides):
            raise config_lib.ConfigError("--no-augmentation cannot be combined with --augmentation-* flags.")
        overrides = {"trainer.augmentation": "none", **overrides}
    return config_lib.load_config(config_file, overrides)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show every library message on the console too.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Transfer-learning image classification on TFX."""
    if not verbose:
        # Google client libraries' Python 3.10 end-of-support notices, raised at import.
        warnings.filterwarnings("ignore", category=FutureWarning)
    console.setup(verbose)
    ctx.obj = {"verbose": verbose}


def _execute(config: config_lib.PipelineConfig, wait_seconds: float = 0.0) -> Any:
    """Runs the pipeline with a log file in the pipeline root; a failure becomes one line.

    Returns:
      The run report (``pipeline.run_report.RunReport``), its log file path in ``log_path``.
    """
    from pipeline import html_report, local_runner, run_lock, run_log, run_report

    verbose = click.get_current_context().find_root().params["verbose"]
    earlier_run = run_report.latest_run_id(config.metadata_path, config.pipeline_name)
    log_path, handler = run_log.attach_log_file(config.pipeline_root)
    click.echo(f"Full log: {log_path}", err=True)
    try:
        with console.raw_output_to(log_path, enabled=not verbose):
            report = local_runner.run(config, wait_seconds, steps=console.progress.expect)
        report.log_path = log_path
        try:
            report.report_path = html_report.write_run_report(report, config.pipeline_root, config.to_dict())
        except Exception as error:  # noqa: BLE001 (the model is pushed; a report problem must not hide that)
            logging.warning("Could not write the HTML report: %s (details in the log file)", run_log.cause(error))
            logging.getLogger(run_log.FILE_ONLY_LOGGER).exception("HTML report")
    except run_lock.PipelineRootBusyError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # noqa: BLE001 (any step failure: one line here, the traceback in the log)
        component = run_report.failed_component(config.metadata_path, config.pipeline_name, earlier_run)
        raise click.ClickException(run_log.failure_line(component, error, log_path)) from None
    finally:
        run_log.detach(handler)
    return report


# `run` exit codes (README, "Operations").
EXIT_NOT_BLESSED = 3
EXIT_HELD_BACK = 4


@main.command(cls=ConfigCommand)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file.")
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="If another run holds the pipeline root: seconds to wait for it (-1: no limit; 0: stop at once).",
)
@click.option(
    "--fail-if-not-blessed",
    is_flag=True,
    help=f"Exit {EXIT_NOT_BLESSED} when the gate does not bless the model, {EXIT_HELD_BACK} when a blessed model "
    "is held back (class set changed, or a data shift), so a scheduler can tell the outcomes apart.",
)
@_config_options
def run(config_file: str | None, wait_seconds: float, fail_if_not_blessed: bool, **flags: Any) -> None:
    """Run the whole pipeline locally on a folder of labelled images."""
    try:
        config = config_from_flags(config_file, flags)
        early_checks.check_run(config)
    except (config_lib.ConfigError, early_checks.PathError) as error:
        raise click.ClickException(str(error)) from None
    from pipeline import local_runner  # TensorFlow and TFX: after the config and paths are known to be good

    try:
        local_runner.preflight(config)
    except (config_lib.ConfigError, ValueError, RuntimeError, OSError) as error:
        raise click.ClickException(str(error)) from None
    report = _execute(config, wait_seconds)
    click.echo(report.format())
    if fail_if_not_blessed and report.blessed is False:
        sys.exit(EXIT_NOT_BLESSED)
    if fail_if_not_blessed and report.not_pushed_reason:
        sys.exit(EXIT_HELD_BACK)


@main.command()
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
    from pipeline import predict as predict_lib

    if sum(option is not None for option in (model_dir, tflite_file, server)) != 1:
        raise click.UsageError("Pass exactly one of --model-dir (local), --tflite (on-device file) or --server.")
    paths, failures = predict_lib.expand_paths(images)
    try:
        if model_dir:
            classify = predict_lib.local_classifier(model_dir)
        elif tflite_file:
            classify = predict_lib.tflite_classifier(tflite_file)
        else:
            classify = predict_lib.server_classifier(server, model_name, use_grpc)
        results = predict_lib.classify_files(paths, classify)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    predictions = [result for result in results if isinstance(result, predict_lib.Prediction)]
    failures += [result for result in results if isinstance(result, predict_lib.Failure)]
    if predictions:
        click.echo(predict_lib.format_table(predictions, top_k))
    if failures:
        click.echo(predict_lib.format_failures(failures), err=True)
        click.echo(f"{len(failures)} of {len(predictions) + len(failures)} files failed.", err=True)
        sys.exit(1)


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
    from pipeline import pretrain as pretrain_lib

    metrics = pretrain_lib.pretrain_backbone(
        data_root, out, backbone, image_size, backbone_alpha, epochs, batch_size=batch_size, seed=seed
    )
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
        sys.exit(demo_lib.run_demo(workdir, pretrain_here, execute=_execute))
    except (config_lib.ConfigError, ValueError, RuntimeError, OSError) as error:
        raise click.ClickException(str(error)) from None


@main.command("hub-download")
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


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show", cls=ConfigCommand)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file.")
@_config_options
def config_show(config_file: str | None, **flags: Any) -> None:
    """Print the effective configuration (defaults, then the file, then flags) as YAML."""
    import yaml

    try:
        config = config_from_flags(config_file, flags)
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from None
    click.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)


@main.command("compile", cls=ConfigCommand)
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
@click.option(
    "--pvc",
    "pvc",
    multiple=True,
    metavar="NAME:/MOUNT/PATH",
    help="Mount PersistentVolumeClaim NAME at /MOUNT/PATH in every step (repeatable; .yaml output). "
    "data_root and serving_dir may then be paths under it.",
)
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
            pvc_mounts=mounts,
        )
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    for warning in volumes.local_path_warnings(volumes.cluster_paths(config), mounts):
        click.echo(warning, err=True)
    click.echo(f"Compiled {target} pipeline to {runner.compile_pipeline(config, kubeflow)}")


@main.command("kubeflow-dry-run", cls=ConfigCommand)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or JSON config file.")
@_config_options
def kubeflow_dry_run(config_file: str | None, **flags: Any) -> None:
    """Run the compiled Kubeflow spec on this machine, each step through its container command.

    Compiles the config as `compile` does, then gives every task the input KFP's
    launcher would and runs its command (kubeflow/local_harness.py). data_root,
    pipeline_root and serving_dir must be local folders. Checks the spec and the
    code, not the image or the cluster.
    """
    try:
        config = config_from_flags(config_file, flags)
    except config_lib.ConfigError as error:
        raise click.ClickException(str(error)) from error
    remote = [path for path in (config.data_root, config.pipeline_root, config.serving_dir) if "://" in path]
    if remote:
        raise click.ClickException(f"kubeflow-dry-run needs local folders; pass local paths instead of {remote}.")
    try:
        early_checks.check_run(config)
    except early_checks.PathError as error:
        raise click.ClickException(str(error)) from None
    from kubeflow import local_harness

    spec = local_harness.compile_for_local_run(config, os.path.join(config.pipeline_root, "pipeline.yaml"))
    try:
        result = local_harness.run_spec(spec)
    except (local_harness.SpecError, local_harness.TaskFailedError) as error:
        raise click.ClickException(str(error)) from error
    for name, task in result.tasks.items():
        click.echo(f"{name:<55} {task.state:<9} {task.seconds:7.1f} s")
    click.echo(_dry_run_outcome(result))


def _dry_run_outcome(result: Any) -> str:
    """The dry run's last line: what was pushed, or why not, with the gate's numbers (as `run` says it)."""
    from components import atomic_pusher
    from components.gate_evaluator import EVALUATOR_ID
    from pipeline import evaluation

    pushed = (result.artifact(atomic_pusher.PUSHER_ID, "pushed_model") or {}).get("metadata", {})
    blessing = (result.artifact(EVALUATOR_ID, "blessing") or {}).get("metadata", {})
    evaluated = result.artifact(EVALUATOR_ID, "evaluation")
    gate = evaluation.read_gate(evaluated["uri"], bool(blessing.get("blessed"))) if evaluated else None
    numbers = ""
    if gate is not None and gate.candidate_accuracy is not None:
        served = "none" if gate.baseline_accuracy is None else f"{gate.baseline_accuracy:.3f}"
        numbers = (
            f" (test accuracy {gate.candidate_accuracy:.3f} on {gate.test_examples} images; served model {served})"
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
    except (ValueError, OSError) as error:  # OSError: a missing package, an unreachable API
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
    except (ValueError, OSError) as error:  # OSError: a missing package, an unreachable API
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {created.kind} {created.id} in experiment {created.experiment_id}")


@main.command()
@click.option("--run", "run_id", help="Run id as MLMD lists it (pipeline_run context name). Default: the latest run.")
@click.option(
    "--pipeline-root",
    default=config_lib.PipelineConfig.model_fields["pipeline_root"].default,
    show_default=True,
    help="The pipeline root holding metadata.sqlite; the report goes to its reports/ folder.",
)
@click.option(
    "--pipeline-name",
    default=config_lib.PipelineConfig.model_fields["pipeline_name"].default,
    show_default=True,
    help="The pipeline's name in MLMD.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the report in a web browser.")
def report(run_id: str | None, pipeline_root: str, pipeline_name: str, open_browser: bool) -> None:
    """(Re)write the HTML model card of a run from MLMD and print its path."""
    import webbrowser

    # model_construct: only the pipeline root matters for where MLMD lives.
    metadata_path = config_lib.PipelineConfig.model_construct(pipeline_root=pipeline_root).metadata_path
    default_root = pipeline_root == config_lib.PipelineConfig.model_fields["pipeline_root"].default
    try:
        early_checks.check_metadata(metadata_path, pipeline_root, default_root)
    except early_checks.PathError as error:
        raise click.ClickException(str(error)) from None
    from pipeline import html_report

    try:
        path = html_report.rewrite_report(metadata_path, pipeline_name, pipeline_root, run_id)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    except (ValueError, KeyError) as error:  # pydantic's ValidationError is a ValueError
        raise click.ClickException(
            f"Cannot read that run's artifacts ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "runs made before the train/validation/test splits have no report."
        ) from None
    click.echo(path)
    if open_browser:
        webbrowser.open("file://" + os.path.abspath(path))


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

    _echo_label_change(lambda: serving_ops.set_canary(serving_dir, model_name, version, server_base_path))


@serving.command("promote")
@_serving_options
def serving_promote(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the canary version."""
    from pipeline import serving_ops

    _echo_label_change(lambda: serving_ops.promote(serving_dir, model_name))


@serving.command("rollback")
@_serving_options
def serving_rollback(serving_dir: str, model_name: str) -> None:
    """Move the stable label to the previous good version (no version is deleted)."""
    from pipeline import serving_ops

    _echo_label_change(lambda: serving_ops.rollback(serving_dir, model_name))


if __name__ == "__main__":
    main()
