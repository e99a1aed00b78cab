"""Finding the newest pushed version and printing predictions."""

from __future__ import annotations

import os

import pytest

from pipeline import predict
from tests.helpers import write


def test_newest_complete_numeric_version_is_used(tmp_path: object) -> None:
    base = str(tmp_path)
    for version in ("9", "100"):
        write(os.path.join(base, version, "saved_model.pb"), b"x")
    os.makedirs(os.path.join(base, "200"))  # incomplete: no saved_model.pb
    write(os.path.join(base, "tmp-300", "saved_model.pb"), b"x")  # not a version
    assert predict.resolve_model_dir(base) == os.path.join(base, "100")
    assert predict.resolve_model_dir(os.path.join(base, "9")) == os.path.join(base, "9")
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        predict.resolve_model_dir(os.path.join(base, "200"))


def test_table_shows_top_k_classes() -> None:
    rows = [predict.Prediction("a/cat.jpg", ["cat", "dog", "fox"], [0.8, 0.15, 0.05])]
    table = predict.format_table(rows, top_k=2)
    assert table.splitlines()[1] == "a/cat.jpg  cat 0.80, dog 0.15"
