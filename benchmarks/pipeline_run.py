"""Whole pipeline: wall time and peak RSS for 1k images at 96x96, fixed overhead, cached rerun.

Runs the full local pipeline (demo settings, shipped source weights) in a fresh
process per run:

  small     60 images: to separate the fixed overhead (start-up, MLMD, Beam) from
            the per-image work, by linear extrapolation of 60 -> N images to zero
  full      N images (default 999)
  cached    the same N-image pipeline again, unchanged (served from the cache)

Prints a table and writes JSON.

    python benchmarks/pipeline_run.py [--images 999] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)

from pipeline.demo import demo, demo_data

_CHILD = """
import json, resource, sys
from pipeline.local import runner as local_runner
from pipeline.config.pipeline_config import build_config
report = local_runner.run(build_config(json.loads(sys.argv[1])))
steps = [[step.name, step.state, round(step.seconds, 2)] for step in report.steps]
print("RESULT " + json.dumps({"states": report.component_states, "steps": steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(config: dict) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(config)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"Pipeline run failed:\n{completed.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(result["peak_rss_mb"]),
        "states": result["states"],
        "steps": result["steps"],
    }


def _config(work: str, name: str, epochs: int) -> dict:
    return {
        "data_root": os.path.join(work, name),
        "pipeline_root": os.path.join(work, f"root_{name}"),
        "serving_dir": os.path.join(work, f"serving_{name}"),
        "min_accuracy": 0.0,
        "above_majority_class": False,  # always push: these runs measure time
        "trainer": {
            "image_size": demo.IMAGE_SIZE,
            "backbone": demo.BACKBONE,
            "backbone_alpha": demo.ALPHA,
            "weights": demo.SHIPPED_WEIGHTS,
            "stage1_epochs": epochs,
            "stage2_epochs": epochs,
        },
    }


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=999)
    parser.add_argument("--small", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3, help="Epochs per stage.")
    parser.add_argument("--out", default=_results.default_path("pipeline_run"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pipeline_bench_")
    try:
        sizes = {"small": args.small, "full": args.images}
        for name, count in sizes.items():
            demo_data.generate(os.path.join(work, name), demo_data.TARGET_CLASSES, count // 3, demo.IMAGE_SIZE, seed=1)
        runs = {
            "small": _run(_config(work, "small", args.epochs)),
            "full": _run(_config(work, "full", args.epochs)),
            # The second run re-runs the Evaluator (its baseline is now the first run's model);
            # the third is the fully cached one.
            "cached": _run(_config(work, "full", args.epochs)),
            "fully cached": _run(_config(work, "full", args.epochs)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, full = runs["small"]["wall_s"], runs["full"]["wall_s"]
    per_image = (full - small) / (args.images - args.small)
    overhead = max(small - per_image * args.small, 0.0)
    summary = {
        "per_image_s": round(per_image, 4),
        "fixed_overhead_s": round(overhead, 1),
        "overhead_share_of_full": round(overhead / full, 3),
        "cached_vs_full": round(runs["cached"]["wall_s"] / full, 3),
        "fully_cached_vs_full": round(runs["fully cached"]["wall_s"] / full, 3),
    }
    print(f"Whole pipeline, {demo.IMAGE_SIZE}x{demo.IMAGE_SIZE}, {args.epochs}+{args.epochs} epochs, demo backbone")
    print(f"{'run':<13} {'images':>7} {'wall s':>8} {'peak RSS MB':>12}  components")
    for name, run in runs.items():
        images = args.small if name == "small" else args.images
        cached = sum(state == "cached" for state in run["states"].values())
        print(
            f"{name:<13} {images:>7} {run['wall_s']:>8.1f} {run['peak_rss_mb']:>12}  {cached} of {len(run['states'])} cached"
        )
    print(
        f"fixed overhead ~{summary['fixed_overhead_s']} s = {summary['overhead_share_of_full']:.0%} of the full run; "
        f"cached rerun = {summary['cached_vs_full']:.2f} x the full run, "
        f"fully cached = {summary['fully_cached_vs_full']:.2f} x"
    )
    for name in ("full", "fully cached"):
        wall = runs[name]["wall_s"]
        steps = runs[name]["steps"]
        print(
            f"\n{name} run by step (MLMD): "
            + ", ".join(f"{step} {state} {seconds:.1f} s" for step, state, seconds in steps)
        )
        print(
            f"  outside the steps (start-up, preflight, compile, registration): {wall - sum(s[2] for s in steps):.1f} s"
        )
    _results.write(args.out, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
