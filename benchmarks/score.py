"""Batch scoring throughput: ``image-pipeline score`` on a 10k-file folder vs the model alone and one call per file.

Writes N files (the demo's shapes, ``--size`` px, a few distinct encodings written
many times, about 2% bad: empty, truncated, text, hidden) and times, in one run:

  model only     ``serving_default`` in batches of ``--batch-size`` on the good files' bytes,
                 already in memory: no listing, checks or writing (the ceiling)
  one per file   what ``predict`` does: one model call per file (on the first
                 ``--per-file`` files; files/s extrapolates)
  score          ``pipeline.predict.score.score_folder``: list, read and check every file
                 as ingest does, batches, per-file fallback, one CSV row per file

Checks that score wrote one row per file. The model is ``--model-dir`` (a pushed
model, e.g. ``demo_workdir/serving/image_classifier``), or without it a stand-in:
the demo's backbone (shipped weights) with an untrained head behind a
``serving_default`` that decodes and resizes as the Trainer's does, without the TFT
graph the real export also runs (so a pushed model is somewhat slower per image).

    python benchmarks/score.py [--files 10000] [--size 32] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import tensorflow as tf

from components import signatures
from components.ingest import image_files
from components.modules import export, features
from components.modules import model as model_lib
from pipeline.demo import demo, demo_data
from pipeline.predict import predict, score, score_rows

DISTINCT = 24
BAD_EVERY = 50  # one file in 50 of each bad kind position: 2% bad files, 2% hidden


def _encoded(size: int) -> list[bytes]:
    rng = random.Random(0)
    images = []
    for index in range(DISTINCT):
        buffer = io.BytesIO()
        image = demo_data.render(demo_data.TARGET_CLASSES[index % 3], size, rng)
        image.save(buffer, format="PNG" if index % 2 else "JPEG")
        images.append(buffer.getvalue())
    return images


def write_folder(root: str, count: int, size: int) -> tuple[int, int]:
    """``count`` files under ``root`` in 20 folders; returns (good files, bad or hidden files)."""
    images = _encoded(size)
    bad = [b"", images[0][: len(images[0]) // 3], b"name,label\nx,y\n"]
    refused = 0
    for index in range(count):
        folder = os.path.join(root, f"batch_{index % 20:02d}")
        os.makedirs(folder, exist_ok=True)
        name, data = f"{index:05d}.png", images[index % DISTINCT]
        if index % BAD_EVERY == 7:
            data = bad[(index // BAD_EVERY) % len(bad)]
            refused += 1
        elif index % BAD_EVERY == 31:
            name = f".{name}"
            refused += 1
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data)
    return count - refused, refused


def stand_in_model(folder: str, size: int) -> str:
    """The demo's network (shipped backbone weights, untrained head) behind ``serving_default``."""
    classes = demo_data.TARGET_CLASSES
    backbone = model_lib.build_backbone(demo.BACKBONE, size, demo.SHIPPED_WEIGHTS, demo.ALPHA)
    classifier = model_lib.build_classifier(backbone, demo.BACKBONE, len(classes), 0.1)
    classify = export.classify_pixels(classifier, size)
    root = tf.Module()
    root.model_variables = [variable.value for variable in classifier.variables]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)])
    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = tf.math.top_k(classify(features.model_pixels(image_bytes, size)), k=len(classes))
        return {signatures.CLASSES_OUTPUT: tf.gather(tf.constant(classes), ids), signatures.SCORES_OUTPUT: scores}

    path = os.path.join(folder, "1")
    tf.saved_model.save(root, path, signatures={signatures.DEFAULT_SIGNATURE: serve})
    return path


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _model_only(classify: score.BatchClassifier, paths: list[str], batch_size: int) -> tuple[int, float]:
    """Files classified and seconds: the model alone, in batches, on bytes already read."""
    images = []
    for path in paths:
        with open(path, "rb") as handle:
            images.append(handle.read())
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        classify(paths[start : start + batch_size], images[start : start + batch_size])
    return len(images), time.perf_counter() - started


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32, help="Pixels per side of the generated images.")
    parser.add_argument("--batch-size", type=int, default=score.DEFAULT_BATCH_SIZE)
    parser.add_argument("--per-file", type=int, default=1000, help="Files timed one call per file.")
    parser.add_argument("--model-dir", help="A pushed model (default: a stand-in, see the docstring).")
    parser.add_argument("--out", default=_results.default_path("score"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="score_bench_")
    try:
        if args.model_dir:
            version_dir, why = score.resolve_served_model(args.model_dir)
            model = f"{version_dir} ({why})"
        else:
            version_dir = stand_in_model(os.path.join(work, "model"), demo.IMAGE_SIZE)
            model = f"stand-in: {demo.BACKBONE} {demo.ALPHA} at {demo.IMAGE_SIZE} px, untrained head"
        folder = os.path.join(work, "new_images")
        good, bad = write_folder(folder, args.files, args.size)
        classify = score.local_batch_classifier(version_dir)
        limits = image_files.IngestLimits()
        good_paths = [found.path for found in score.list_folder(folder) if not score.check_file(found, limits).refusal]
        _model_only(classify, good_paths[: args.batch_size], args.batch_size)  # warm-up: the first calls trace
        scored_images, model_seconds = _model_only(classify, good_paths, args.batch_size)
        one_by_one = predict.local_classifier(version_dir)
        subset = good_paths[: args.per_file]
        predict.classify_files(subset[:1], one_by_one)  # warm-up
        _, per_file_seconds = _timed(lambda: predict.classify_files(subset, one_by_one))
        output = os.path.join(work, "scores.csv")
        summary, score_seconds = _timed(
            lambda: score.score_folder(folder, classify, output, batch_size=args.batch_size)
        )
        rows = len(score_rows.read_rows(output))
        if rows != args.files or summary.scored != good:
            raise RuntimeError(
                f"score wrote {rows} rows ({summary.scored} scored) for {args.files} files ({good} good)"
            )
        table = [
            {"variant": "model only (batches, bytes in memory)", "files": scored_images, "seconds": model_seconds},
            {"variant": "one model call per file (as predict)", "files": len(subset), "seconds": per_file_seconds},
            {"variant": "score (list, check, batch, write rows)", "files": args.files, "seconds": score_seconds},
        ]
        for row in table:
            row["files_per_s"] = round(row["files"] / row["seconds"], 1)
            row["seconds"] = round(row["seconds"], 2)
        base = table[0]["files_per_s"]
        print(f"{'variant':<42} {'files':>7} {'seconds':>8} {'files/s':>9} {'vs model only':>14}")
        for row in table:
            row["ratio_vs_model_only"] = round(row["files_per_s"] / base, 3)
            print(
                f"{row['variant']:<42} {row['files']:>7} {row['seconds']:>8.1f} {row['files_per_s']:>9.1f} "
                f"{row['ratio_vs_model_only']:>14.2f}"
            )
        print(score_rows.format_summary(summary))
        _results.write(
            args.out,
            {
                "files": args.files,
                "good_files": good,
                "refused_files": bad,
                "size": args.size,
                "batch_size": args.batch_size,
                "model": model,
                "rows": table,
                "refused": summary.refused,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
