"""Shared fixtures."""

from __future__ import annotations

import os

import pytest

from pipeline import demo_data


@pytest.fixture
def shapes_folder(tmp_path: object) -> str:
    """Two classes of synthetic shapes, 8 images each, in mixed formats."""
    root = os.path.join(str(tmp_path), "shapes")
    demo_data.generate(root, ("circle", "triangle"), per_class=8, size=40, seed=3)
    return root
