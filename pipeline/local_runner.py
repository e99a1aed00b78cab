"""Runs the pipeline on this machine: LocalDagRunner (default) or BeamDagRunner."""

from __future__ import annotations

import logging
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components import image_example_gen, image_files
from components.modules import model as model_lib
from pipeline import run_lock, uncached_nodes
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.run_report import RunReport, read_run_report

# Fewer files than this in a class gets a warning (the run goes on).
MIN_FILES_PER_CLASS = 10


def preflight(config: PipelineConfig) -> None:
    """Fails fast, before any Beam or training work, on a bad data root or weights.

    Raises:
      image_files.NoImagesError: If the (latest span of the) data root holds
        fewer than two class folders with files in them.
      model_lib.WeightsError: If the weights cannot be loaded.
      ValueError: On an unknown backbone or a too small image size.
    """
    split = tfx.proto.Input.Split(name="images", pattern=config.input_pattern)
    if not os.path.isdir(config.data_root):
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
    counts = image_files.class_file_counts(root, files)
    logging.info("Data root %s: %d files; per class folder: %s", root, len(files), counts)
    for warning in image_files.check_classes(root, counts, MIN_FILES_PER_CLASS):
        logging.warning("Data: %s", warning)
    model_lib.get_backbone_spec(config.backbone)
    if config.base_model and not tf.io.gfile.exists(os.path.join(config.base_model, model_lib.BACKBONE_WEIGHTS)):
        raise model_lib.WeightsError(
            f"base_model {config.base_model!r} has no {model_lib.BACKBONE_WEIGHTS}: pass the URI of a Model artifact "
            "written by this pipeline's Trainer, e.g. tfx_root/Trainer/model/<id>."
        )
    if config.weights_kind == "file" and not tf.io.gfile.exists(config.weights):
        raise model_lib.WeightsError(f"Weights file not found: {config.weights}. {model_lib.WEIGHTS_HELP}")
    if config.weights_kind == "imagenet":
        # Downloads (and caches) the weights now, so an offline machine fails in seconds.
        model_lib.build_backbone(config.backbone, config.image_size, "imagenet", config.backbone_alpha)


def run(config: PipelineConfig) -> RunReport:
    """Runs the whole pipeline with SQLite MLMD under the pipeline root.

    Holds the pipeline root's run lock for the whole run (see ``run_lock``).

    Returns:
      What the run did, read back from MLMD.

    Raises:
      run_lock.PipelineRootBusyError: If another run holds the pipeline root.
    """
    os.makedirs(config.pipeline_root, exist_ok=True)
    with run_lock.pipeline_root_lock(config.pipeline_root):
        connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
        runner = BeamDagRunner() if config.runner == "beam" else tfx.orchestration.LocalDagRunner()
        logging.info(
            "Running pipeline %r with %s; MLMD at %s", config.pipeline_name, config.runner, config.metadata_path
        )
        pipeline = create_pipeline(config, connection)
        # The Pusher runs every time: it pushes again if the served version was lost.
        uncached_nodes.UncachedNodesRunner(runner, uncached_nodes.pusher_ids(pipeline)).run(pipeline)
        return read_run_report(config.metadata_path, config.pipeline_name)
