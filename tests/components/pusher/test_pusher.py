"""The Pusher executor: blessed models only, once, again when the served version is gone."""

from __future__ import annotations

import datetime
import json
import os
import shutil

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.pusher import executor as pusher_executor
from components.serving import repository as serving_dir
from components.serving import tflite
from tests.helpers import write


def _model(root: str, content: bytes = b"graph", classes: tuple[str, ...] = ("a", "b", "c")) -> str:
    write(os.path.join(root, "assets", "label_vocab"), "\n".join(classes).encode() + b"\n")
    write(os.path.join(root, "saved_model.pb"), content)
    write(os.path.join(root, "variables", "variables.index"), b"index")
    write(os.path.join(root, "variables", "variables.data-00000-of-00001"), b"weights" * 100)
    return root


def _run_executor(
    tmp_path: object,
    model_dir: str,
    blessed: bool,
    name: str,
    allow_class_changes: bool = False,
    tflite_variant: tflite.TfliteVariant = "none",
) -> standard_artifacts.PushedModel:
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
    pusher_executor.AtomicPusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {
            standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
            standard_component_specs.CUSTOM_CONFIG_KEY: pusher_executor.PusherSettings(
                keep_versions=2, allow_class_changes=allow_class_changes, tflite=tflite_variant
            ).model_dump_json(),
        },
    )
    return pushed


def test_executor_pushes_blessed_models_once(tmp_path: object) -> None:
    base = f"{tmp_path}/serving"
    first = _model(f"{tmp_path}/m1/Format-Serving", b"graph one")
    assert _run_executor(tmp_path, first, blessed=False, name="0").get_int_custom_property("pushed") == 0
    assert serving_dir.list_versions(base) == []
    pushed = _run_executor(tmp_path, first, blessed=True, name="1")
    assert pushed.get_int_custom_property("pushed") == 1
    versions = serving_dir.list_versions(base)
    assert len(versions) == 1 and pushed.get_string_custom_property("pushed_destination").endswith(str(versions[0]))
    # The same model blessed again (an unchanged rerun): nothing new appears.
    again = _run_executor(tmp_path, first, blessed=True, name="2")
    assert serving_dir.list_versions(base) == versions and again.get_int_custom_property("pushed") == 1
    for index in (2, 3, 4):
        _run_executor(
            tmp_path, _model(f"{tmp_path}/m{index}/Format-Serving", f"graph {index}".encode()), True, f"n{index}"
        )
    assert len(serving_dir.list_versions(base)) == 2  # keep_versions


def test_executor_pushes_again_when_the_serving_dir_was_lost(tmp_path: object) -> None:
    base = f"{tmp_path}/serving"
    model = _model(f"{tmp_path}/m1/Format-Serving", b"graph one")
    _run_executor(tmp_path, model, blessed=True, name="1")
    shutil.rmtree(base)
    pushed = _run_executor(tmp_path, model, blessed=True, name="2")
    destination = pushed.get_string_custom_property("pushed_destination")
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
    assert serving_dir.list_versions(base) == [int(pushed.get_string_custom_property("pushed_version"))]


def test_a_changed_class_set_is_held_back_unless_allowed(tmp_path: object) -> None:
    base = f"{tmp_path}/serving"
    served = _run_executor(tmp_path, _model(f"{tmp_path}/m1/Format-Serving", b"one"), blessed=True, name="1")
    # Span 3 dropped class b: the new model ties on accuracy but no longer knows b.
    fewer = _model(f"{tmp_path}/m2/Format-Serving", b"two", classes=("c", "a"))
    held = _run_executor(tmp_path, fewer, blessed=True, name="2")
    assert held.get_int_custom_property("pushed") == 0
    reason = held.get_string_custom_property(pusher_executor.NOT_PUSHED_REASON)
    assert "the served model's classes ['b'] are missing" in reason and "allow_class_changes" in reason
    assert serving_dir.list_versions(base) == [int(served.get_string_custom_property("pushed_version"))]
    # The same order-independent class set is not a change; an explicit allowance pushes the new set.
    same = _run_executor(tmp_path, _model(f"{tmp_path}/m3/Format-Serving", b"three", ("c", "b", "a")), True, "3")
    assert same.get_int_custom_property("pushed") == 1
    allowed = _run_executor(tmp_path, fewer, blessed=True, name="4", allow_class_changes=True)
    assert allowed.get_int_custom_property("pushed") == 1 and len(serving_dir.list_versions(base)) == 2


