"""Ingest throughput: the ImageFolder ExampleGen vs a plain single-process loop.

Generates N demo images (mixed JPEG/PNG/BMP/GIF), then writes the same gzipped
TFRecords of tf.Examples three ways, on the same files, in one run:

  baseline     a Python loop: list, read, check with Pillow, write (one process)
  beam         the ExampleGen executor on Beam's in-process FnApiRunner (its plan, run before
               the Beam job, checks every file and groups copies: components/ingest/plan.py)
  near off     the same with near_duplicate_distance -1 (exact duplicates only)
  beam-mp      the same with --direct_running_mode=multi_processing on each ``--workers`` count
               of SDK worker processes (default: 1 and one per core; ``--workers 1,2,4``): a
               table of images/s per count, against one worker and the loop (why this mode and
               not the portable runner: benchmarks/_scaling.py); the fewest and most workers fit
               ``serial + parallel / workers``, which says from how many cores multi-processing
               would beat the in-process runner and the loop (a projection)

Prints images/s and the ratio to the baseline, checks that every variant wrote
the same number of examples, and writes JSON. One file in PLANTED_EVERY gets a resized
copy in its class, so the grouping has copies to find. The cost of finding copies is
measured apart (``dedup`` in the JSON): the plan's pass over the files with and without
fingerprints, and the grouping alone, against the ExampleGen's time.

    python benchmarks/ingest.py [--images 10000] [--size 96] [--workers 1,2,4]
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
import _scaling
import tensorflow as tf
from PIL import Image

from components.example_gen import component as image_example_gen
from components.example_gen import executor as image_example_gen_executor
from components.ingest import duplicates, image_files, plan, splits
from pipeline.demo import demo_data

BASELINE = "baseline (1 process loop)"
IN_PROCESS = "ExampleGen, Beam FnApiRunner"
NEAR_OFF = "ExampleGen, FnApiRunner, near duplicates off"
# One generated image in this many gets a resized copy (PNG) in its class folder.
PLANTED_EVERY = 50


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


def example_gen(root: str, out_dir: str, beam_args: list[str], limits: image_files.IngestLimits | None = None) -> int:
    """The pipeline's ExampleGen executor, outside a pipeline (no MLMD)."""
    examples = image_example_gen.run_executor(root, out_dir, limits=limits, beam_args=beam_args)
    return examples.get_int_custom_property("ingested")


def plant_copies(root: str) -> int:
    """Writes a half-size PNG copy of every PLANTED_EVERY-th image next to it; returns how many."""
    planted = 0
    for index, found in enumerate(image_files.list_files(root)):
        if index % PLANTED_EVERY == 0:
            with Image.open(found.path) as image:
                copy = image.convert("RGB").resize((image.width // 2, image.height // 2))
            copy.save(os.path.join(os.path.dirname(found.path), f"copy_{index}.png"))
            planted += 1
    return planted


def dedup_cost(root: str, ingest_seconds: float) -> dict:
    """The plan's pass with and without fingerprints, and the grouping alone, in seconds and as a share of ingest."""
    files = image_files.list_files(root)
    limits = image_files.IngestLimits()
    started = time.perf_counter()
    for found in files:
        with open(found.path, "rb") as handle:
            image_files.check_image(handle.read(), limits)
    checks = time.perf_counter() - started
    started = time.perf_counter()
    planned = plan.plan_ingest(files, splits.SplitPercents(), limits)
    with_fingerprints = time.perf_counter() - started
    prints = []
    for found in files:
        with open(found.path, "rb") as handle:
            prints.append(image_files.check_image(handle.read(), limits, fingerprint=True).fingerprint)
    started = time.perf_counter()
    groups = duplicates.group(prints, limits.near_duplicate_distance)
    grouping = time.perf_counter() - started
    extra = with_fingerprints - checks
    return {
        "plan_without_fingerprints_s": round(checks, 2),
        "plan_s": round(with_fingerprints, 2),
        "grouping_s": round(grouping, 3),
        "dedup_s": round(extra, 2),
        "dedup_share_of_ingest": round(extra / ingest_seconds, 3),
        "groups": len(groups),
        "images_in_groups": sum(len(members) for members, _ in groups),
        "rejected": planned.rejected,
    }


def _multi_processing(root: str, workers: int) -> Callable[[str], int]:
    return lambda out: example_gen(root, out, _scaling.beam_args(workers))


def projection(rows: list[dict]) -> dict | None:
    """Multi-processing time as ``serial + parallel / workers``, fitted to the 1- and N-worker rows.

    Returns the fit and the worker count from which it would beat the in-process
    runner and the plain loop (None where it never does), or None with one core.
    """
    timed = {_scaling.workers_of(row["variant"]): row["seconds"] for row in rows if _scaling.workers_of(row["variant"])}
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
    parser.add_argument(
        "--workers",
        type=_scaling.parse_workers,
        default=f"1,{os.cpu_count() or 1}",
        help="SDK worker process counts to run the ExampleGen on (Beam multi_processing), e.g. 1,2,4.",
    )
    parser.add_argument("--out", default=_results.default_path("ingest"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="ingest_bench_")
    try:
        root = os.path.join(work, "images")
        per_class = args.images // len(demo_data.TARGET_CLASSES)
        started = time.perf_counter()
        count = demo_data.generate(root, demo_data.TARGET_CLASSES, per_class, args.size, seed=0)
        planted = plant_copies(root)
        count += planted
        print(
            f"Generated {count} images of {args.size}x{args.size} ({planted} of them resized copies) in "
            f"{time.perf_counter() - started:.0f} s"
        )
        variants = {
            BASELINE: lambda out: baseline(root, out),
            IN_PROCESS: lambda out: example_gen(root, out, ["--runner=FnApiRunner"]),
            NEAR_OFF: lambda out: example_gen(
                root, out, ["--runner=FnApiRunner"], image_files.IngestLimits(near_duplicate_distance=-1)
            ),
        }
        for workers in args.workers:
            variants[_scaling.variant("ExampleGen, Beam", workers)] = _multi_processing(root, workers)
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
        table = _scaling.scaling(rows, BASELINE)
        _scaling.print_scaling(table, "ExampleGen")
        in_process = next(row["seconds"] for row in rows if row["variant"] == IN_PROCESS)
        dedup = dedup_cost(root, in_process)
        print(
            f"\nFinding copies: the plan's pass took {dedup['plan_s']:.1f} s with fingerprints and grouping, "
            f"{dedup['plan_without_fingerprints_s']:.1f} s checking alone; the difference, "
            f"{dedup['dedup_s']:.1f} s ({dedup['grouping_s']:.2f} s of it grouping {dedup['images_in_groups']} images "
            f"into {dedup['groups']} groups), is {100 * dedup['dedup_share_of_ingest']:.0f}% of the ExampleGen's "
            f"{in_process:.1f} s"
        )
        fit = projection(rows)
        if fit and fit["parallel_s"] <= 0:
            print(
                "\nmulti_processing got no faster with more workers: starting them (each imports TensorFlow) dominates"
            )
        elif fit:
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
        _results.write(
            args.out,
            {
                "images": count,
                "size": args.size,
                "workers": args.workers,
                "rows": rows,
                "scaling": table,
                "projection": fit,
                "dedup": dedup,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
