"""A quiet console: the project's lines, step progress and warnings that matter; the rest to the log file.

Every record of a run at INFO and above goes to the run's log file
(``pipeline/local/run_log.py``). The console shows the project's own messages, one
line when each pipeline step starts and ends (name, ran or cached, duration),
and errors; library chatter is filtered out. During a quiet run the raw output
that never passes through Python logging (TensorFlow's C++ logs, the user-module
wheel build and pip install that TFX runs in subprocesses, Keras prints) goes
to the log file too, by pointing file descriptors 1 and 2 at it.
``--verbose`` shows everything on the console as before.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from components.modules import log_names

_OUR_LOGGERS = ("root", "pipeline", "components", "image_pipeline")
# Library messages that reach the root logger and say nothing a user can act on.
_HARMLESS = (
    "ArtifactQuery.property_predicate is not supported",
    "Tables initialized inside a tf.function",
    "custom_executor_spec is deprecated",
    "does not have payload_format custom property",
    "is deprecated and will be removed",
    "Instructions for updating",
    "Local rendezvous is aborting",
    "Reading from pattern",
    # Beam 2.77's RunInference (the BulkInferrer) without torch: its optional ModelManager import
    # fails, which also drops `resource`, so it only skips a memory metric (apache_beam/ml/inference/base.py).
    "Resource module is not available for current platform",
)
_STEP = re.compile(r"^(?:Component|node) (\S+) is (running|finished)\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")
PROGRESS_LOGGER = "image_pipeline.progress"
FILE_ONLY_PREFIX = log_names.FILE_ONLY_PREFIX
STATUS_LOGGER = log_names.STATUS_LOGGER
_CLEAR_LINE = "\r\x1b[K"  # carriage return, erase to the end of the line
_CLEAR_WIDTH = 100  # a status line longer than a terminal would wrap and not be erased


class StepProgress:
    """Turns the runners' own step messages into progress lines.

    A step that ends within a second (a cached one, say) gets one line
    (``[2/9] StatisticsGen cached in 0.0 s``); a longer one also gets a start line
    (``[5/9] Transform ...``), printed once it has run for a second or as soon as
    it logs something, so fast steps do not fill the console.
    """

    START_AFTER_SECONDS = 1.0

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._cached: set[str] = set()
        self._current = ""
        self.total = 0
        self._done = 0
        self.pending_start: str | None = None

    def expect(self, steps: int) -> None:
        """A run of ``steps`` steps starts: the lines count ``[n/steps]``."""
        self.total, self._done = steps, 0
        self._started.clear()
        self._cached.clear()
        self._current, self.pending_start = "", None

    def _counter(self, index: int) -> str:
        return f"[{index}/{self.total}] " if self.total else ""

    def consume(self, message: str) -> str | None:
        """The end line for a runner message; sets ``pending_start`` when a step starts."""
        if _CACHED.match(message) and self._current:
            self._cached.add(self._current)
            return None
        match = _STEP.match(message)
        if not match:
            return None
        node, event = match.groups()
        if event == "running":
            self._started[node], self._current = time.monotonic(), node
            self.pending_start = f"{self._counter(self._done + 1)}{node} ..."
            return None
        self._done += 1
        self.pending_start = None
        seconds = time.monotonic() - self._started.pop(node, time.monotonic())
        state = "cached" if node in self._cached else "ran"
        return f"{self._counter(self._done)}{node} {state} in {seconds:.1f} s"

    def take_start(self) -> str | None:
        """The pending start line, once (None if there is none)."""
        line, self.pending_start = self.pending_start, None
        return line


def _shown(record: logging.LogRecord) -> bool:
    """Whether the quiet console shows a record: the project's own, or a library error."""
    if record.name.split(".")[0] not in _OUR_LOGGERS:
        return record.levelno >= logging.ERROR
    message = record.getMessage()
    return not any(noise in message for noise in _HARMLESS)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname} "
        return f"{self.formatTime(record, '%H:%M:%S')} {level}{record.getMessage()}"


