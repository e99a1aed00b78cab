"""Shared by ingest.py and transform.py: one Beam step on 1, 2, 4, ... SDK worker processes.

``--workers 1,2,4`` runs the step on Beam's ``multi_processing`` direct mode with that many
workers: FnApiRunner in the launching process starts N SDK harness processes
(``python -m apache_beam.runners.worker.sdk_worker_main``) and sends them the step's bundles
over the Fn API (gRPC), every DoFn pickled, as a cluster's workers get them. Not the
portable runner the portable test uses (tests/pipeline/local/test_portable_runner.py):
Beam's local job service runs every job on one SDK worker (its FnApiRunner is driven
through ``run_via_runner_api``, which keeps ``_num_workers = 1``; only ``run_pipeline``
reads ``direct_num_workers``: apache_beam/runners/portability/fn_api_runner/fn_runner.py),
so it cannot show how a step scales. On one machine N workers share its cores; the table
says how close one worker process comes to the plain loop and what each added one buys.
"""

from __future__ import annotations

import argparse

MULTI_PROCESSING = "multi_processing"


def parse_workers(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (sorted, no repeats); ``""`` -> ``[]``.

    Raises:
      argparse.ArgumentTypeError: If an entry is not a positive integer.
    """
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"Expected worker counts like 1,2,4. Received: {text!r}") from None
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError(f"Worker counts must be at least 1. Received: {text!r}")
    return counts


def beam_args(workers: int) -> list[str]:
    """The Beam flags of one step on ``workers`` SDK worker processes."""
    return ["--runner=FnApiRunner", f"--direct_running_mode={MULTI_PROCESSING}", f"--direct_num_workers={workers}"]


def variant(prefix: str, workers: int) -> str:
    """A row's name: ``<prefix> multi_processing x<workers>``."""
    return f"{prefix} {MULTI_PROCESSING} x{workers}"


def workers_of(name: str) -> int | None:
    """The worker count in a row name made by :func:`variant`, None for other rows."""
    if MULTI_PROCESSING not in name:
        return None
    return int(name.rsplit("x", 1)[1])


def scaling(rows: list[dict], baseline: str) -> list[dict]:
    """Images/s per worker count, against one worker and against the baseline row.

    Args:
      rows: The benchmark's rows (``variant``, ``images_per_s``).
      baseline: The ``variant`` of the plain single-process loop.

    Returns:
      One dict per multi-processing row, fewest workers first: ``workers``,
      ``images_per_s``, ``vs_one_worker`` (against the fewest workers measured) and
      ``vs_baseline``.
    """
    base = next(row["images_per_s"] for row in rows if row["variant"] == baseline)
    measured = sorted((workers_of(row["variant"]), row["images_per_s"]) for row in rows if workers_of(row["variant"]))
    if not measured:
        return []
    first = measured[0][1]
    return [
        {
            "workers": workers,
            "images_per_s": rate,
            "vs_one_worker": round(rate / first, 3),
            "vs_baseline": round(rate / base, 3),
        }
        for workers, rate in measured
    ]


def print_scaling(table: list[dict], step: str) -> None:
    """Prints the scaling table (nothing without multi-processing rows)."""
    if not table:
        return
    fewest = table[0]["workers"]
    print(f"\n{step} on Beam multi_processing, SDK worker processes on this machine's cores:")
    print(f"{'workers':>7} {'images/s':>9} {f'vs x{fewest}':>8} {'vs loop':>8}")
    for row in table:
        print(
            f"{row['workers']:>7} {row['images_per_s']:>9.1f} {row['vs_one_worker']:>8.2f} {row['vs_baseline']:>8.2f}"
        )
