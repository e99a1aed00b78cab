"""Span folders: a scheduled run reads the newest drop without code changes."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.example_gen import component as image_example_gen
from components.ingest import image_files, spans, splits
from pipeline.config.pipeline_config import build_config
from pipeline.local import runner as local_runner
from tests.helpers import encode, solid, write

PATTERN = "span-{SPAN:4}/*/*"


def _drop(root: str, span: int, per_class: int) -> None:
    for label, color in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        for index in range(per_class):
            tint = (color[0], color[1] + index, color[2])  # each image its own noise: no copies
            write(os.path.join(root, f"span-{span:04d}", label, f"{span}_{index}.png"), encode(solid(tint), "PNG"))


def _ingest(data_root: str, pipeline_root: str, span: int | None) -> tfx.types.Artifact:
    example_gen = image_example_gen.create_example_gen(
        data_root, PATTERN, splits.SplitPercents(), image_files.IngestLimits(), span
    )
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(os.path.join(pipeline_root, "m.sqlite"))
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="spans",
        pipeline_root=pipeline_root,
        components=[example_gen],
        metadata_connection_config=metadata,
        beam_pipeline_args=["--runner=FnApiRunner"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    from ml_metadata import metadata_store

    store = metadata_store.MetadataStore(metadata)
    return max(store.get_artifacts_by_type("Examples"), key=lambda artifact: artifact.id)


def _paths(uri: str) -> set[str]:
    files = tf.io.gfile.glob(os.path.join(uri, "Split-*", "*"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return {
        tf.train.Example.FromString(r.numpy()).features.feature["path"].bytes_list.value[0].decode() for r in records
    }


@pytest.mark.slow
def test_latest_span_is_read_and_a_span_can_be_pinned(tmp_path: object) -> None:
    data_root = os.path.join(str(tmp_path), "data")
    _drop(data_root, 1, per_class=3)
    _drop(data_root, 2, per_class=4)
    latest = _ingest(data_root, os.path.join(str(tmp_path), "root"), span=None)
    assert latest.custom_properties["span"].int_value == 2
    assert _paths(latest.uri) == {f"{c}/2_{i}.png" for c in ("red", "blue") for i in range(4)}
    assert latest.custom_properties["ingested"].int_value == 8

    pinned = _ingest(data_root, os.path.join(str(tmp_path), "root"), span=1)
    assert pinned.custom_properties["span"].int_value == 1
    assert _paths(pinned.uri) == {f"{c}/1_{i}.png" for c in ("red", "blue") for i in range(3)}


def test_preflight_checks_the_span_that_will_be_read(tmp_path: object) -> None:
    data_root = os.path.join(str(tmp_path), "data")
    _drop(data_root, 1, per_class=2)
    # The newest drop holds one class only: the run would train on it, so preflight refuses.
    write(os.path.join(data_root, "span-0002", "red", "0.png"), encode(solid((220, 20, 20)), "PNG"))
    os.makedirs(os.path.join(data_root, "span-0003", "red"))  # no files yet: not a span TFX would read
    config = build_config({"data_root": data_root, "input_pattern": PATTERN, "trainer": {"weights": "none"}})
    with pytest.raises(image_files.NoImagesError, match="span-0002"):
        local_runner.preflight(config)
    local_runner.preflight(build_config({**config.to_dict(), "span": 1}))


def test_span_needs_a_placeholder() -> None:
    with pytest.raises(ValueError, match="needs a {SPAN} placeholder"):
        build_config({"data_root": "/d", "span": 3})


def _gen_properties(data_root: str, span: int | None = None) -> dict:
    """The ExampleGen's exec properties as compiled (the pattern unresolved), as the executor gets them on Kubeflow."""
    component = image_example_gen.create_example_gen(
        data_root, PATTERN, splits.SplitPercents(), image_files.IngestLimits(), span
    )
    keys = ("input_config", "output_config", "custom_config", "range_config")
    properties = {
        key: image_example_gen._as_json(component.exec_properties[key])  # noqa: SLF001
        for key in keys
        if component.exec_properties.get(key) is not None
    }
    return {**properties, "input_base": data_root}


def test_the_executor_resolves_the_span_itself_without_the_driver(tmp_path: object) -> None:
    data_root = os.path.join(str(tmp_path), "data")
    _drop(data_root, 1, per_class=2)
    _drop(data_root, 2, per_class=3)
    resolved = spans.resolve_span(_gen_properties(data_root))
    assert resolved["span"] == 2 and '"span-0002/*/*"' in resolved["input_config"]
    assert resolved["input_fingerprint"].startswith("num_files:6,")
    pinned = spans.resolve_span(_gen_properties(data_root, span=1))
    assert pinned["span"] == 1 and "num_files:4" in pinned["input_fingerprint"]
    assert spans.resolve_span(resolved) == resolved  # the driver's work (locally) is kept
    _drop(data_root, 3, per_class=1)  # a new drop changes what is read, and the fingerprint
    newer = spans.resolve_span(_gen_properties(data_root))
    assert newer["span"] == 3 and newer["input_fingerprint"] != resolved["input_fingerprint"]


def test_the_kubeflow_snapshot_step_writes_span_pattern_and_fingerprint(tmp_path: object) -> None:
    import json

    from components.ingest_snapshot import executor as ingest_snapshot

    data_root = os.path.join(str(tmp_path), "data")
    _drop(data_root, 4, per_class=2)
    properties = _gen_properties(data_root)
    output_file = os.path.join(str(tmp_path), "task", "output_metadata.json")
    executor_input = {
        "inputs": {"parameterValues": {key: properties[key] for key in ("input_base", "input_config")}},
        "outputs": {"outputFile": output_file},
    }
    assert ingest_snapshot.main(["--executor_input", json.dumps(executor_input)]) == 0
    with open(output_file) as handle:
        values = json.load(handle)["parameterValues"]
    assert set(values) == set(ingest_snapshot.OUTPUT_PARAMETERS)
    assert values["span"] == 4 and "span-0004/*/*" in values["input_config"]
    assert values["input_fingerprint"] == spans.resolve_span(properties)["input_fingerprint"]
