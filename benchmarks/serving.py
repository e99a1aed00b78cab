"""Serving latency: the exported signature vs the bare Keras model, batch 1 and 32.

The exported ``serving_default`` takes encoded image bytes and runs decode, the
TFT resize/JPEG graph and the classifier; the baseline calls the same Keras
architecture (a compiled tf.function) on already decoded float tensors, which
is what a notebook measures. Needs a pushed model (run ``make demo`` first).

    python benchmarks/serving.py [--model-dir demo_workdir/serving/image_classifier]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import numpy as np
import tensorflow as tf

from components.modules import model as model_lib
from pipeline.demo import demo, demo_data
from pipeline.predict import predict


def _jpeg(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _latencies(call: callable, repeats: int) -> list[float]:
    call()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _row(name: str, batch: int, times: list[float]) -> dict:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "variant": name,
        "batch": batch,
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * p99, 2),
        "images_per_s": round(batch * len(times) / sum(times), 1),
    }


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.path.join("demo_workdir", "serving", "image_classifier"))
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=_results.default_path("serving"))
    args = parser.parse_args()
    model_dir = predict.resolve_model_dir(args.model_dir)
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    size = demo.IMAGE_SIZE
    rng = random.Random(0)
    images = [_jpeg(demo_data.render(demo_data.TARGET_CLASSES[i % 3], size, rng)) for i in range(32)]
    pixels = tf.constant(np.stack([tf.io.decode_jpeg(image).numpy() for image in images]).astype("float32"))
    backbone = model_lib.build_backbone(demo.BACKBONE, size, "none", demo.ALPHA)
    keras_model = model_lib.build_classifier(backbone, demo.BACKBONE, len(demo_data.TARGET_CLASSES), 0.2)
    keras_call = tf.function(lambda x: keras_model(x, training=False))
    rows = []
    for batch in (1, 32):
        encoded = tf.constant(images[:batch])
        decoded = pixels[:batch]
        baseline = _row(
            "Keras model, decoded tensors", batch, _latencies(lambda d=decoded: keras_call(d), args.repeats)
        )
        exported = _row(
            "serving_default, image bytes", batch, _latencies(lambda e=encoded: serve(image_bytes=e), args.repeats)
        )
        exported["p50_vs_keras"] = round(exported["p50_ms"] / baseline["p50_ms"], 2)
        baseline["p50_vs_keras"] = 1.0
        rows += [baseline, exported]
    print(f"Serving latency on CPU ({model_dir}, {size}x{size}, {args.repeats} calls each)")
    print(f"{'variant':<32} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'images/s':>9} {'p50 vs Keras':>13}")
    for row in rows:
        print(
            f"{row['variant']:<32} {row['batch']:>5} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['images_per_s']:>9.1f} {row['p50_vs_keras']:>13.2f}"
        )
    _results.write(args.out, {"model": model_dir, "rows": rows})


if __name__ == "__main__":
    main()
