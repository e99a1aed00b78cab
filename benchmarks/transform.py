"""Transform throughput: the TFX Transform component vs a plain tf.data loop.

Generates N demo images, ingests them once with the ImageFolder ExampleGen (raw
tf.Examples, train and eval splits), then produces the same transformed examples
(image resized and re-encoded as JPEG q95, label as a class index) three ways:

  baseline      a plain tf.data loop: read the raw TFRecords, parse, decode +
                resize + encode with the same ops (``features.py``), serialize
                tf.Examples in Python, write gzipped TFRecords; one process
  transform     the TFX Transform executor as the pipeline runs it (Beam
                FnApiRunner; analyze the train split, transform both splits,
                pre- and post-transform statistics)
  transform -stats  the same with ``disable_statistics`` (the pipeline's default)
  multi_threading  the same on Beam's multi-threaded direct mode, one thread per core
  multi_processing the same on each ``--workers`` count of SDK worker processes (``--workers
                1,2,4``; none by default), with a table of images/s per count against one
                worker and the loop (why this mode and not the portable runner:
                benchmarks/_scaling.py)

Prints images/s, the ratio to the baseline and bytes per transformed image, checks
that every variant wrote every example, and writes JSON.

    python benchmarks/transform.py [--images 2000] [--source-size 256] [--image-size 224] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import _scaling
import tensorflow as tf
from tfx.components.transform import executor as transform_executor
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs

from components.beam_args import beam_pipeline_args
from components.example_gen import component as image_example_gen
from components.modules import features
from pipeline.demo import demo_data
from pipeline.graph import pipeline

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_KEY)
RAW_SPEC = {
    features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.string),
}
BATCH = 64
BASELINE = "baseline (tf.data loop, 1 process)"


def _raw_dataset(raw_uri: str) -> tf.data.Dataset:
    files = tf.io.gfile.glob(os.path.join(raw_uri, "Split-*", "*"))
    return tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)


def baseline(raw_uri: str, out_dir: str, image_size: int) -> int:
    """What a user would write without TFX: one pass for the class names, one to transform."""
    labels = _raw_dataset(raw_uri).map(lambda records: tf.io.parse_example(records, RAW_SPEC)[features.LABEL_KEY])
    names = sorted({bytes(label) for batch in labels for label in batch.numpy().ravel()})
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(names), tf.range(len(names), dtype=tf.int64)), -1
    )

    def transform(records: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_example(records, RAW_SPEC)
        images = features.decode_and_resize(tf.reshape(parsed[features.IMAGE_KEY], [-1]), image_size)
        return features.encode_transformed(images), table.lookup(tf.reshape(parsed[features.LABEL_KEY], [-1]))

    dataset = _raw_dataset(raw_uri).map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(out_dir, "data.tfrecord.gz"), options) as writer:
        for jpegs, indices in dataset:
            for jpeg, index in zip(jpegs.numpy(), indices.numpy(), strict=True):
                feature = {
                    IMAGE_XF: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                    LABEL_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                written += 1
    return written


def _artifact(kind: type, uri: str) -> standard_artifacts.Artifact:
    artifact = kind()
    artifact.uri = uri
    return artifact


def run_transform(
    examples: standard_artifacts.Examples,
    out_dir: str,
    image_size: int,
    statistics: bool,
    beam_args: tuple[str, ...] = (),
) -> None:
    """The pipeline's Transform executor outside a pipeline (no MLMD), on FnApiRunner."""
    schema_dir = os.path.join(out_dir, "schema")
    os.makedirs(schema_dir)
    shutil.copy(pipeline.DEFAULT_SCHEMA_FILE, schema_dir)
    outputs = {
        specs.TRANSFORM_GRAPH_KEY: [_artifact(standard_artifacts.TransformGraph, os.path.join(out_dir, "graph"))],
        specs.TRANSFORMED_EXAMPLES_KEY: [_artifact(standard_artifacts.Examples, os.path.join(out_dir, "examples"))],
    }
    if statistics:
        for key, kind in (
            (specs.PRE_TRANSFORM_SCHEMA_KEY, standard_artifacts.Schema),
            (specs.PRE_TRANSFORM_STATS_KEY, standard_artifacts.ExampleStatistics),
            (specs.POST_TRANSFORM_SCHEMA_KEY, standard_artifacts.Schema),
            (specs.POST_TRANSFORM_STATS_KEY, standard_artifacts.ExampleStatistics),
            (specs.POST_TRANSFORM_ANOMALIES_KEY, standard_artifacts.ExampleAnomalies),
        ):
            outputs[key] = [_artifact(kind, os.path.join(out_dir, key))]
    exec_properties = {
        specs.PREPROCESSING_FN_KEY: "components.modules.transform.preprocessing_fn",
        specs.CUSTOM_CONFIG_KEY: json.dumps({"image_size": image_size}),
        specs.DISABLE_STATISTICS_KEY: int(not statistics),
    }
    context = transform_executor.Executor.Context(
        beam_pipeline_args=beam_pipeline_args(beam_args), tmp_dir=tempfile.mkdtemp()
    )
    inputs = {specs.EXAMPLES_KEY: [examples], specs.SCHEMA_KEY: [_artifact(standard_artifacts.Schema, schema_dir)]}
    transform_executor.Executor(context).Do(inputs, outputs, exec_properties)


