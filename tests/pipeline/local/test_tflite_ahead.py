"""The local runner starts the candidate's TFLite conversion when the Trainer has run, and only then."""

from __future__ import annotations

import os
import shutil
import types

import pytest
from tfx.types import standard_artifacts

from components.serving import tflite
from pipeline.local import tflite_ahead


def _trainer_info(model_uri: str, ran: bool = True) -> types.SimpleNamespace:
    model = standard_artifacts.Model()
    model.uri = model_uri
    return types.SimpleNamespace(
        output_dict={"model": [model]}, execution_output_uri=os.path.join(model_uri, "out") if ran else ""
    )


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(tflite, "convert_ahead", lambda model_dir, variant: calls.append((model_dir, variant)) or True)
    return calls


def test_started_on_the_exported_model_unless_none_or_already_served(
    tiny_saved_classifier: dict, tmp_path: object, started: list
) -> None:
    model_uri = os.path.join(str(tmp_path), "Trainer", "model", "7")
    shutil.copytree(tiny_saved_classifier["saved_model"], os.path.join(model_uri, "Format-Serving"))
    push_dir = os.path.join(str(tmp_path), "serving", "image_classifier")
    assert tflite_ahead.start_after_trainer(_trainer_info(model_uri), "float16", push_dir)
    assert started == [(os.path.join(model_uri, "Format-Serving"), "float16")]  # what the Pusher's GetModelPath reads
    assert not tflite_ahead.start_after_trainer(_trainer_info(model_uri), "none", push_dir)
    assert not tflite_ahead.start_after_trainer(None, "float16", push_dir)
    shutil.copytree(tiny_saved_classifier["saved_model"], os.path.join(push_dir, "1"))
    assert not tflite_ahead.start_after_trainer(_trainer_info(model_uri), "float16", push_dir)  # the Pusher won't
    assert len(started) == 1


def _model_at(tiny_saved_classifier: dict, uri: str) -> str:
    shutil.copytree(tiny_saved_classifier["saved_model"], os.path.join(uri, "Format-Serving"))
    return os.path.join(uri, "Format-Serving")


def _launching(infos: list, variant: str, push_dir: str) -> None:
    """Launches a Trainer node once per info inside ``converting_after_trainer``."""
    original = tflite_ahead.launcher.Launcher.launch
    queue = iter(infos)
    tflite_ahead.launcher.Launcher.launch = lambda self: next(queue)
    node = types.SimpleNamespace(node_info=types.SimpleNamespace(id="Trainer"))
    try:
        with tflite_ahead.converting_after_trainer(variant, push_dir):
            for _ in infos:
                tflite_ahead.launcher.Launcher.launch(types.SimpleNamespace(_pipeline_node=node))
    finally:
        tflite_ahead.launcher.Launcher.launch = original


def test_not_started_for_a_cached_trainer(tiny_saved_classifier: dict, tmp_path: object, started: list) -> None:
    """A cached launch's info has no executor output URI (its output artifacts are new ones nothing wrote)."""
    uri = str(tmp_path / "cached")
    _model_at(tiny_saved_classifier, uri)  # a model there, so only the cached check can refuse it
    _launching([_trainer_info(uri, ran=False)], "float32", str(tmp_path / "serving"))
    assert started == []


def test_a_trainer_launch_starts_it_and_an_untaken_result_is_discarded(
    tiny_saved_classifier: dict, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "ran")
    model_dir = _model_at(tiny_saved_classifier, uri)
    monkeypatch.setattr(tflite, "convert", lambda *args: b"flatbuffer")
    original = tflite_ahead.launcher.Launcher.launch
    _launching([_trainer_info(uri)], "dynamic", str(tmp_path / "serving"))  # nothing takes it: the gate refused
    assert tflite_ahead.launcher.Launcher.launch is original
    assert not tflite.discard_ahead(model_dir, "dynamic")  # already dropped when the run ended
