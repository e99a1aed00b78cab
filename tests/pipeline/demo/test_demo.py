"""The demo's pieces: data generation, the shipped source weights, its config."""

from __future__ import annotations

import os

import keras
import numpy as np
import yaml
from PIL import Image

from components.modules import model as model_lib
from pipeline.config.pipeline_config import load_config
from pipeline.demo import demo, demo_data


def test_generated_data_has_every_class_and_format(tmp_path: object) -> None:
    root = str(tmp_path)
    count = demo_data.generate(root, demo_data.TARGET_CLASSES, per_class=4, size=48, seed=0)
    assert count == 12
    for label in demo_data.TARGET_CLASSES:
        names = sorted(os.listdir(os.path.join(root, label)))
        assert [os.path.splitext(name)[1] for name in names] == [".jpg", ".png", ".bmp", ".gif"]
        assert Image.open(os.path.join(root, label, names[0])).size == (48, 48)


def test_generation_is_deterministic_and_images_differ(tmp_path: object) -> None:
    first = demo_data.generate(f"{tmp_path}/a", ("star",), per_class=2, size=32, seed=5, mixed_formats=False)
    demo_data.generate(f"{tmp_path}/b", ("star",), per_class=2, size=32, seed=5, mixed_formats=False)
    a0, b0, a1 = (
        np.asarray(Image.open(f"{tmp_path}/{d}/star/star_0000{i}.jpg")) for d, i in (("a", 0), ("b", 0), ("a", 1))
    )
    assert first == 2 and np.array_equal(a0, b0) and not np.array_equal(a0, a1)


def test_shipped_source_weights_fit_the_demo_backbone(tmp_path: object) -> None:
    path = demo.source_weights(str(tmp_path), pretrain=False)
    assert path == demo.SHIPPED_WEIGHTS
    keras.utils.set_random_seed(0)
    initial = model_lib.build_backbone(demo.BACKBONE, demo.IMAGE_SIZE, "none", demo.ALPHA)
    keras.utils.set_random_seed(0)
    loaded = model_lib.build_backbone(demo.BACKBONE, demo.IMAGE_SIZE, path, demo.ALPHA)
    # Same initialisation, then every weight tensor replaced from the file.
    changed = [
        not np.array_equal(np.array(a), np.array(b)) for a, b in zip(initial.weights, loaded.weights, strict=True)
    ]
    assert sum(changed) > 0.9 * len(changed)


def test_demo_config_is_a_config_a_user_could_write_and_stays_in_its_workdir(tmp_path: object) -> None:
    workdir = str(tmp_path / "work")
    config = demo.demo_config(workdir, demo.SHIPPED_WEIGHTS)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))

    assert load_config(str(path), {}) == config
    # Everything the demo writes stays under its workdir.
    for written in (config.data_root, config.pipeline_root, config.model_push_dir, config.metadata_path):
        assert os.path.commonpath([workdir, written]) == workdir, written
