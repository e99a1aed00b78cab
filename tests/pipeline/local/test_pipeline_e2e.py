"""The whole pipeline on tiny data: pushed when blessed, cached on rerun, blocked by the gate."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from ml_metadata import metadata_store
from tfx import v1 as tfx

from components.ingest import splits
from components.modules import features
from components.modules import model as model_lib
from components.modules.settings import Phase
from components.serving import labels as serving_labels
from components.serving import tflite
from pipeline.cli import main as cli
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.graph import node_ids
from pipeline.local import runner as local_runner
from pipeline.predict import predict
from tests.helpers import encode, noise_folder, solid, tiny_run_config, write

pytestmark = pytest.mark.slow


_config = tiny_run_config


def _count_records(examples_uri: str, split: str) -> int:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _rare_class_with_one_good_image(data_root: str) -> None:
    """Class 'rare': two images, one truncated: the ingest rejects it before splitting, so one image is left."""
    write(os.path.join(data_root, "rare", "r0.png"), encode(solid((250, 250, 0)), "PNG"))
    write(os.path.join(data_root, "rare", "r1.png"), encode(solid((250, 250, 100)), "PNG")[:50])


def _versions(config: PipelineConfig) -> dict[str, float]:
    base = config.model_push_dir
    return (
        {name: os.path.getmtime(os.path.join(base, name)) for name in os.listdir(base)} if os.path.isdir(base) else {}
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three runs over one pipeline root: first, unchanged rerun, stricter gate (BeamDagRunner)."""
    root = str(tmp_path_factory.mktemp("e2e"))
    noise_folder(os.path.join(root, "data"), ("cats", "dogs"), per_class=12, size=40, seed=0)
    write(os.path.join(root, "data", "dogs", "broken.jpg"), encode(solid((1, 2, 3)), "JPEG")[:40])
    _rare_class_with_one_good_image(os.path.join(root, "data"))
    results = {"root": root}
    first = _config(root)
    local_runner.preflight(first)
    results["first"] = local_runner.run(first)
    results["versions_after_first"] = _versions(first)
    results["described_after_first"] = serving_labels.describe_versions(first.serving_dir, first.model_name)
    results["second"] = local_runner.run(first)
    results["second_text"] = results["second"].format()  # before the fixture wipes the serving dir
    results["versions_after_second"] = _versions(first)
    results["blocked"] = local_runner.run(_config(root, min_accuracy=0.99, runner="beam"))
    results["versions_after_blocked"] = _versions(first)
    # An operator deletes the serving directory; the same command runs again.
    shutil.rmtree(first.serving_dir)
    results["repaired"] = local_runner.run(first)
    results["versions_after_repair"] = _versions(first)
    # Domain transfer: a new pipeline starts from the first run's trained backbone.
    results["base_model"] = _trainer_model_uri(first)
    transfer = _config(
        root,
        pipeline_name="transfer",
        pipeline_root=os.path.join(root, "transfer_root"),
        trainer={"weights": "base_model", "augmentation": "none"},
        base_model=results["base_model"],
        compare_from_scratch=True,
    )
    local_runner.preflight(transfer)
    results["transfer"] = local_runner.run(transfer)
    results["transfer_config"] = transfer
    results["transfer_model"] = _trainer_model_uri(transfer)
    return results


def _served(runs: dict) -> str:
    """The first run's model as served now (the fixture wipes the serving dir once; the rerun pushes it again)."""
    return runs["repaired"].pushed_to


def _trainer_model_uri(config: PipelineConfig) -> str:
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    trained = [model for model in store.get_artifacts_by_type("Model") if "/Trainer/model/" in model.uri]
    return max(trained, key=lambda artifact: artifact.id).uri  # the transfer Trainer's, not from_scratch_trainer's