class ConsoleHandler(logging.StreamHandler):
    """The quiet console: progress lines, the project's records, library errors."""

    def __init__(self, progress: StepProgress) -> None:
        super().__init__(sys.stderr)
        self.progress = progress
        self.setFormatter(_ConsoleFormatter())
        self._timer: threading.Timer | None = None
        self._status_shown = False

    def emit(self, record: logging.LogRecord) -> None:
        """Writes the record if the console shows it, after a pending step start line."""
        if record.name.startswith(FILE_ONLY_PREFIX):
            return
        if record.name == STATUS_LOGGER:
            self._status(record)
            return
        if record.name == "absl":
            line = self.progress.consume(record.getMessage())
            if self.progress.pending_start:
                self._arm_timer()
            if line:
                self._write(line, record.created)
            return
        if _shown(record):
            self._flush_start(record.created)
            self._clear_status()
            super().emit(record)

    def _arm_timer(self) -> None:
        if self._timer:
            self._timer.cancel()
        self._timer = threading.Timer(StepProgress.START_AFTER_SECONDS, self._flush_start)
        self._timer.daemon = True
        self._timer.start()

    def _flush_start(self, created: float | None = None) -> None:
        line = self.progress.take_start()
        if line:
            self._write(line, created)

    def _write(self, line: str, created: float | None) -> None:
        record = logging.LogRecord(PROGRESS_LOGGER, logging.INFO, __file__, 0, line, None, None)
        if created:
            record.created = created
        self._clear_status()
        super().emit(record)

    def _status(self, record: logging.LogRecord) -> None:
        """Rewrites the one transient status line (interactive consoles only)."""
        if not self.stream.isatty():
            return
        self.acquire()
        try:
            self.stream.write(f"{_CLEAR_LINE}{self.format(record)}"[: _CLEAR_WIDTH + len(_CLEAR_LINE)])
            self.stream.flush()
            self._status_shown = True
        finally:
            self.release()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write(_CLEAR_LINE)
            self._status_shown = False


_handler: logging.StreamHandler | None = None
progress = StepProgress()

# C++ log lines (absl format, "I1201 09:31:24.854359  9 port.cc:153] ...", with the seconds since
# the epoch before absl is initialized: "I0000 00:00:1796117484.854359 ...") and absl's
# notice before them. TF_CPP_MIN_LOG_LEVEL no longer silences the ones TensorFlow 2.21 prints at
# import (oneDNN, "Could not find cuda drivers", twice; tensorflow/tensorflow#100442).
_NATIVE_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] )"
)


@contextlib.contextmanager
def native_import_noise_dropped() -> Iterator[None]:
    """Points file descriptor 2 at a temporary file for the block, then passes on every line but C++ log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _NATIVE_IMPORT_NOISE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietImportLoader(importlib.abc.Loader):
    """The ``tensorflow`` package's own loader, run with :func:`native_import_noise_dropped`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self._loader
        with native_import_noise_dropped():
            self._loader.exec_module(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Wraps the first ``import tensorflow`` (whoever imports it) in :func:`native_import_noise_dropped`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietImportLoader(spec.loader)
        return spec


def setup(verbose: bool) -> None:
    """Console logging for the CLI: quiet (filtered) by default, everything with ``verbose``."""
    global _handler
    from absl import logging as absl_logging

    # Quiet: TensorFlow's C++ start-up lines (CUDA plug-in registration, CPU flags) are
    # printed at import, before the log file exists; real TensorFlow errors still raise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if (
        not verbose
        and "tensorflow" not in sys.modules
        and not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path)
    ):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if verbose:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        _handler = ConsoleHandler(progress)
    # Batch status lines exist only where a terminal can rewrite them in place.
    logging.getLogger(STATUS_LOGGER).setLevel(logging.DEBUG if not verbose and sys.stderr.isatty() else logging.NOTSET)
    root.addHandler(_handler)
    absl_logging.set_verbosity(absl_logging.INFO)  # the step messages, and everything for the log file
    for name in ("apache_beam", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings become records of the "py.warnings" logger (file only)


@contextlib.contextmanager
def raw_output_to(log_path: str, enabled: bool) -> Iterator[None]:
    """Points file descriptors 1 and 2 at the log file for the block; the console handler keeps the terminal.

    Args:
      log_path: The run's log file.
      enabled: False (``--verbose``, or a remote log path) leaves the output alone.
    """
    if not enabled or "://" in log_path:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console: TextIO = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    previous = _handler.setStream(console) if _handler else None
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        if _handler is not None and previous is not None:
            _handler.setStream(previous)
        console.close()
