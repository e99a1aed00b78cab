"""create_pipeline: the components, their order and the settings that reach them."""

from __future__ import annotations

import pytest

from pipeline import pipeline
from pipeline.config import build_config


def _components(**values: object) -> dict:
    config = build_config({"data_root": "/data/images", "weights": "none", **values})
    built = pipeline.create_pipeline(config)
    return {component.id: component for component in built.components}


def test_components_and_their_inputs() -> None:
    components = _components()
    upstream = {name: {node.id for node in component.upstream_nodes} for name, component in components.items()}
    assert upstream == {
        "FileBasedExampleGen": set(),
        "ImportSchemaGen": set(),
        "latest_blessed_model_resolver": set(),
        "StatisticsGen": {"FileBasedExampleGen", "ImportSchemaGen"},
        "ExampleValidator": {"StatisticsGen", "ImportSchemaGen"},
        "Transform": {"FileBasedExampleGen", "ImportSchemaGen"},
        "Trainer": {"Transform", "ImportSchemaGen"},
        "Evaluator": {"FileBasedExampleGen", "Trainer", "latest_blessed_model_resolver"},
        "Pusher": {"Trainer", "Evaluator"},
    }


@pytest.mark.parametrize("enabled", [False, True])
def test_transform_statistics_follow_the_config(enabled: bool) -> None:
    transform = _components(transform_statistics=enabled)["Transform"]
    assert transform.exec_properties["disable_statistics"] == int(not enabled)
    assert ("post_transform_stats" in transform.outputs) == enabled
