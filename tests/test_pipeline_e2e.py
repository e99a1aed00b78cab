"""The whole pipeline on tiny data: pushed when blessed, cached on rerun, blocked by the gate."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from ml_metadata import metadata_store
from tfx import v1 as tfx

from components.modules import model as model_lib
from pipeline import cli, local_runner
from pipeline.config import PipelineConfig, build_config
from tests.helpers import encode, noise_folder, solid, write

pytestmark = pytest.mark.slow


def _config(root: str, **overrides: object) -> PipelineConfig:
    values = {
        "data_root": os.path.join(root, "data"),
        "pipeline_root": os.path.join(root, "tfx_root"),
        "serving_dir": os.path.join(root, "serving"),
        "image_size": 32,
        "weights": "none",
        "stage1_epochs": 1,
        "stage2_epochs": 0,
        "batch_size": 8,
        "eval_percent": 40,
        "min_accuracy": 0.0,
    }
    values.update(overrides)
    return build_config(values)


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
    results = {"root": root}
    first = _config(root)
    local_runner.preflight(first)
    results["first"] = local_runner.run(first)
    results["versions_after_first"] = _versions(first)
    results["second"] = local_runner.run(first)
    results["versions_after_second"] = _versions(first)
    results["blocked"] = local_runner.run(_config(root, min_accuracy=1.0, runner="beam"))
    results["versions_after_blocked"] = _versions(first)
    # Domain transfer: a new pipeline starts from the first run's trained backbone.
    results["base_model"] = _trainer_model_uri(first)
    transfer = _config(
        root,
        pipeline_name="transfer",
        pipeline_root=os.path.join(root, "transfer_root"),
        weights="base_model",
        base_model=results["base_model"],
        augment=False,
        compare_from_scratch=True,
    )
    local_runner.preflight(transfer)
    results["transfer"] = local_runner.run(transfer)
    results["transfer_model"] = _trainer_model_uri(transfer)
    return results


def _trainer_model_uri(config: PipelineConfig) -> str:
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    return max(store.get_artifacts_by_type("Model"), key=lambda artifact: artifact.id).uri


def test_first_run_ingests_trains_blesses_and_pushes(runs: dict) -> None:
    report = runs["first"]
    assert set(report.component_states.values()) == {"ran"}, report.component_states
    assert report.ingest["files_seen"] == 25
    assert (report.ingest["ingested"], report.ingest["rejected"]) == (24, 1)
    assert report.ingest["rejected_by_reason"] == {"truncated": 1}
    assert report.training["class_names"] and sorted(report.training["class_names"]) == ["cats", "dogs"]
    assert report.blessed is True
    assert len(runs["versions_after_first"]) == 1
    version = next(iter(runs["versions_after_first"]))
    assert report.pushed_to == os.path.join(runs["root"], "serving", "image_classifier", version)


def test_pushed_model_serves_raw_image_bytes(runs: dict) -> None:
    model = tf.saved_model.load(runs["first"].pushed_to)
    assert {"serving_default", "serving_examples", "transform_features"} <= set(model.signatures)
    images = [encode(solid((200, 10, 10), size=50), "JPEG"), encode(solid((10, 10, 200), size=20), "PNG")]
    outputs = model.signatures["serving_default"](image_bytes=tf.constant(images))
    assert outputs["classes"].shape == (2, 2) and outputs["probabilities"].shape == (2, 2)
    assert {name.decode() for name in outputs["classes"].numpy().ravel()} == {"cats", "dogs"}
    assert tf.reduce_all(tf.abs(tf.reduce_sum(outputs["probabilities"], axis=1) - 1.0) < 1e-5)


def test_bad_image_is_an_invalid_argument_with_a_message(runs: dict) -> None:
    model = tf.saved_model.load(runs["first"].pushed_to)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        model.signatures["serving_default"](image_bytes=tf.constant([b"this is not an image"]))


def test_warmup_requests_are_real_eval_images(runs: dict) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(runs["first"].pushed_to, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert [len(log.predict_log.request.inputs["image_bytes"].string_val) for log in logs] == [1, 1, 1, 3]
    model = tf.saved_model.load(runs["first"].pushed_to)
    images = list(logs[-1].predict_log.request.inputs["image_bytes"].string_val)
    assert tf.io.decode_jpeg(images[0]).shape == (32, 32, 3)
    assert model.signatures["serving_default"](image_bytes=tf.constant(images))["classes"].shape == (3, 2)


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
    assert result.exit_code == 1 and "notes.jpg: the model cannot decode it" in result.output


def test_unchanged_rerun_is_served_from_cache(runs: dict) -> None:
    states = runs["second"].component_states
    for component in ("FileBasedExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert states[component] == "cached", states
    # The baseline changed (the first model is now blessed), so TFX re-evaluates and
    # re-blesses the same model; the pusher sees it is already served and copies nothing.
    assert states["Evaluator"] == "ran"
    assert runs["second"].blessed is True
    assert runs["versions_after_second"] == runs["versions_after_first"]
    assert runs["second"].pushed_to == runs["first"].pushed_to


def test_gate_blocks_push_and_serving_dir_is_unchanged(runs: dict) -> None:
    report = runs["blocked"]
    assert report.component_states["Trainer"] == "cached"
    assert report.component_states["Evaluator"] == "ran"
    assert report.blessed is False
    assert report.pushed_to is None
    assert runs["versions_after_blocked"] == runs["versions_after_second"]


def test_domain_transfer_starts_from_the_earlier_model(runs: dict) -> None:
    report = runs["transfer"]
    assert report.component_states["base_model_importer"] == "ran"
    assert report.training["config"]["weights"] == "base_model"
    # Stage 1 keeps the transferred backbone frozen (inference mode), so it leaves
    # training exactly as it came from the first pipeline's model.
    before = model_lib.build_backbone("MobileNetV2", 32, os.path.join(runs["base_model"], model_lib.BACKBONE_WEIGHTS))
    after = model_lib.build_backbone(
        "MobileNetV2", 32, os.path.join(runs["transfer_model"], model_lib.BACKBONE_WEIGHTS)
    )
    pairs = list(zip(before.weights, after.weights, strict=True))
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in pairs)
    for name in ("learning_curves.png", "confusion_matrix.png", "training_summary.md", "logs"):
        assert name in report.training_files
    # The comparison run trained from scratch on the same data and epochs.
    scratch = report.training["from_scratch_eval_accuracy"]
    assert 0.0 <= scratch <= 1.0
    assert report.training["negative_transfer"] == (scratch > report.training["head_only_eval_accuracy"])
    examples_uri = os.path.dirname(report.ingest["report_dir"])
    eval_files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    eval_count = sum(1 for _ in tf.data.TFRecordDataset(eval_files, compression_type="GZIP"))
    matrix = np.array(report.training["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == eval_count
