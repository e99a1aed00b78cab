"""Checks of paths, files and image tags that need no TensorFlow: run before the heavy imports.

The CLI parses the config in well under a second, but importing TensorFlow and TFX
takes 10-20 s. Everything here uses ``os`` only, so a wrong ``--data-root``, a
missing ``--weights`` file, an unpinned ``--image`` or a ``report`` without its
pipeline root is one line at once, and the cost of a tuning run (``tuning_budget``)
is known before anything runs. URIs (gs://, s3://) are left to the checks that run
after the imports (``pipeline/local/runner.py``, ``preflight``).
"""

from __future__ import annotations

import logging
import os
import re

from pipeline.config.pipeline_config import ConfigError, PipelineConfig

# A container image pinned by tag or digest.
_PINNED_IMAGE = re.compile(r"^[^\s:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")
# What the ExampleGen reads as images (components/ingest/image_files.py decides for real).
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


class PathError(ValueError):
    """A path or file the run needs is missing or wrong; the message names the fix."""


def _local(path: str) -> bool:
    return "://" not in path


def require_pinned_image(image: str) -> None:
    """Raises ConfigError unless ``image`` is pinned by tag or digest (never ``:latest``)."""
    if not _PINNED_IMAGE.match(image) or image.endswith(":latest"):
        raise ConfigError(
            f"image must be pinned by tag or digest (not :latest), e.g. registry/tfx-image-transfer:0.1.0. "
            f"Received: image={image!r}"
        )


def _images_in(folder: str) -> int:
    return sum(
        1
        for name in os.listdir(folder)
        if name.lower().endswith(_IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, name))
    )


def check_data_root(config: PipelineConfig) -> None:
    """A local data root exists and, with the default pattern, is not itself a class folder.

    Raises:
      PathError: With the fix in the message.
    """
    root = config.data_root
    if not _local(root):
        return
    if not os.path.isdir(root):
        raise PathError(f"Data root {root!r} does not exist or is not a folder.")
    if "{" in config.input_pattern or config.input_pattern != "*/*":
        return
    subfolders = [name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))]
    loose = _images_in(root)
    if loose >= 2 and not any(_images_in(os.path.join(root, name)) for name in subfolders):
        parent = os.path.dirname(os.path.abspath(root))
        raise PathError(
            f"Data root {root!r} looks like a class folder: {loose} images sit directly in it and none in a "
            f"sub-folder. Point --data-root at the folder that holds one sub-folder per class (e.g. {parent!r})."
        )


def check_weights_file(config: PipelineConfig) -> None:
    """A local weights file exists.

    Raises:
      PathError: Naming the backbone the file must fit.
    """
    settings = config.trainer
    if settings.weights_kind != "file" or not _local(settings.weights) or os.path.isfile(settings.weights):
        return
    raise PathError(
        f"Weights file not found: {settings.weights}. Pass the path of a .weights.h5 file saved for backbone "
        f"{settings.backbone} (e.g. by `image-pipeline pretrain` or a Trainer's backbone.weights.h5), "
        "or --weights imagenet / none."
    )


def tuning_budget(config: PipelineConfig) -> str:
    """What the Tuner will cost, in trials and epochs (and minutes, with a time budget); empty when tuning is off.

    Each trial trains at most both stages once (Hyperband trains most trials for fewer
    epochs), so ``trials x (stage1 + stage2)`` epochs is the most the search trains, before
    the Trainer's own run.
    """
    tuning, trainer = config.tuning, config.trainer
    if not tuning.enabled:
        return ""
    per_trial = tuning.epochs_per_trial(trainer)
    stage2 = 0 if trainer.from_scratch else trainer.stage2_epochs
    budget = (
        f"Tuning budget: {tuning.trials} {tuning.algorithm} trials x {per_trial} epochs "
        f"({trainer.stage1_epochs} + {stage2}) = at most {tuning.trials * per_trial} training epochs before the "
        f"Trainer's own {per_trial}"
    )
    if tuning.max_minutes:
        budget += f"; no new trial starts after {tuning.max_minutes:g} minutes"
    searched = ", ".join(f"{name} {value}" for name, value in tuning.searched(trainer).items())
    return f"{budget}. Searching {searched}; each trial is scored on validation."


def check_run(config: PipelineConfig) -> None:
    """Every TensorFlow-free check of ``image-pipeline run`` and ``demo``-like commands; logs the tuning budget."""
    check_data_root(config)
    check_weights_file(config)
    budget = tuning_budget(config)
    if budget:
        logging.info("%s", budget)


def check_metadata(metadata_path: str, pipeline_root: str, default_root: bool) -> None:
    """The MLMD database a ``report`` reads is there.

    Raises:
      PathError: Saying which flag to pass.
    """
    if not _local(metadata_path) or os.path.exists(metadata_path):
        return
    hint = (
        "pass --pipeline-root with the pipeline_root the run used"
        if default_root
        else "is --pipeline-root the pipeline_root the run used?"
    )
    raise PathError(f"No MLMD database at {metadata_path} (pipeline root {pipeline_root!r}): {hint}.")