def _measure_output(pattern: str) -> dict[str, float]:
    """Examples written, mean bytes of the stored image feature, gzipped bytes on disk per example."""
    files = tf.io.gfile.glob(pattern)
    count, image_bytes = 0, 0
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(256):
        images = tf.io.parse_example(record, {IMAGE_XF: tf.io.FixedLenFeature([], tf.string)})[IMAGE_XF]
        count += int(images.shape[0])
        image_bytes += int(tf.reduce_sum(tf.strings.length(images)))
    disk = sum(tf.io.gfile.stat(path).length for path in files)
    return {
        "examples": count,
        "image_bytes": round(image_bytes / max(count, 1)),
        "disk_bytes": round(disk / max(count, 1)),
    }


def _variants(
    examples: standard_artifacts.Examples, image_size: int, worker_counts: list[int]
) -> dict[str, tuple[Callable[[str], None], str]]:
    """name -> (run into a folder, glob of the transformed records under it)."""
    workers = os.cpu_count() or 1
    threads = ("--direct_running_mode=multi_threading", f"--direct_num_workers={workers}")
    variants = {
        BASELINE: (
            lambda out: baseline(examples.uri, out, image_size),
            "data.tfrecord.gz",
        ),
        "Transform executor, with statistics": (
            lambda out: run_transform(examples, out, image_size, statistics=True),
            "examples/Split-*/*",
        ),
        "Transform executor, no statistics (default)": (
            lambda out: run_transform(examples, out, image_size, statistics=False),
            "examples/Split-*/*",
        ),
        f"same, Beam multi_threading x{workers}": (
            lambda out: run_transform(examples, out, image_size, statistics=False, beam_args=threads),
            "examples/Split-*/*",
        ),
    }
    for count in worker_counts:
        variants[_scaling.variant("same, Beam", count)] = (
            _multi_processing(examples, image_size, count),
            "examples/Split-*/*",
        )
    return variants


def _multi_processing(examples: standard_artifacts.Examples, image_size: int, workers: int) -> Callable[[str], None]:
    flags = tuple(_scaling.beam_args(workers))
    return lambda out: run_transform(examples, out, image_size, statistics=False, beam_args=flags)


def _print(rows: list[dict], images: int, source: int, size: int) -> None:
    print(f"Transform throughput, {images} images {source}x{source} -> {size}x{size} JPEG q95")
    print(
        f"{'variant':<44} {'examples':>8} {'seconds':>8} {'images/s':>9} {'vs baseline':>12} {'B/image':>8} {'B/disk':>7}"
    )
    for row in rows:
        print(
            f"{row['variant']:<44} {row['examples']:>8} {row['seconds']:>8.1f} {row['images_per_s']:>9.1f} "
            f"{row['ratio_vs_baseline']:>12.3f} {row['image_bytes']:>8} {row['disk_bytes']:>7}"
        )


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source-size", type=int, default=256, help="Side of the generated source images.")
    parser.add_argument("--image-size", type=int, default=224, help="Side after Transform.")
    parser.add_argument(
        "--workers",
        type=_scaling.parse_workers,
        default="",
        help="SDK worker process counts to also run Transform on (Beam multi_processing), e.g. 1,2,4.",
    )
    parser.add_argument("--out", default=_results.default_path("transform"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="transform_bench_")
    try:
        root = os.path.join(work, "images")
        count = demo_data.generate(
            root, demo_data.TARGET_CLASSES, args.images // len(demo_data.TARGET_CLASSES), args.source_size, seed=0
        )
        examples = image_example_gen.run_executor(root, os.path.join(work, "raw"))
        print(f"Generated and ingested {count} images of {args.source_size}x{args.source_size}")
        rows = []
        for name, (run, pattern) in _variants(examples, args.image_size, args.workers).items():
            out = os.path.join(work, f"out{len(rows)}")
            print(f"... {name}", flush=True)
            started = time.perf_counter()
            run(out)
            seconds = time.perf_counter() - started
            row = {"variant": name, "seconds": round(seconds, 2), "images_per_s": round(count / seconds, 1)}
            rows.append({**row, **_measure_output(os.path.join(out, pattern))})
        for row in rows:
            row["ratio_vs_baseline"] = round(row["images_per_s"] / rows[0]["images_per_s"], 3)
        if {row["examples"] for row in rows} != {count}:
            raise RuntimeError(f"A variant lost examples ({count} in): {rows}")
        _print(rows, count, args.source_size, args.image_size)
        table = _scaling.scaling(rows, BASELINE)
        _scaling.print_scaling(table, "Transform (no statistics)")
        _results.write(
            args.out,
            {
                "images": count,
                "source_size": args.source_size,
                "image_size": args.image_size,
                "workers": args.workers,
                "rows": rows,
                "scaling": table,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
