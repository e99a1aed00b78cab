"""Test helpers: tiny images and folders made on the fly."""

from __future__ import annotations

import io
import os
import random

import numpy as np
from PIL import Image

from pipeline.config.pipeline_config import PipelineConfig, build_config


def encode(image: Image.Image, image_format: str, **kwargs: object) -> bytes:
    """Encodes a Pillow image in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **kwargs)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: int = 24, mode: str = "RGB") -> Image.Image:
    """A solid-colour image with a little noise."""
    rng = np.random.default_rng(sum(color))
    pixels = np.clip(np.array(color, np.float32) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def write(path: str, data: bytes) -> str:
    """Writes bytes, creating parent folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def noise_folder(root: str, classes: tuple[str, ...], per_class: int, size: int, seed: int) -> str:
    """Random-noise images: classes a model cannot tell apart."""
    rng = random.Random(seed)
    for label in classes:
        for index in range(per_class):
            pixels = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, (size, size, 3), dtype=np.uint8)
            write(os.path.join(root, label, f"{index:03d}.png"), encode(Image.fromarray(pixels), "PNG"))
    return root


def tiny_run_config(root: str, trainer: dict | None = None, **overrides: object) -> PipelineConfig:
    """A whole pipeline under ``root`` that runs in about a minute: 32 px, from scratch, one epoch."""
    values: dict = {
        "data_root": os.path.join(root, "data"),
        "pipeline_root": os.path.join(root, "tfx_root"),
        "serving_dir": os.path.join(root, "serving"),
        "validation_percent": 20,
        "test_percent": 20,
        "min_accuracy": 0.0,
        "above_majority_class": False,  # noise images: a near-chance model must still push here
        "trainer": {"image_size": 32, "weights": "none", "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 8},
    }
    values.update(overrides)
    values["trainer"].update(trainer or {})
    return build_config(values)
