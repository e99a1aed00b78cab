"""Which format should Transform write resized images in? Bytes and decode speed.

Compares, on the same resized images, float32 pixels (the baseline: what a
naive preprocessing_fn writes), uint8 pixels, PNG and JPEG q95 (our choice):
bytes per image inside a tf.Example and images/s to decode a batch back to
float pixels in the Trainer's input pipeline. Prints a table and writes JSON.

    python benchmarks/transformed_format.py [--size 224] [--images 200]
"""

from __future__ import annotations

import argparse
import logging
import random
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import numpy as np
import tensorflow as tf

from components.modules import features
from pipeline.demo import demo_data


def _example_bytes(feature: tf.train.Feature) -> int:
    return len(tf.train.Example(features=tf.train.Features(feature={"image_xf": feature})).SerializeToString())


def _bytes_feature(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _time_decode(decode: callable, batch: tf.Tensor, repeats: int = 3) -> float:
    decode(batch)  # trace
    started = time.perf_counter()
    for _ in range(repeats):
        decode(batch)
    return repeats * int(batch.shape[0]) / (time.perf_counter() - started)


def measure(size: int, count: int) -> list[dict]:
    """Measures each format on ``count`` demo images resized to ``size``."""
    rng = random.Random(0)
    labels = demo_data.TARGET_CLASSES
    pil_images = [demo_data.render(labels[i % len(labels)], size, rng) for i in range(count)]
    pixels = tf.constant(np.stack([np.asarray(image) for image in pil_images]))
    jpeg = features.encode_transformed(pixels)
    png = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)
    shape = [size, size, 3]

    def float32_decode(batch: tf.Tensor) -> tf.Tensor:
        return tf.reshape(batch, [-1, *shape])

    candidates = {
        "float32 pixels": (
            [
                _example_bytes(tf.train.Feature(float_list=tf.train.FloatList(value=p.ravel())))
                for p in pixels.numpy().astype(np.float32)
            ],
            float32_decode,
            tf.cast(pixels, tf.float32),
        ),
        "uint8 raw bytes": (
            [_example_bytes(_bytes_feature([p.tobytes()])) for p in pixels.numpy()],
            tf.function(lambda b: tf.cast(tf.reshape(tf.io.decode_raw(b, tf.uint8), [-1, *shape]), tf.float32)),
            tf.constant([p.tobytes() for p in pixels.numpy()]),
        ),
        "PNG": (
            [_example_bytes(_bytes_feature([b])) for b in png.numpy()],
            tf.function(
                lambda b: tf.map_fn(
                    lambda x: tf.cast(tf.io.decode_png(x, channels=3), tf.float32),
                    b,
                    fn_output_signature=tf.TensorSpec(shape, tf.float32),
                )
            ),
            png,
        ),
        "JPEG q95 (chosen)": (
            [_example_bytes(_bytes_feature([b])) for b in jpeg.numpy()],
            tf.function(lambda b: features.decode_transformed(b, size)),
            jpeg,
        ),
    }
    baseline = float(np.mean(candidates["float32 pixels"][0]))
    rows = []
    for name, (sizes, decode, batch) in candidates.items():
        mean_bytes = float(np.mean(sizes))
        rows.append(
            {
                "format": name,
                "bytes_per_image": round(mean_bytes),
                "size_vs_float32": round(mean_bytes / baseline, 4),
                "decode_images_per_s": round(_time_decode(decode, batch), 1),
            }
        )
    return rows


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--out", default=_results.default_path("transformed_format"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    rows = measure(args.size, args.images)
    print(f"Transformed image format, {args.images} demo images at {args.size}x{args.size}")
    print(f"{'format':<20} {'bytes/image':>12} {'vs float32':>11} {'decode img/s':>13}")
    for row in rows:
        print(
            f"{row['format']:<20} {row['bytes_per_image']:>12,} {row['size_vs_float32']:>11.3f} {row['decode_images_per_s']:>13,.0f}"
        )
    _results.write(args.out, {"size": args.size, "rows": rows})


if __name__ == "__main__":
    main()
