"""Which span the ExampleGen reads, and a fingerprint of its files.

Locally TFX's FileBasedExampleGen driver resolves ``{SPAN}`` before the executor
runs; on Kubeflow the driver never runs (see :func:`resolve_span`), so the
executor (``components/example_gen/executor.py``) and the Kubeflow spec's first
step (``components/ingest_snapshot/executor.py``) resolve it here, with TFX's own
span search.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
from typing import Any

import tensorflow as tf
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

# The placeholders of a pattern the driver has not resolved yet.
_PLACEHOLDERS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}")


def resolve_span(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The exec properties with the span resolved, as TFX's ExampleGen driver would resolve it.

    Locally TFX runs the FileBasedExampleGen driver before the executor: the
    pattern arrives with ``{SPAN}`` filled in and ``span``, ``version`` and
    ``input_fingerprint`` set, and they are returned unchanged. On Kubeflow the
    driver is a ``lifecycle.preCacheCheck`` hook that the open-source backend never
    runs, so the executor may get the raw pattern: it then picks the newest span (or
    the pinned ``range_config`` span) and fingerprints its files itself, with TFX's
    own ``FileBasedInputProcessor`` (the driver's code, tfx/components/example_gen/
    driver.py), so every backend reads the same files and records the same span.
    """
    resolved = (
        exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) is not None
        and exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
        and not _PLACEHOLDERS.search(exec_properties[standard_component_specs.INPUT_CONFIG_KEY])
    )
    if resolved:
        return {example_gen_utils.VERSION_PROPERTY_NAME: None, **exec_properties}
    return {**exec_properties, **snapshot(exec_properties)}


class _SpanProcessor(input_processor.FileBasedInputProcessor):
    """TFX's span and version search, without its fingerprint (its ``stat`` of every file fails on a dangling link)."""

    def resolve_span_and_version(self) -> tuple[int, int | None]:
        """The newest span (or the pinned one) and version that every split pattern matches."""
        found = set()
        for split in self._splits:
            span, version = example_gen_utils._get_target_span_version(  # noqa: SLF001 (TFX's own search)
                self._input_base_uri, copy.deepcopy(split), range_config=self._range_config
            )
            found.add((span or 0, version))
        if len(found) != 1:
            raise ValueError(f"The splits' patterns match different spans or versions: {sorted(found)}")
        return found.pop()


def snapshot(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The span, version, input fingerprint and span-resolved ``input_config`` of the files to read.

    The fingerprint covers every file of the span (``input_fingerprint``): a new
    or changed file changes it. ``kubeflow/runner.py`` runs this as
    the Kubeflow spec's first step, so that the ExampleGen's cache key holds it.
    """
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY], range_config)
    processor = _SpanProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, range_config
    )
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    fingerprint = input_fingerprint(exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config)
    logging.info("Ingest: span %s, pattern %s, %s", span, input_config.splits[0].pattern, fingerprint)
    return {
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        example_gen_utils.SPAN_PROPERTY_NAME: span,
        example_gen_utils.VERSION_PROPERTY_NAME: version,
        example_gen_utils.FINGERPRINT_PROPERTY_NAME: fingerprint,
    }


def input_fingerprint(input_base: str, input_config: example_gen_pb2.Input) -> str:
    """A digest of the names, sizes and modification times of the files the (resolved) patterns match.

    Like TFX's ``calculate_splits_fingerprint_span_and_version``, but a file that
    cannot be stat'ed (a dangling link, removed while listed) is named in the
    digest instead of failing the step: the ExampleGen reports it as rejected.
    """
    digest, files, total = hashlib.sha256(), 0, 0
    for split in input_config.splits:
        for path in sorted(tf.io.gfile.glob(os.path.join(input_base, split.pattern))):
            try:
                stat = tf.io.gfile.stat(path)
                size, mtime = stat.length, stat.mtime_nsec
            except tf.errors.NotFoundError:
                size, mtime = -1, -1
            files, total = files + 1, total + max(size, 0)
            digest.update(f"{split.name}\0{path}\0{size}\0{mtime}\n".encode())
    return f"num_files:{files},total_bytes:{total},sha256:{digest.hexdigest()}"
