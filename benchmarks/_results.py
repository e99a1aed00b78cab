"""Shared by the benchmark scripts: where results go and how they are written."""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def default_path(name: str) -> str:
    """``benchmarks/results/<name>.json``."""
    return os.path.join(RESULTS_DIR, f"{name}.json")


def write(path: str, payload: dict[str, Any]) -> None:
    """Writes the payload with the machine and date, and says where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    record = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        **payload,
    }
    with open(path, "w") as handle:
        json.dump(record, handle, indent=2)
    print(f"Wrote {path}")
