"""One run at a time on one pipeline root.

Two runs on the same pipeline root would share MLMD and the node folders: they
could both push, or one could read the other's half-written artifacts. A run
holds an exclusive OS lock (``flock`` through portalocker) on
``<pipeline_root>/.run.lock`` for its whole length. The operating system drops the
lock when the process ends, however it ends (``kill -9`` included), so a killed
run never blocks the next one. The file's content (pid, host, start time,
command) only serves to name the holder in the error a second run gets.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import IO

import portalocker

LOCK_FILE = ".run.lock"
_POLL_SECONDS = 0.5
_COMMAND_CHARS = 200


class PipelineRootBusyError(RuntimeError):
    """Another run holds the pipeline root."""


def _holder_info() -> dict[str, object]:
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command[:_COMMAND_CHARS],
    }


def describe_holder(lock_path: str) -> str:
    """Who holds the lock, in words, from what the holder wrote into the lock file."""
    try:
        with open(lock_path, encoding="utf-8") as handle:
            info = json.load(handle)
        started = datetime.datetime.fromisoformat(info["started"]).strftime("%Y-%m-%d %H:%M:%S")
        return f"run pid {info['pid']} on host {info['host']} since {started} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run (it has not written its details yet)"


def _busy_message(pipeline_root: str, lock_path: str, waited: float) -> str:
    waited_text = f" (waited {waited:.0f} s)" if waited else ""
    return (
        f"pipeline root {pipeline_root} is in use by {describe_holder(lock_path)}{waited_text}; "
        "wait for it or use another pipeline root"
    )


def _try_lock(handle: IO[str]) -> bool:
    try:
        portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
    except portalocker.exceptions.LockException:
        return False
    return True


@contextlib.contextmanager
def pipeline_root_lock(pipeline_root: str, wait_seconds: float = 0) -> Iterator[str]:
    """Holds the pipeline root for one run; yields the lock file's path.

    Args:
      pipeline_root: A local folder (created if missing). A remote root (gs://,
        s3://) cannot be locked: a warning is logged and the run goes on.
      wait_seconds: How long to wait for another run to finish: 0 stops at once,
        a negative value waits for as long as it takes.

    Raises:
      PipelineRootBusyError: If another run holds the root (after ``wait_seconds``),
        naming its pid, host, start time and command.
    """
    if "://" in pipeline_root:
        logging.warning("Pipeline root %s is remote: it cannot be locked against a second run.", pipeline_root)
        yield ""
        return
    os.makedirs(pipeline_root, exist_ok=True)
    lock_path = os.path.join(pipeline_root, LOCK_FILE)
    # "a": never truncate what the holder wrote before we hold the lock ourselves.
    with open(lock_path, "a", encoding="utf-8") as handle:
        start = time.monotonic()
        logged = False
        while not _try_lock(handle):
            waited = time.monotonic() - start
            if 0 <= wait_seconds <= waited:
                raise PipelineRootBusyError(_busy_message(pipeline_root, lock_path, waited if wait_seconds else 0))
            if not logged:
                limit = "as long as it takes" if wait_seconds < 0 else f"up to {wait_seconds:.0f} s"
                logging.info("Waiting %s: %s", limit, _busy_message(pipeline_root, lock_path, 0))
                logged = True
            time.sleep(_POLL_SECONDS)
        try:
            handle.truncate(0)
            handle.write(json.dumps(_holder_info()))
            handle.flush()
            yield lock_path
        finally:
            handle.truncate(0)
            handle.flush()
            portalocker.unlock(handle)
