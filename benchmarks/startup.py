"""Start-up: what importing the stack costs a fresh process, the CLI's own start included.

Each row is a fresh ``python -c`` that imports one thing (or runs the CLI's ``--help``),
timed from outside, several alternating rounds; the table gives the median and the spread.
The baseline is a bare interpreter start (``python -c pass``), so "vs baseline" shows what
an import adds on top of Python itself. A pipeline run pays the "local runner" row once.

    python benchmarks/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)

# This project's entry points, as this checkout lays them out (the old flat layout too, so the
# same script measures an older checkout for a before/after ratio).
_CLI = "try:\n from pipeline.cli.main import main\nexcept ImportError:\n from pipeline.cli import main"
_LOCAL_RUNNER = "try:\n import pipeline.local.runner\nexcept ImportError:\n import pipeline.local_runner"

# (label, code run in the fresh process). The last two are this project's own entry points.
CASES: tuple[tuple[str, str], ...] = (
    ("baseline: python -c pass", "pass"),
    ("import numpy", "import numpy"),
    ("import tensorflow", "import tensorflow"),
    ("import keras", "import keras"),
    ("import apache_beam", "import apache_beam"),
    ("import tensorflow_transform", "import tensorflow_transform"),
    ("import tensorflow_model_analysis", "import tensorflow_model_analysis"),
    ("import tfx.v1", "import tfx.v1"),
    (
        "image-pipeline --help",
        f"import sys; sys.argv = ['image-pipeline', '--help']\n{_CLI}\ntry:\n main()\nexcept SystemExit:\n pass",
    ),
    ("local runner (what a run imports)", _LOCAL_RUNNER),
)


def _time_once(code: str) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{completed.stderr[-2000:]}")
    return seconds


def main() -> None:
    """Runs the rounds, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=_results.default_path("startup"))
    args = parser.parse_args()

    for _, code in CASES:  # warm the page cache once, so round 1 is not a cold-disk outlier
        _time_once(code)
    times: dict[str, list[float]] = {label: [] for label, _ in CASES}
    for _ in range(args.rounds):
        for label, code in CASES:
            times[label].append(_time_once(code))

    baseline = statistics.median(times[CASES[0][0]])
    rows = []
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds, fresh process each")
    print("| what | median s | min-max s | vs baseline |\n| --- | ---: | ---: | ---: |")
    for label, _ in CASES:
        median = statistics.median(times[label])
        rows.append({"what": label, "median_s": round(median, 3), "all_s": [round(t, 3) for t in times[label]]})
        spread = f"{min(times[label]):.2f}-{max(times[label]):.2f}"
        print(f"| {label} | {median:.2f} | {spread} | {median / baseline:.1f}x |")
    _results.write(args.out, {"python": sys.version.split()[0], "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
