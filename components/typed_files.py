"""Typed JSON files exchanged between steps: one reader for every pydantic record on disk.

Each record (the ingest summary, the training summary, the majority-class check, the
Tuner's trials, the tuned settings) has one writer in its own module; they all read
back through :func:`read` and are written by :func:`write`, on any filesystem TensorFlow's gfile knows (local, gs://, s3://).
"""

from __future__ import annotations

import os

import tensorflow as tf
from pydantic import BaseModel


def read[Record: BaseModel](path: str, record: type[Record]) -> Record | None:
    """The record at ``path``, or None if there is no such file.

    Raises:
      pydantic.ValidationError: If the file does not hold a valid ``record``.
    """
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return record.model_validate_json(handle.read())


def write(path: str, record: BaseModel) -> str:
    """Writes ``record`` as indented JSON to ``path`` (its folder made if missing); returns the path."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(record.model_dump_json(indent=2))
    return path
