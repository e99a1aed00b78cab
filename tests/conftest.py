"""Shared fixtures."""

from __future__ import annotations

import os

import pytest

from pipeline.demo import demo_data


@pytest.fixture(scope="session")
def tiny_saved_classifier(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A trained 3-class shape classifier, exported with the Trainer's pixel signature.

    The demo's recipe at small scale: its pretrained source backbone (96 px
    MobileNetV2 0.35, frozen) and a head trained on 150 shapes. Returns
    ``saved_model`` (a ``Format-Serving`` folder with ``serve_pixels`` and
    ``assets/label_vocab``), ``classes`` (in output order), ``image_size``, and
    ``eval_images``/``eval_labels`` (encoded images of another seed).
    """
    import random

    import keras
    import numpy as np
    import tensorflow as tf

    from components import signatures
    from components.modules import export, features
    from components.modules import model as model_lib
    from pipeline.demo import demo
    from tests.helpers import encode

    size, classes = demo.IMAGE_SIZE, demo_data.TARGET_CLASSES

    def images(count: int, seed: int) -> tuple[list[bytes], np.ndarray]:
        rng = random.Random(seed)
        labels = np.arange(count) % len(classes)
        return [encode(demo_data.render(classes[label], size, rng), "PNG") for label in labels], labels

    keras.utils.set_random_seed(0)
    train_bytes, train_labels = images(150, seed=1)
    backbone = model_lib.build_backbone(demo.BACKBONE, size, demo.SHIPPED_WEIGHTS, demo.ALPHA)
    classifier = model_lib.build_classifier(backbone, demo.BACKBONE, len(classes), 0.1)
    model_lib.freeze_backbone(classifier)
    model_lib.compile_model(classifier, 3e-3)
    pixels = features.model_pixels(tf.constant(train_bytes), size).numpy()
    classifier.fit(pixels, train_labels, batch_size=16, epochs=8, verbose=0)
    folder = str(tmp_path_factory.mktemp("tiny_model") / "Format-Serving")
    tf.saved_model.save(
        classifier,
        folder,
        signatures={
            signatures.PIXELS_SIGNATURE: export.pixel_signature(export.classify_pixels(classifier, size), size)
        },
    )
    os.makedirs(os.path.join(folder, "assets"), exist_ok=True)  # where the Trainer's TFT vocabulary lands
    with open(os.path.join(folder, "assets", features.LABEL_VOCAB_NAME), "w") as handle:
        handle.write("".join(f"{name}\n" for name in classes))
    eval_bytes, eval_labels = images(150, seed=2)
    return {
        "saved_model": folder,
        "classes": list(classes),
        "image_size": size,
        "eval_images": eval_bytes,
        "eval_labels": eval_labels,
    }
