"""One run at a time per pipeline root; a killed run does not block the next."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from pipeline.local import run_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HOLD = """
import sys, time
from pipeline.local.run_lock import pipeline_root_lock

with pipeline_root_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(root: str, seconds: float) -> subprocess.Popen:
    """A process that holds the lock on ``root`` for ``seconds``, once it printed "held"."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, root, str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "held\n"
    return process


def test_a_second_run_stops_naming_the_holder_until_it_is_killed(tmp_path: object) -> None:
    root = str(tmp_path / "tfx_root")
    holder = _holder(root, 600)
    try:
        with pytest.raises(run_lock.PipelineRootBusyError) as raised:
            with run_lock.pipeline_root_lock(root):
                pass
        message = str(raised.value)
        assert message.startswith(f"pipeline root {root} is in use by run pid {holder.pid} on host ")
        assert socket.gethostname() in message and "-c " in message  # the holder's command
        assert message.endswith("; wait for it or use another pipeline root")
    finally:
        holder.send_signal(signal.SIGKILL)  # the holder runs no clean-up at all
        holder.wait()
    with run_lock.pipeline_root_lock(root) as lock_path:
        with open(lock_path) as handle:
            assert json.load(handle)["pid"] == os.getpid()


def test_a_waiting_run_starts_when_the_holder_ends(tmp_path: object) -> None:
    root = str(tmp_path)
    holder = _holder(root, 2)
    try:
        with pytest.raises(run_lock.PipelineRootBusyError, match=r"\(waited \d+ s\)"):
            with run_lock.pipeline_root_lock(root, wait_seconds=0.6):
                pass
        with run_lock.pipeline_root_lock(root, wait_seconds=60):
            assert holder.wait(timeout=30) == 0  # it ended normally, releasing the lock
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_released_after_the_block(tmp_path: object) -> None:
    root = str(tmp_path)
    with run_lock.pipeline_root_lock(root):
        with pytest.raises(run_lock.PipelineRootBusyError, match=f"run pid {os.getpid()}"):
            with run_lock.pipeline_root_lock(root):
                pass
    with run_lock.pipeline_root_lock(root):
        pass