def test_pushes_record_their_origin_and_pruning_spares_labelled_versions(tmp_path: object) -> None:
    from components.serving import labels, model_config, sidecars

    base = f"{tmp_path}/serving"  # the serving dir is tmp_path, the model name "serving"
    first = _run_executor(tmp_path, _model(f"{tmp_path}/m1/Format-Serving", b"one"), blessed=True, name="1")
    stable = int(first.get_string_custom_property("pushed_version"))
    info = os.path.join(base, str(stable), "assets.extra", "push_info.json")  # the on-disk contract
    with open(info) as handle:
        recorded = json.load(handle)
    assert recorded["model_uri"] == f"{tmp_path}/m1/Format-Serving"
    pushed_at = datetime.datetime.fromisoformat(recorded["pushed_at"])  # UTC ISO-8601 with its offset
    assert pushed_at.utcoffset() == datetime.timedelta(0) and recorded["pushed_at"].endswith("+00:00")
    assert sidecars.read_push_info(os.path.join(base, str(stable))).model_uri == recorded["model_uri"]
    labels.set_canary(str(tmp_path), "serving", stable)  # the operator opts into labels
    for index in (2, 3, 4):
        model = _model(f"{tmp_path}/m{index}/Format-Serving", f"graph {index}".encode())
        newest = _run_executor(tmp_path, model, blessed=True, name=f"n{index}")
    versions = serving_dir.list_versions(base)
    # keep_versions=2 keeps the newest two, and never the labelled stable version's folder goes.
    assert stable in versions and versions[-1] == int(newest.get_string_custom_property("pushed_version"))
    assert stable in model_config.listed_versions(str(tmp_path), "serving")
    # Each new push is listed in the model config, so TF Serving loads it (the canary step).
    assert versions[-1] in model_config.listed_versions(str(tmp_path), "serving")


def test_a_new_version_appears_with_its_tflite_file_and_labels(
    tmp_path: object, tiny_saved_classifier: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"{tmp_path}/serving"
    model_dir = f"{tmp_path}/m1/Format-Serving"
    shutil.copytree(tiny_saved_classifier["saved_model"], model_dir)
    at_rename = {}
    rename = serving_dir._rename_to_free_version

    def looking_rename(staging: str, *args: object) -> str:
        at_rename["files"] = sorted(os.listdir(staging))
        return rename(staging, *args)

    monkeypatch.setattr(serving_dir, "_rename_to_free_version", looking_rename)
    pushed = _run_executor(tmp_path, model_dir, blessed=True, name="1", tflite_variant="float16")
    version_dir = pushed.get_string_custom_property("pushed_destination")
    # Written into the staging folder, so the version folder never exists without them.
    assert {tflite.TFLITE_FILE, tflite.LABELS_FILE, "saved_model.pb"} <= set(at_rename["files"])
    # Extra files change nothing for TF Serving's view: one complete numeric version.
    assert serving_dir.list_versions(base) == [int(os.path.basename(version_dir))]
    assert serving_dir.newest_model_dir(base) == version_dir and serving_dir.is_complete(version_dir)
    assert not [name for name in os.listdir(base) if name.startswith(".tmp-")]
    with open(os.path.join(version_dir, tflite.LABELS_FILE)) as handle:
        assert handle.read().splitlines() == pusher_executor.class_names(model_dir) == tiny_saved_classifier["classes"]
    assert (
        tflite.OnDeviceModel(os.path.join(version_dir, tflite.TFLITE_FILE)).class_names
        == (tiny_saved_classifier["classes"])
    )


def test_a_model_without_the_pixel_signature_is_not_pushed(tmp_path: object) -> None:
    import tensorflow as tf

    class BytesOnly(tf.Module):  # a model exported before the pixel signature existed
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, image_bytes: tf.Tensor) -> tf.Tensor:
            return tf.strings.length(image_bytes)

    model_dir = f"{tmp_path}/m1/Format-Serving"
    module = BytesOnly()
    tf.saved_model.save(module, model_dir, signatures={"serving_default": module.serve})
    write(os.path.join(model_dir, "assets", "label_vocab"), b"a\nb\n")
    with pytest.raises(tflite.ConversionError, match="no 'serve_pixels' signature.*retrain it, or set tflite: none"):
        _run_executor(tmp_path, model_dir, blessed=True, name="1", tflite_variant="float32")
    base = f"{tmp_path}/serving"
    assert not os.path.isdir(base) or os.listdir(base) == []  # no version, no staging folder left
