"""Pushes appear whole or not at all; unchanged models are not pushed twice; old versions go."""

from __future__ import annotations

import json
import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import atomic_pusher
from tests.helpers import write


def _model(root: str, content: bytes = b"graph") -> str:
    write(os.path.join(root, "saved_model.pb"), content)
    write(os.path.join(root, "variables", "variables.index"), b"index")
    write(os.path.join(root, "variables", "variables.data-00000-of-00001"), b"weights" * 100)
    return root


def test_interrupted_push_leaves_no_visible_version(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(f"{tmp_path}/model")
    base = f"{tmp_path}/serving"
    original = io_utils.fileio.copy

    def copy_then_fail(source: str, destination: str, overwrite: bool = False) -> None:
        original(source, destination, overwrite)
        if destination.endswith("variables.index"):
            raise KeyboardInterrupt("killed mid-copy")

    monkeypatch.setattr(io_utils.fileio, "copy", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_pusher.atomic_push(model, base, 1700000000)
    assert atomic_pusher.list_versions(base) == []
    assert os.listdir(base) == []  # the staging folder is cleaned up too
    monkeypatch.setattr(io_utils.fileio, "copy", original)
    final = atomic_pusher.atomic_push(model, base, 1700000000)
    assert sorted(os.listdir(final)) == ["saved_model.pb", "variables"]


def test_versions_are_pruned_and_increase(tmp_path: object) -> None:
    base = str(tmp_path)
    for version in (5, 7, 9, 11):
        os.makedirs(os.path.join(base, str(version)))
    os.makedirs(os.path.join(base, ".tmp-12-abc"))
    assert atomic_pusher.prune_versions(base, keep=2) == [5, 7]
    assert atomic_pusher.list_versions(base) == [9, 11]
    assert atomic_pusher.next_version(base) > 11
    os.makedirs(os.path.join(base, "99999999999"))
    assert atomic_pusher.next_version(base) == 100000000000


def test_fingerprint_follows_weights(tmp_path: object) -> None:
    first, same = _model(f"{tmp_path}/a"), _model(f"{tmp_path}/b")
    assert atomic_pusher.model_fingerprint(first) == atomic_pusher.model_fingerprint(same)
    write(os.path.join(same, "variables", "variables.data-00000-of-00001"), b"other weights")
    assert atomic_pusher.model_fingerprint(first) != atomic_pusher.model_fingerprint(same)


def _run_executor(tmp_path: object, model_dir: str, blessed: bool, name: str) -> standard_artifacts.PushedModel:
    model = standard_artifacts.Model()
    model.uri = os.path.dirname(model_dir)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = f"{tmp_path}/blessing_{name}"
    os.makedirs(blessing.uri)
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = f"{tmp_path}/pushed_{name}"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=f"{tmp_path}/serving")
    )
    atomic_pusher.AtomicPusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {
            standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
            standard_component_specs.CUSTOM_CONFIG_KEY: json.dumps({atomic_pusher.KEEP_VERSIONS_KEY: 2}),
        },
    )
    return pushed


def test_executor_pushes_blessed_models_once(tmp_path: object) -> None:
    base = f"{tmp_path}/serving"
    first = _model(f"{tmp_path}/m1/Format-Serving", b"graph one")
    assert _run_executor(tmp_path, first, blessed=False, name="0").get_int_custom_property("pushed") == 0
    assert atomic_pusher.list_versions(base) == []
    pushed = _run_executor(tmp_path, first, blessed=True, name="1")
    assert pushed.get_int_custom_property("pushed") == 1
    versions = atomic_pusher.list_versions(base)
    assert len(versions) == 1 and pushed.get_string_custom_property("pushed_destination").endswith(str(versions[0]))
    # The same model blessed again (an unchanged rerun): nothing new appears.
    again = _run_executor(tmp_path, first, blessed=True, name="2")
    assert atomic_pusher.list_versions(base) == versions and again.get_int_custom_property("pushed") == 1
    for index in (2, 3, 4):
        _run_executor(
            tmp_path, _model(f"{tmp_path}/m{index}/Format-Serving", f"graph {index}".encode()), True, f"n{index}"
        )
    assert len(atomic_pusher.list_versions(base)) == 2  # keep_versions