def test_first_run_ingests_trains_blesses_and_pushes(runs: dict) -> None:
    report = runs["first"]
    assert set(report.component_states.values()) == {"ran"}, report.component_states
    assert report.ingest.files_seen == 27
    assert (report.ingest.ingested, report.ingest.rejected) == (25, 2)
    assert report.ingest.rejected_by_reason == {"truncated": 2}
    assert sorted(report.training.class_names) == ["cats", "dogs", "rare"]
    assert report.blessed is True
    assert len(runs["versions_after_first"]) == 1
    version = next(iter(runs["versions_after_first"]))
    assert report.pushed_to == os.path.join(runs["root"], "serving", "image_classifier", version)
    # `serving list` shows the version's test accuracy, the gate's number from TFMA, and its run.
    (pushed,) = runs["described_after_first"]
    assert str(pushed.version) == version
    assert pushed.accuracy == pytest.approx(report.gate.candidate_accuracy)
    assert pushed.pipeline_run == report.run_id


def test_splits_feed_the_trainer_and_the_gate_separately(runs: dict) -> None:
    report = runs["first"]
    examples_uri = os.path.dirname(report.ingest_report_dir)
    counts = {name: _count_records(examples_uri, name) for name in splits.SPLIT_NAMES}
    assert counts == report.ingest.split_counts and sum(counts.values()) == report.ingest.ingested
    # The Trainer saw train and validation only; the gate judged on test only.
    assert report.training.split_sizes == {"train": counts["train"], "validation": counts["validation"]}
    assert report.gate.test_examples == counts["test"]
    assert sum(report.gate.per_class_examples.values()) == counts["test"]
    # A broken file takes no split slot: the one good image trains, and the notes say what is missing.
    assert "class 'rare' has no test images (1 ingested)" in report.ingest.notes
    assert "class 'rare' has no validation images (1 ingested)" in report.ingest.notes


def test_a_class_without_test_images_keeps_its_own_label(runs: dict) -> None:
    report = runs["first"]
    assert report.ingest.class_split_counts["rare"] == {"train": 1, "validation": 0, "test": 0}
    # Its own output unit and its own TFMA slice: never counted as another class.
    assert len(set(report.training.class_names)) == 3
    assert "rare" not in report.gate.per_class_examples
    model = tf.saved_model.load(_served(runs))
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encode(solid((9, 9, 9)), "PNG")])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"rare"])),
                "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"rare/new.png"])),
            }
        )
    )
    label = model.signatures["transform_features"](examples=tf.constant([example.SerializeToString()]))
    index = int(next(iter(label.values())).numpy().ravel()[0])
    assert report.training.class_names[index] == "rare"


def test_pushed_model_serves_raw_image_bytes(runs: dict) -> None:
    model = tf.saved_model.load(_served(runs))
    assert {"serving_default", "serving_examples", "transform_features", "serve_pixels"} <= set(model.signatures)
    images = [encode(solid((200, 10, 10), size=50), "JPEG"), encode(solid((10, 10, 200), size=20), "PNG")]
    outputs = model.signatures["serving_default"](image_bytes=tf.constant(images))
    assert outputs["classes"].shape == (2, 3) and outputs["probabilities"].shape == (2, 3)
    assert {name.decode() for name in outputs["classes"].numpy().ravel()} == {"cats", "dogs", "rare"}
    assert tf.reduce_all(tf.abs(tf.reduce_sum(outputs["probabilities"], axis=1) - 1.0) < 1e-5)


