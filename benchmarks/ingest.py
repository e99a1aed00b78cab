"""Ingest throughput: the ImageFolder ExampleGen vs a plain single-process loop.

Generates N demo images (mixed JPEG/PNG/BMP/GIF), then writes the same gzipped
TFRecords of tf.Examples three ways, on the same files, in one run:

  baseline     a Python loop: list, read, check with Pillow, write (one process)
  beam         the ExampleGen executor on Beam's in-process FnApiRunner
  beam-mp      the same with --direct_running_mode=multi_processing, 1 worker and one per core;
               the two fit ``serial + parallel / workers``, which says from how many cores
               multi-processing would beat the in-process runner and the loop (a projection)

Prints images/s and the ratio to the baseline, checks that every variant wrote
the same number of examples, and writes JSON.

    python benchmarks/ingest.py [--images 10000] [--size 96]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import tensorflow as tf

from components.example_gen import component as image_example_gen
from components.example_gen import executor as image_example_gen_executor
from components.ingest import image_files
from pipeline.demo import demo_data

BASELINE = "baseline (1 process loop)"
IN_PROCESS = "ExampleGen, Beam FnApiRunner"


def baseline(root: str, out_dir: str) -> int:
    """The loop a user would write: same checks, same records, one process."""
    limits = image_files.IngestLimits()
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(out_dir, "data.tfrecord.gz"), options) as writer:
        for found in image_files.list_files(root):
            with open(found.path, "rb") as handle:
                checked = image_files.check_image(handle.read(), limits)
            if checked.encoded is not None:
                example = image_example_gen_executor.make_example(checked.encoded, found.label, found.relative_path)
                writer.write(example.SerializeToString())
                written += 1
    return written


def example_gen(root: str, out_dir: str, beam_args: list[str]) -> int:
    """The pipeline's ExampleGen executor, outside a pipeline (no MLMD)."""
    return image_example_gen.run_executor(root, out_dir, beam_args=beam_args).get_int_custom_property("ingested")


def _multi_processing(root: str, workers: int) -> Callable[[str], int]:
    args = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    return lambda out: example_gen(root, out, args)


def projection(rows: list[dict]) -> dict | None:
    """Multi-processing time as ``serial + parallel / workers``, fitted to the 1- and N-worker rows.

    Returns the fit and the worker count from which it would beat the in-process
    runner and the plain loop (None where it never does), or None with one core.
    """
    timed = {
        int(row["variant"].rsplit("x", 1)[1]): row["seconds"] for row in rows if "multi_processing" in row["variant"]
    }
    if len(timed) < 2:
        return None
    (_, t_one), (many, t_many) = sorted(timed.items())[:1] + sorted(timed.items())[-1:]
    parallel = (t_one - t_many) / (1 - 1 / many)
    serial = t_one - parallel
    if parallel <= 0:
        return {"serial_s": round(serial, 2), "parallel_s": round(parallel, 2), "beats": {}}

    def crossover(seconds: float) -> int | None:
        return math.floor(parallel / (seconds - serial)) + 1 if seconds > serial else None

    return {
        "serial_s": round(serial, 2),
        "parallel_s": round(parallel, 2),
        "beats": {
            row["variant"]: crossover(row["seconds"]) for row in rows if row["variant"] in (BASELINE, IN_PROCESS)
        },
    }


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--out", default=_results.default_path("ingest"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="ingest_bench_")
    try:
        root = os.path.join(work, "images")
        per_class = args.images // len(demo_data.TARGET_CLASSES)
        started = time.perf_counter()
        count = demo_data.generate(root, demo_data.TARGET_CLASSES, per_class, args.size, seed=0)
        print(f"Generated {count} images of {args.size}x{args.size} in {time.perf_counter() - started:.0f} s")
        workers = os.cpu_count() or 1
        variants = {
            BASELINE: lambda out: baseline(root, out),
            IN_PROCESS: lambda out: example_gen(root, out, ["--runner=FnApiRunner"]),
        }
        for count_workers in sorted({1, workers}):
            variants[f"ExampleGen, Beam multi_processing x{count_workers}"] = _multi_processing(root, count_workers)
        rows = []
        for name, run in variants.items():
            started = time.perf_counter()
            written = run(os.path.join(work, f"out{len(rows)}"))
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "variant": name,
                    "examples": written,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(count / seconds, 1),
                }
            )
        base = rows[0]["images_per_s"]
        for row in rows:
            row["ratio_vs_baseline"] = round(row["images_per_s"] / base, 3)
        if len({row["examples"] for row in rows}) != 1:
            raise RuntimeError(f"Variants wrote different numbers of examples: {rows}")
        print(f"{'variant':<40} {'examples':>8} {'seconds':>8} {'images/s':>9} {'vs baseline':>12}")
        for row in rows:
            print(
                f"{row['variant']:<40} {row['examples']:>8} {row['seconds']:>8.1f} {row['images_per_s']:>9.1f} {row['ratio_vs_baseline']:>12.2f}"
            )
        fit = projection(rows)
        if fit:
            print(
                f"\nmulti_processing ~ {fit['serial_s']:.1f} s that does not shrink with workers (worker start-up, "
                f"moving every example between processes) + {fit['parallel_s']:.1f} s / workers (fitted to the measured "
                "1 and N workers; a projection beyond N)"
            )
            for name, workers_needed in fit["beats"].items():
                verdict = (
                    f"from {workers_needed} workers" if workers_needed else "never (the serial part alone is slower)"
                )
                print(f"  beats {name}: {verdict}")
        _results.write(args.out, {"images": count, "size": args.size, "rows": rows, "projection": fit})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
