"""The full log of a run in the pipeline root, and the one line a failed run prints.

The console shows what a person needs; every log record of the run, tracebacks
included, goes to ``<pipeline_root>/logs/run-<time>-<pid>.log`` as well.
"""

from __future__ import annotations

import logging
import os
import time

from pipeline.local import console

LOG_DIR = "logs"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Records of this logger go to the log file only (the console gets the one-line summary).
FILE_ONLY_LOGGER = console.FILE_ONLY_PREFIX
_MAX_CAUSE = 300


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(FILE_ONLY_LOGGER)


def attach_log_file(pipeline_root: str) -> tuple[str, logging.Handler]:
    """Adds a handler writing every record to a new log file in the pipeline root.

    Returns:
      The file's path and the handler (give it to :func:`detach` when the run ends).
    """
    folder = os.path.join(pipeline_root, LOG_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    handler = logging.FileHandler(path, encoding="utf-8")  # local runs keep the pipeline root local
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)  # not the console's transient DEBUG status lines
    root = logging.getLogger()
    root.addHandler(handler)
    for other in root.handlers:
        if other is not handler and not any(isinstance(f, _NotFileOnly) for f in other.filters):
            other.addFilter(_NotFileOnly())
    return path, handler


def detach(handler: logging.Handler) -> None:
    """Removes and closes a run's log file handler."""
    logging.getLogger().removeHandler(handler)
    handler.close()


def cause(error: BaseException) -> str:
    """The first line of an exception's message, without TensorFlow's graph dumps."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    if len(first) > _MAX_CAUSE:
        first = first[:_MAX_CAUSE] + "..."
    return f"{type(error).__name__}: {first}"


def failure_line(component: str | None, error: BaseException, log_path: str) -> str:
    """``<component> failed: <cause>. Full log: <path>``, and the traceback goes to the log file."""
    logging.getLogger(FILE_ONLY_LOGGER).error("The run failed", exc_info=error)
    where = f"{component} failed" if component else "The run failed"
    return f"{where}: {cause(error)}. Full log: {log_path}"
