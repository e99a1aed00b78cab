"""Runs the pipeline on this machine: LocalDagRunner (default) or BeamDagRunner."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.orchestration import metadata
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2

from components import beam_args
from components.example_gen import component as image_example_gen
from components.ingest import image_files, splits
from components.ingest import plan as ingest_plan
from components.modules import model as model_lib
from components.modules import saved_model_backbone
from components.modules.settings import BACKBONES, TrainerSettings
from pipeline.config import gate_power
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.graph import uncached_nodes
from pipeline.graph.pipeline import create_pipeline
from pipeline.local import run_lock, tflite_ahead, user_code
from pipeline.report.mlmd_reader import read_run_report
from pipeline.report.run_report import RunReport

# Fewer files than this in a class gets a warning (the run goes on).
MIN_FILES_PER_CLASS = 10


def preflight(config: PipelineConfig) -> splits.Assignment:
    """Fails fast, before any Beam or training work, on anything knowable now.

    Checks the Beam flags (workers that can run the Beam steps of a local run), the
    data root (and shows how its files will split), the weights (a
    weights file is loaded into the configured architecture, so a file made for
    another backbone or ``backbone_alpha`` fails here; a ``hub:``/``savedmodel:``
    backbone is resolved, loaded and must return a feature vector for one
    ``image_size`` image), and that the pipeline root and the serving directory
    can be written.

    Returns:
      The split each candidate file will get.

    Raises:
      image_files.NoImagesError: If the (latest span of the) data root holds
        fewer than two class folders with files in them.
      model_lib.WeightsError: If the weights cannot be loaded.
      saved_model_backbone.SavedModelBackboneError, hub_cache.HubError: If a
        SavedModel backbone cannot be found, downloaded or used.
      OSError: If the pipeline root or the serving directory cannot be written.
      ValueError: If the pipeline root is a URI, or the Beam flags name Dataflow or
        workers without this project (``beam_args.WorkerCodeError``).
    """
    if "://" in config.pipeline_root:
        raise ValueError(
            f"pipeline_root {config.pipeline_root!r} is a URI: local runs keep MLMD in SQLite there, so it must be "
            "a local folder (use Kubeflow for gs:// or s3:// pipeline roots)."
        )
    _check_beam_workers(config)
    root, files = _list_data(config)
    counts = image_files.class_file_counts(root, files)
    for warning in image_files.check_classes(root, counts, MIN_FILES_PER_CLASS):
        logging.warning("Data: %s", warning)
    # The ingest's own checks, copy groups and assignment (an estimate, labelled so, on large data roots).
    limits = image_files.IngestLimits(config.max_pixels, config.min_side, config.near_duplicate_distance)
    preview = ingest_plan.preview(files, config.split_percents, limits)
    assignment = preview.assignment
    totals = {name: sum(c[name] for c in assignment.counts.values()) for name in splits.SPLIT_NAMES}
    logging.info("Data root %s: %d files; per class folder: %s; %s", root, len(files), counts, preview.line())
    for warning in preview.warnings():
        logging.warning("Data: %s", warning)
    for note in assignment.notes:
        logging.warning("Split: %s", note)
    for note in gate_power.gate_power_notes(config, totals[splits.TEST]):
        logging.warning("Gate: %s", note)
    for folder in (config.pipeline_root, config.serving_dir):
        _require_writable(folder)
    if config.schema_file and not tf.io.gfile.exists(config.schema_file):
        raise FileNotFoundError(
            f"schema_file {config.schema_file!r} does not exist; omit it to use the default schema."
        )
    _check_weights(config)
    return assignment


def _check_beam_workers(config: PipelineConfig) -> None:
    """Raises ValueError where the Beam workers could not run this local run's Beam steps.

    Dataflow's workers run on Google Cloud: they cannot read or write the local pipeline
    root that a local run keeps (MLMD is in SQLite there), so the steps would write their
    outputs onto the workers' disks. Any other runner's workers must run this project
    (``components/beam_args.py``, :class:`beam_args.WorkerCodeError`).
    """
    if beam_args.runner_name(config.beam_args) == beam_args.DATAFLOW_RUNNER:
        raise ValueError(
            f"beam_args name {beam_args.DATAFLOW_RUNNER}: its workers cannot read or write this machine's "
            f"pipeline_root {config.pipeline_root!r} (a local run keeps MLMD there, so it must be a local folder). "
            "Run the pipeline with Dataflow from Kubeflow or Vertex AI Pipelines (image-pipeline compile, gs:// "
            "data_root and pipeline_root; README, Scaling)."
        )
    beam_args.beam_pipeline_args(config.beam_args)


def _list_data(config: PipelineConfig) -> tuple[str, list[image_files.FoundFile]]:
    split = example_gen_pb2.Input.Split(name="images", pattern=config.input_pattern)
    if not tf.io.gfile.isdir(config.data_root):
        raise image_files.NoImagesError(f"Data root {config.data_root!r} does not exist or is not a folder.")
    try:
        # Resolves {SPAN}/{VERSION} in place exactly as the ExampleGen driver will.
        example_gen_utils.calculate_splits_fingerprint_span_and_version(
            config.data_root, [split], image_example_gen.span_range_config(config.span)
        )
    except ValueError as error:
        raise image_files.NoImagesError(
            f"No images found under {config.data_root!r} (input_pattern {config.input_pattern!r}): {error}"
        ) from error
    root = image_files.class_root(config.data_root, split.pattern)
    files = image_files.list_files(root)
    image_files.require_images(root, files)
    return root, files


def _require_writable(folder: str) -> None:
    """Raises OSError unless ``folder`` can be created or written, without leaving anything behind.

    A local folder is checked on its nearest existing ancestor (``access(2)`` also
    sees read-only mounts); a URI (gs://, s3://) gets a probe file written and removed.
    """
    if "://" in folder:
        probe = os.path.join(folder, f".write-probe-{os.getpid()}")
        try:
            with tf.io.gfile.GFile(probe, "w") as handle:
                handle.write("probe")
            tf.io.gfile.remove(probe)
        except tf.errors.OpError as error:
            raise OSError(f"Cannot write to {folder!r}: {error.message}. Choose a folder you can write to.") from None
        return
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OSError(f"Cannot create {folder!r}: {existing!r} is a file. Choose another folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(f"Cannot write to {folder!r}: {existing!r} is not writable. Choose a folder you can write to.")


def _check_weights(config: PipelineConfig) -> None:
    settings = config.trainer
    if settings.saved_model_backbone:
        # Resolves a hub: handle (cache or download) and runs one image through the model.
        features = saved_model_backbone.check(settings.backbone, settings.image_size)
        logging.info("Backbone %s: %d features per %dpx image", settings.backbone, features, settings.image_size)
        return
    if settings.weights_kind == "none":
        return
    path = settings.weights
    if settings.weights_kind == "base_model":
        path = model_lib.backbone_weights_path(config.base_model)
        if not tf.io.gfile.exists(path):
            raise model_lib.WeightsError(
                f"base_model {config.base_model!r} has no {model_lib.BACKBONE_WEIGHTS}: pass the URI of a Model "
                "artifact written by this pipeline's Trainer, e.g. tfx_root/Trainer/model/<id>."
            )
    if settings.weights_kind == "file" and not tf.io.gfile.exists(path):
        raise model_lib.WeightsError(
            f"Weights file not found: {path}. Pass the path (or gs://, s3:// URI) of a .weights.h5 file saved for "
            f"backbone {settings.backbone}, or --weights imagenet / none."
        )
    # Builds the configured backbone with these weights now: downloads (and caches) ImageNet
    # weights, and a file made for another architecture or alpha fails in seconds.
    try:
        model_lib.build_backbone(settings.backbone, settings.image_size, path, settings.backbone_alpha)
    except model_lib.WeightsError as error:
        raise model_lib.WeightsError(_weights_hint(str(error), settings, path)) from None


# Width multipliers that keras.applications MobileNets are built with (imagenet weights exist for these).
_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def _fitting_alpha(settings: TrainerSettings, path: str) -> float | None:
    """The ``backbone_alpha`` a weights file loads into, for a MobileNet backbone (None: no alpha fits)."""
    for alpha in _ALPHAS:
        if alpha == settings.backbone_alpha:
            continue
        try:
            model_lib.build_backbone(settings.backbone, settings.image_size, path, alpha)
        except (model_lib.WeightsError, ValueError):
            continue
        return alpha
    return None


def _weights_hint(message: str, settings: TrainerSettings, path: str) -> str:
    first = message.split(": ", 1)[0] if "does not fit" in message else message
    if "does not fit" not in message:
        return first
    if BACKBONES[settings.backbone].has_alpha:
        alpha = _fitting_alpha(settings, path)
        if alpha is not None:
            return (
                f"{first}: the file has backbone_alpha {alpha} (it loads into {settings.backbone} alpha {alpha}), "
                f"the config asks for {settings.backbone_alpha}. Set --backbone-alpha {alpha}."
            )
    alpha_text = f", backbone_alpha={settings.backbone_alpha}" if BACKBONES[settings.backbone].has_alpha else ""
    return (
        f"{first}: the file was made for another architecture. Set backbone (now {settings.backbone}{alpha_text}) "
        "and image_size to those the file was saved with."
    )


# The config's paths that reach Beam workers: each image's path (data_root) and every artifact URI
# (pipeline_root; the served baseline is copied there). The serving directory is the launcher's.
_WORKER_PATHS = ("data_root", "pipeline_root")


def with_absolute_paths(config: PipelineConfig) -> PipelineConfig:
    """The config with its local paths that Beam workers see made absolute (URIs as they are).

    TFX joins artifact URIs onto the pipeline root as given (``os.path.join(node_dir,
    key, str(execution_id))`` under ``<pipeline_root>/<node>``,
    tfx/orchestration/portable/outputs_utils.py, ``generate_output_artifacts``) and the
    ExampleGen hands the workers each image's path under the data root: relative, they
    resolve against each worker's working folder, not the launcher's. In-process that
    is the same folder; on the portable runner (tests/pipeline/local/test_portable_runner.py,
    the workers started in a folder of their own) every image was rejected as "cannot
    be read" and the examples were written into the workers' folder.
    """
    values = {name: getattr(config, name) for name in _WORKER_PATHS}
    local = {name: os.path.abspath(value) for name, value in values.items() if value and "://" not in value}
    return config.model_copy(update=local)


def run(config: PipelineConfig, wait_seconds: float = 0.0, steps: Callable[[int], None] | None = None) -> RunReport:
    """Runs the whole pipeline with SQLite MLMD under the pipeline root.

    Holds the pipeline root's run lock for the whole run (see ``run_lock``);
    ``wait_seconds`` is how long to wait for another run to finish (-1: no limit);
    ``steps`` is told how many steps the pipeline has before they run. User-code wheels
    are unpacked rather than pip-installed (``user_code``), and the Trainer's model is
    converted to TFLite while the Evaluators run (``tflite_ahead``). Local paths
    are made absolute first (:func:`with_absolute_paths`), so a Beam worker in another
    folder reads and writes the same files.

    Returns:
      What the run did, read back from MLMD.

    Raises:
      run_lock.PipelineRootBusyError: If another run holds the pipeline root.
    """
    config = with_absolute_paths(config)
    os.makedirs(config.pipeline_root, exist_ok=True)
    with run_lock.pipeline_root_lock(config.pipeline_root, wait_seconds):
        connection = metadata.sqlite_metadata_connection_config(config.metadata_path)
        runner = BeamDagRunner() if config.runner == "beam" else LocalDagRunner()
        logging.info(
            "Running pipeline %r with %s; MLMD at %s", config.pipeline_name, config.runner, config.metadata_path
        )
        pipeline = create_pipeline(config, connection)
        if steps:
            steps(len(pipeline.components))
        # The Pusher runs every time: it pushes again if the served version was lost.
        with user_code.unpacked_wheels(), tflite_ahead.converting_after_trainer(config.tflite, config.model_push_dir):
            uncached_nodes.UncachedNodesRunner(runner, uncached_nodes.uncached_ids(pipeline)).run(pipeline)
        return read_run_report(config.metadata_path, config.pipeline_name)
