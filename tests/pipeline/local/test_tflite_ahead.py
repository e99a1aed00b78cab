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


def test_not_started_for_a_cached_trainer(tmp_path: object, started: list) -> None:
    """A cached launch's info names new output artifacts that nothing wrote."""
    original = tflite_ahead.launcher.Launcher.launch
    node = types.SimpleNamespace(node_info=types.SimpleNamespace(id="Trainer"))
    infos = iter([_trainer_info(str(tmp_path), ran=False), _trainer_info(str(tmp_path / "none"))])

    def fake_launch(self: object) -> object:
        return next(infos)

    tflite_ahead.launcher.Launcher.launch = fake_launch
    try:
        with tflite_ahead.converting_after_trainer("float32", str(tmp_path / "serving")):
            step = types.SimpleNamespace(_pipeline_node=node)
            tflite_ahead.launcher.Launcher.launch(step)  # cached: nothing to convert
            tflite_ahead.launcher.Launcher.launch(step)  # ran, but its model folder is missing
        assert tflite_ahead.launcher.Launcher.launch is fake_launch
    finally:
        tflite_ahead.launcher.Launcher.launch = original
    assert started == []
