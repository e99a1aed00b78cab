"""On-device export: each TFLite variant vs the SavedModel's pixel signature on CPU.

For a pushed model (``make demo`` first, or ``--model-dir``), converts every
variant (float32, float16, dynamic) the way the Pusher does and measures: file
size, conversion seconds, single-image latency (median and p90, the same
decoded pixels for every variant; TFLite on one thread by default, the
SavedModel with TensorFlow's default threads) and top-1 agreement with the SavedModel on
the demo's held-out images (decoded by ``features.model_pixels``, the serving
chain). Calls are interleaved across variants so that other load on the
machine hits them all alike.

    python benchmarks/tflite.py [--model-dir demo_workdir/serving/image_classifier] [--holdout demo_workdir/holdout]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import numpy as np
import tensorflow as tf

from components import signatures
from components.modules import features
from components.pusher import executor as pusher_executor
from components.serving import tflite
from pipeline.predict import predict

VARIANTS = [variant for variant in tflite.VARIANTS if variant != "none"]
SAVED_MODEL = "SavedModel serve_pixels"


def _saved_model_bytes(model_dir: str) -> int:
    """What TF Serving loads: saved_model.pb and the variables (not assets.extra or the TFLite file)."""
    files = [os.path.join(model_dir, "saved_model.pb")]
    variables = os.path.join(model_dir, "variables")
    files += [os.path.join(variables, name) for name in os.listdir(variables)]
    return sum(os.path.getsize(path) for path in files)


def _percentile(times: list[float], fraction: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.path.join("demo_workdir", "serving", "image_classifier"))
    parser.add_argument("--holdout", default=os.path.join("demo_workdir", "holdout"))
    parser.add_argument("--repeats", type=int, default=300, help="Single-image calls per variant.")
    parser.add_argument(
        "--threads", type=int, default=1, help="TFLite interpreter threads (1: a phone's one big core)."
    )
    parser.add_argument("--out", default=_results.default_path("tflite"))
    args = parser.parse_args()
    model_dir = predict.resolve_model_dir(args.model_dir)
    classes = pusher_executor.class_names(model_dir)
    paths, _ = predict.expand_paths([args.holdout])
    labels = np.array([classes.index(os.path.basename(os.path.dirname(path))) for path in paths])
    loaded = tf.saved_model.load(model_dir).signatures
    if signatures.PIXELS_SIGNATURE not in loaded:
        raise SystemExit(
            f"{model_dir} has no {signatures.PIXELS_SIGNATURE} signature (pushed before TFLite support): "
            "run `make demo` again (the changed Trainer re-runs and pushes a new version)."
        )
    serve = loaded[signatures.PIXELS_SIGNATURE]
    size = serve.structured_input_signature[1][signatures.PIXELS_INPUT].shape[1]
    encoded = []
    for path in paths:
        with tf.io.gfile.GFile(path, "rb") as handle:
            encoded.append(handle.read())
    pixels = features.model_pixels(tf.constant(encoded), size).numpy()

    def saved_model_call(image: np.ndarray) -> np.ndarray:
        return serve(**{signatures.PIXELS_INPUT: tf.constant(image)})[signatures.PROBABILITIES_OUTPUT].numpy()

    calls = {SAVED_MODEL: saved_model_call}
    rows = {SAVED_MODEL: {"variant": SAVED_MODEL, "bytes": _saved_model_bytes(model_dir), "convert_s": None}}
    with tempfile.TemporaryDirectory() as folder:
        for variant in VARIANTS:
            started = time.monotonic()
            files = tflite.export_files(model_dir, variant, classes)
            seconds = time.monotonic() - started
            os.makedirs(os.path.join(folder, variant))
            for name, content in files.items():
                with open(os.path.join(folder, variant, name), "wb") as handle:
                    handle.write(content)
            model = tflite.OnDeviceModel(os.path.join(folder, variant, tflite.TFLITE_FILE), args.threads)
            calls[variant] = model.probabilities
            rows[variant] = {
                "variant": variant,
                "bytes": len(files[tflite.TFLITE_FILE]),
                "convert_s": round(seconds, 1),
            }
        outputs = {name: np.concatenate([call(image[None]) for image in pixels]) for name, call in calls.items()}
        times: dict[str, list[float]] = {name: [] for name in calls}
        rounds = 10
        for _ in range(rounds):
            for name, call in calls.items():
                for index in range(args.repeats // rounds):
                    image = pixels[index % len(pixels)][None]
                    started = time.perf_counter()
                    call(image)
                    times[name].append(time.perf_counter() - started)
    reference = outputs[SAVED_MODEL]
    for name, row in rows.items():
        got = outputs[name]
        row.update(
            mb=round(row["bytes"] / 1e6, 2),
            size_vs_saved_model=round(row["bytes"] / rows[SAVED_MODEL]["bytes"], 2),
            p50_ms=round(1000 * statistics.median(times[name]), 2),
            p90_ms=round(1000 * _percentile(times[name], 0.9), 2),
            agreement=round(float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1))), 4),
            max_abs_diff=float(np.abs(got - reference).max()),
            holdout_accuracy=round(float(np.mean(got.argmax(axis=1) == labels)), 4),
        )
    print(
        f"TFLite vs SavedModel on CPU ({model_dir}, {size}x{size}, {len(paths)} held-out images, "
        f"batch 1, {args.repeats} calls each, TFLite threads {args.threads})"
    )
    print(
        f"{'variant':<24} {'MB':>6} {'size':>6} {'convert s':>9} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'agree':>6} {'max |dp|':>9} {'held-out acc':>12}"
    )
    for row in rows.values():
        convert = "-" if row["convert_s"] is None else f"{row['convert_s']:.1f}"
        print(
            f"{row['variant']:<24} {row['mb']:>6.2f} {row['size_vs_saved_model']:>6.2f} {convert:>9} "
            f"{row['p50_ms']:>7.2f} {row['p90_ms']:>7.2f} {row['agreement']:>6.3f} {row['max_abs_diff']:>9.1e} "
            f"{row['holdout_accuracy']:>12.3f}"
        )
    _results.write(
        args.out,
        {"model": model_dir, "images": len(paths), "threads": args.threads, "rows": list(rows.values())},
    )


if __name__ == "__main__":
    main()
