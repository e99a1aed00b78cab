"""The quiet console: step progress lines, the project's records, no library chatter."""

from __future__ import annotations

import io
import logging
import os
import time

import pytest

from pipeline.local import console


def _handler() -> tuple[console.ConsoleHandler, io.StringIO]:
    progress = console.StepProgress()
    progress.expect(3)
    handler = console.ConsoleHandler(progress)
    stream = io.StringIO()
    handler.setStream(stream)
    return handler, stream


def _record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def _lines(stream: io.StringIO) -> list[str]:
    return [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]  # without the time


def test_cached_steps_get_one_line_and_long_steps_a_start_line_too(monkeypatch: object) -> None:
    handler, stream = _handler()
    for message in (
        "Component ExampleGen is running.",
        "A cached execution 4 is used.",
        "Component ExampleGen is finished.",
    ):
        handler.emit(_record("absl", message))
    handler.emit(_record("absl", "Component Trainer is running."))
    handler.emit(_record("root", "Training on 2 classes"))  # the step logs: its start line comes first
    handler.emit(_record("absl", "Component Trainer is finished."))
    handler.emit(_record("absl", "Component Pusher is running."))
    time.sleep(console.StepProgress.START_AFTER_SECONDS + 0.5)  # a silent step: the start line after a second
    handler.emit(_record("absl", "Component Pusher is finished."))
    lines = _lines(stream)
    assert lines[0] == "[1/3] ExampleGen cached in 0.0 s"
    assert lines[1:3] == ["[2/3] Trainer ...", "Training on 2 classes"]
    assert lines[3].startswith("[2/3] Trainer ran in ")
    assert lines[4] == "[3/3] Pusher ..." and lines[5].startswith("[3/3] Pusher ran in 1.")
    assert len(lines) == 6


def test_library_chatter_stays_off_the_console() -> None:
    handler, stream = _handler()
    handler.emit(_record("absl", "Going to run a new execution 7"))
    handler.emit(_record("tensorflow", "Assets written to: x", logging.WARNING))
    handler.emit(_record("root", "ArtifactQuery.property_predicate is not supported.", logging.WARNING))
    handler.emit(_record("apache_beam.runners", "Beam failed badly", logging.ERROR))
    handler.emit(_record("root", "Split: class 'b' has no test images", logging.WARNING))
    handler.emit(_record(console.FILE_ONLY_PREFIX, "Traceback ...", logging.ERROR))
    assert _lines(stream) == ["ERROR Beam failed badly", "WARNING Split: class 'b' has no test images"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_lines_rewrite_one_line_on_a_terminal_and_vanish_elsewhere() -> None:
    handler, stream = _handler()
    handler.emit(_record(console.STATUS_LOGGER, "Epoch 1/6 (stage 1): batch 3/14", logging.DEBUG))
    assert stream.getvalue() == ""  # not a terminal: no status lines, no control characters
    terminal = _Terminal()
    handler.setStream(terminal)
    handler.emit(_record(console.STATUS_LOGGER, "Epoch 1/6 (stage 1): batch 3/14", logging.DEBUG))
    handler.emit(_record(console.STATUS_LOGGER, "Epoch 1/6 (stage 1): batch 9/14", logging.DEBUG))
    handler.emit(_record("root", "Epoch 1/6 (stage 1): train accuracy 0.5"))
    output = terminal.getvalue()
    clear = "\r\x1b[K"
    parts = output.split(clear)
    assert parts[0] == "" and parts[1].endswith("batch 3/14") and parts[2].endswith("batch 9/14")
    assert parts[3].endswith("Epoch 1/6 (stage 1): train accuracy 0.5\n")  # cleared the status line first
    assert len(parts) == 4


def test_native_import_noise_is_dropped_and_everything_else_passed_on(capfd: pytest.CaptureFixture[str]) -> None:
    # What TensorFlow 2.21 writes to file descriptor 2 at import, whatever TF_CPP_MIN_LOG_LEVEL says.
    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796117484.854359       9 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796117484.856232       9 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
        "E1201 09:31:24.854359   12 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
    )
    with console.native_import_noise_dropped():
        os.write(2, noise.encode())
        os.write(2, b"ImportError: a real problem\n")
    assert capfd.readouterr().err == "ImportError: a real problem\n"
