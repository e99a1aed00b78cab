"""The embedded default data: synthetic shape photos generated offline.

The target task tells circles, squares and triangles apart. A *source* domain of
other shapes (stars, crosses, rings, ...) is used to pretrain a backbone, which
the demo then transfers to the target task, as ImageNet weights would be
transferred with network access. Images vary in colour, size, position,
rotation, background gradient, clutter and noise, and are written in mixed
formats (JPEG, PNG, BMP, GIF) so ingestion sees what a real photo drop has.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TARGET_CLASSES = ("circle", "square", "triangle")
# The demo's model and how its source backbone is pretrained (``image-pipeline pretrain`` defaults).
IMAGE_SIZE = 96
BACKBONE = "MobileNetV2"
ALPHA = 0.35
SOURCE_PER_CLASS = 1000
SOURCE_SEED = 3
PRETRAIN_EPOCHS = 30
PRETRAIN_BATCH_SIZE = 64
PRETRAIN_SEED = 0
SOURCE_CLASSES = ("star", "cross", "ring", "hexagon", "diamond", "arrow")
FORMATS = (("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("GIF", ".gif"))

Point = tuple[float, float]


def _polygon(center: Point, radius: float, sides: int, rotation: float) -> list[Point]:
    cx, cy = center
    return [
        (
            cx + radius * math.cos(rotation + 2 * math.pi * i / sides),
            cy + radius * math.sin(rotation + 2 * math.pi * i / sides),
        )
        for i in range(sides)
    ]


def _star(center: Point, radius: float, rotation: float) -> list[Point]:
    cx, cy = center
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = rotation + math.pi * i / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _rotated(points: Sequence[Point], center: Point, rotation: float) -> list[Point]:
    cx, cy = center
    cos, sin = math.cos(rotation), math.sin(rotation)
    return [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in points]


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, center: Point, radius: float, rng: random.Random) -> None:
    color = tuple(rng.randint(0, 255) for _ in range(3))
    rotation = rng.uniform(0, 2 * math.pi)
    cx, cy = center
    width = max(2, int(radius / 4))
    shapes: dict[str, Callable[[], None]] = {
        "circle": lambda: draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color),
        "square": lambda: draw.polygon(_polygon(center, radius * 1.2, 4, rotation), fill=color),
        "triangle": lambda: draw.polygon(_polygon(center, radius * 1.2, 3, rotation), fill=color),
        "star": lambda: draw.polygon(_star(center, radius * 1.2, rotation), fill=color),
        "hexagon": lambda: draw.polygon(_polygon(center, radius, 6, rotation), fill=color),
        "diamond": lambda: draw.polygon(
            _rotated([(cx, cy - radius * 1.3), (cx + radius * 0.6, cy), (cx, cy + radius * 1.3), (cx - radius * 0.6, cy)], center, rotation),
            fill=color,
        ),
        "ring": lambda: draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=color, width=width),
        "cross": lambda: [
            draw.polygon(_rotated(bar, center, rotation), fill=color)
            for bar in (
                [(cx - radius, cy - width), (cx + radius, cy - width), (cx + radius, cy + width), (cx - radius, cy + width)],
                [(cx - width, cy - radius), (cx + width, cy - radius), (cx + width, cy + radius), (cx - width, cy + radius)],
            )
        ],
        "arrow": lambda: draw.polygon(
            _rotated(
                [(cx - radius, cy - width), (cx + radius * 0.3, cy - width), (cx + radius * 0.3, cy - radius * 0.6),
                 (cx + radius, cy), (cx + radius * 0.3, cy + radius * 0.6), (cx + radius * 0.3, cy + width),
                 (cx - radius, cy + width)],
                center, rotation,
            ),
            fill=color,
        ),
    }  # fmt: skip
    if name not in shapes:
        raise ValueError(f"Unknown shape. Expected one of {sorted(shapes)}. Received: {name!r}")
    shapes[name]()


def render(name: str, size: int, rng: random.Random) -> Image.Image:
    """One RGB image of shape ``name`` on a cluttered, noisy background."""
    top = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    background = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3))
    image = Image.fromarray(background.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 3)):  # clutter lines
        points = [(rng.uniform(0, size), rng.uniform(0, size)) for _ in range(2)]
        draw.line(points, fill=tuple(rng.randint(0, 255) for _ in range(3)), width=rng.randint(1, 3))
    radius = rng.uniform(0.18, 0.35) * size
    margin = radius * 1.2
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    _draw_shape(draw, name, center, radius, rng)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 12), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8), "RGB")


def generate(
    out_dir: str,
    classes: Sequence[str],
    per_class: int,
    size: int,
    seed: int,
    mixed_formats: bool = True,
) -> int:
    """Writes ``per_class`` images per class to ``out_dir/<class>/``.

    Returns:
      The number of images written.
    """
    rng = random.Random(seed)
    written = 0
    for label in classes:
        folder = os.path.join(out_dir, label)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_class):
            image_format, suffix = FORMATS[index % len(FORMATS)] if mixed_formats else FORMATS[0]
            image = render(label, size, rng)
            image.save(os.path.join(folder, f"{label}_{index:05d}{suffix}"), format=image_format)
            written += 1
        logging.debug("Generated %d %s images in %s", per_class, label, folder)
    return written