def test_pushed_version_holds_a_tflite_file_that_answers_like_the_saved_model(runs: dict) -> None:
    version = _served(runs)
    tflite_file = os.path.join(version, tflite.TFLITE_FILE)
    assert tflite.read_labels(tflite_file) == runs["first"].training.class_names  # the output order
    images = [encode(solid((200, 10, 10), size=50), "JPEG"), encode(solid((10, 10, 200), size=20), "PNG")]
    # features.model_pixels is the serving signatures' decode chain: no skew between the two paths.
    model = tf.saved_model.load(version)
    pixels = features.model_pixels(tf.constant(images), 32)
    by_pixels = model.signatures["serve_pixels"](pixels=pixels)["probabilities"].numpy()
    by_bytes = model.signatures["serving_default"](image_bytes=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(by_pixels, by_bytes, atol=1e-5)
    # The float32 file gives the SavedModel's scores for every class.
    on_device, saved = predict.tflite_classifier(tflite_file), predict.local_classifier(version)
    for index, image in enumerate(images):
        expected = saved(str(index), image)
        got = on_device(str(index), image)
        assert sorted(got.classes) == sorted(expected.classes)
        np.testing.assert_allclose(
            [dict(zip(got.classes, got.scores, strict=True))[name] for name in expected.classes],
            expected.scores,
            atol=1e-4,
        )
    query = write(os.path.join(runs["root"], "query", "t.png"), images[1])
    result = CliRunner().invoke(cli.main, ["predict", query, "--tflite", tflite_file])
    assert result.exit_code == 0 and result.output.splitlines()[1].startswith(query), result.output


def test_bad_image_is_an_invalid_argument_with_a_message(runs: dict) -> None:
    model = tf.saved_model.load(_served(runs))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        model.signatures["serving_default"](image_bytes=tf.constant([b"this is not an image"]))


def test_warmup_requests_are_real_eval_images(runs: dict) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(_served(runs), "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert [len(log.predict_log.request.inputs["image_bytes"].string_val) for log in logs] == [1, 1, 1, 3]
    model = tf.saved_model.load(_served(runs))
    images = list(logs[-1].predict_log.request.inputs["image_bytes"].string_val)
    assert tf.io.decode_jpeg(images[0]).shape == (32, 32, 3)
    assert model.signatures["serving_default"](image_bytes=tf.constant(images))["classes"].shape == (3, 3)


def test_predict_cli_uses_the_newest_pushed_version(runs: dict) -> None:
    image = write(os.path.join(runs["root"], "query", "q.png"), encode(solid((10, 200, 10)), "PNG"))
    result = CliRunner().invoke(
        cli.main, ["predict", image, "--model-dir", os.path.join(runs["root"], "serving", "image_classifier")]
    )
    assert result.exit_code == 0, result.output
    assert "q.png" in result.output and ("cats" in result.output and "dogs" in result.output)
    text = write(os.path.join(runs["root"], "query", "notes.jpg"), b"not an image")
    result = CliRunner().invoke(
        cli.main, ["predict", text, "--model-dir", os.path.join(runs["root"], "serving", "image_classifier")]
    )
    assert (
        result.exit_code == 1
        and "notes.jpg: Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required." in result.output
    )


def test_unchanged_rerun_is_served_from_cache(runs: dict) -> None:
    states = runs["second"].component_states
    for component in ("FileBasedExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert states[component] == "cached", states
    # The gate's baseline is the version served now (the first run's): read on every run, so the
    # Evaluator re-judges the same model against it; the Pusher sees it is served and copies nothing.
    assert states["served_model"] == states["Evaluator"] == "ran"
    second = runs["second"]
    assert (second.served_version, second.served_by) == (
        int(next(iter(runs["versions_after_first"]))),
        "newest version",
    )
    assert second.gate.baseline_accuracy == pytest.approx(second.gate.candidate_accuracy)  # the same model
    # The served model's number, with its 95% interval, and which version it is.
    served_text = rf"served model {second.gate.baseline_accuracy:.3f} \(95% [01]\.\d{{3}}-[01]\.\d{{3}}\) "
    assert re.search(served_text + rf"\(version {second.served_version}, its newest version\)", second.format())
    assert second.blessed is True and second.push_outcome == "already_served"
    assert second.served_test_gate is None  # the candidate is the served model: nothing to compare there
    assert runs["versions_after_second"] == runs["versions_after_first"]
    assert second.pushed_to == runs["first"].pushed_to
    assert "(already served: nothing copied)" in runs["second_text"]


def test_the_first_run_is_gated_without_a_baseline(runs: dict) -> None:
    first = runs["first"]
    assert first.served_version == 0 and first.gate.baseline_accuracy is None
    assert "served model none yet" in first.format()


def test_gate_blocks_push_and_serving_dir_is_unchanged(runs: dict) -> None:
    report = runs["blocked"]
    assert report.component_states["Trainer"] == "cached"
    assert report.component_states["Evaluator"] == "ran"
    assert report.blessed is False
    assert report.pushed_to is None
    assert runs["versions_after_blocked"] == runs["versions_after_second"]
    # The reason, with the numbers the Evaluator judged on.
    accuracy = report.gate.candidate_accuracy
    assert f"test accuracy {accuracy:.3f} is below min_accuracy 0.990" in report.gate.reasons
    assert f"not blessed: test accuracy {accuracy:.3f} is below min_accuracy 0.990" in report.format()


def test_a_wiped_serving_dir_is_repaired_by_a_rerun(runs: dict) -> None:
    report = runs["repaired"]
    assert report.component_states["Trainer"] == "cached" and report.component_states["Pusher"] == "ran"
    assert report.blessed is True
    assert len(runs["versions_after_repair"]) == 1
    assert os.path.isfile(os.path.join(report.pushed_to, "saved_model.pb"))
    assert "MISSING" not in report.format()


def test_domain_transfer_starts_from_the_earlier_model(runs: dict) -> None:
    report = runs["transfer"]
    assert report.component_states["base_model_importer"] == "ran"
    assert report.training.settings.weights == "base_model"
    # Stage 1 keeps the transferred backbone frozen (inference mode), so it leaves
    # training exactly as it came from the first pipeline's model.
    before = model_lib.build_backbone("MobileNetV2", 32, model_lib.backbone_weights_path(runs["base_model"]))
    after = model_lib.build_backbone("MobileNetV2", 32, model_lib.backbone_weights_path(runs["transfer_model"]))
    pairs = list(zip(before.weights, after.weights, strict=True))
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in pairs)
    for name in ("learning_curves.png", "confusion_matrix.png", "training_summary.md", "logs"):
        assert name in report.training_files
    examples_uri = os.path.dirname(report.ingest_report_dir)
    matrix = np.array(report.training.validation_confusion_matrix)
    assert matrix.shape == (3, 3) and matrix.sum() == _count_records(examples_uri, "validation")
    # Where the Trainer's time went: every phase, in order, within the Trainer step's own time.
    phases = report.training.phase_seconds
    expected = [Phase.COUNT, Phase.BUILD, Phase.STAGE1]
    expected += [Phase.STAGE2] if report.training.stage2 is not None else []
    assert sorted(phases) == sorted([*expected, Phase.EXPORT])
    assert list(phases)[:3] == expected[:3] and list(phases)[-1] == Phase.EXPORT
    trainer_seconds = next(step.seconds for step in report.steps if step.name == "Trainer")
    assert 0 < sum(phases.values()) <= trainer_seconds


def test_from_scratch_comparison_is_lineage_in_mlmd(runs: dict) -> None:
    report = runs["transfer"]
    assert report.component_states[node_ids.FROM_SCRATCH_TRAINER] == "ran"
    assert report.component_states[node_ids.TRANSFER_VS_SCRATCH_EVALUATOR] == "ran"
    comparison = report.comparison
    assert comparison.candidate_accuracy is not None and comparison.baseline_accuracy is not None
    # The same transfer model on the same test split as the gate: the same accuracy.
    assert comparison.candidate_accuracy == pytest.approx(report.gate.candidate_accuracy)
    assert report.negative_transfer is not None
    assert comparison.test_examples == report.gate.test_examples
    # The comparison blesses nothing, so the Resolver can never take its verdict for the gate's.
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(runs["transfer_config"].metadata_path)
    )
    blessings = store.get_artifacts_by_type("ModelBlessing")
    comparison_blessings = [b for b in blessings if f"/{node_ids.TRANSFER_VS_SCRATCH_EVALUATOR}/" in b.uri]
    assert all(
        b.custom_properties["blessed"].int_value != 1 for b in comparison_blessings if "blessed" in b.custom_properties
    )
