"""The whole pipeline with a SavedModel feature-vector backbone: both stages, gated, pushed, served."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components.modules import model as model_lib
from components.modules.settings import PlanStep
from pipeline.local import runner as local_runner
from tests import saved_models
from tests.helpers import encode, solid, tiny_run_config, write

pytestmark = pytest.mark.slow

SIZE = 32


def _kernel(loaded: object) -> np.ndarray:
    variables = getattr(loaded, "variables", None) or loaded.signatures["serving_default"].variables
    return next(v for v in variables if v.name == "conv/kernel:0").numpy()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = str(tmp_path_factory.mktemp("savedmodel_e2e"))
    backbone = saved_models.export_hub_style(saved_models.tiny_feature_extractor(SIZE), os.path.join(root, "fv"))
    original_kernel = _kernel(tf.saved_model.load(backbone))
    for index in range(10):
        write(os.path.join(root, "data", "red", f"{index}.png"), encode(solid((200 + index, 20, 20), SIZE), "PNG"))
        write(os.path.join(root, "data", "blue", f"{index}.png"), encode(solid((20, 20, 200 + index), SIZE), "PNG"))
    config = tiny_run_config(
        root,
        trainer={
            "backbone": f"savedmodel:{backbone}",
            "weights": "imagenet",
            "stage2_epochs": 1,
            "augmentation": "none",
        },
    )
    local_runner.preflight(config)
    report = local_runner.run(config)
    shutil.rmtree(backbone)  # the pushed model must not need the backbone's folder
    return {"report": report, "original_kernel": original_kernel, "pipeline_root": config.pipeline_root}


def test_both_stages_train_and_the_model_is_gated_and_pushed(run: dict) -> None:
    report = run["report"]
    assert set(report.component_states.values()) == {"ran"}, report.component_states
    training = report.training
    assert training.settings.backbone.startswith("savedmodel:")
    assert (len(training.stage1.loss), len(training.stage2.loss)) == (1, 1)
    assert training.stage2_plan == [PlanStep(first_layer=model_lib.BACKBONE_LAYER_NAME, epochs=1)]
    assert training.stage2_trainable_layers == [model_lib.BACKBONE_LAYER_NAME]
    assert report.blessed is True and report.gate.test_examples > 0
    assert os.path.isfile(os.path.join(report.pushed_to, "saved_model.pb"))
    # No backbone.weights.h5: weights=base_model is for keras.applications backbones.
    written = {name for _, _, files in os.walk(run["pipeline_root"]) for name in files}
    assert "training_summary.json" in written and model_lib.BACKBONE_WEIGHTS not in written


def test_pushed_serving_signature_answers_with_the_kept_stages_backbone(run: dict) -> None:
    report = run["report"]
    model = tf.saved_model.load(report.pushed_to)
    images = [encode(solid((220, 20, 20), size=50), "JPEG"), encode(solid((20, 20, 220), size=20), "PNG")]
    outputs = model.signatures["serving_default"](image_bytes=tf.constant(images))
    assert outputs["probabilities"].shape == (2, 2)
    assert {name.decode() for name in outputs["classes"].numpy().ravel()} == {"red", "blue"}
    # Stage 2 fine-tuned the SavedModel's variables; the export holds them if stage 2 was kept.
    fine_tuned = not np.array_equal(_kernel(model), run["original_kernel"])
    assert fine_tuned == (report.training.kept_stage == 2)
