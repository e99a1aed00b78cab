"""create_pipeline: the components, their order and the settings that reach them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from components.modules.settings import TrainerSettings
from components.modules.tuning_settings import TunerConfig
from pipeline.config.pipeline_config import build_config
from pipeline.graph import node_ids, pipeline


def _components(**values: object) -> dict:
    config = build_config({"data_root": "/data/images", "trainer": {"weights": "none"}, **values})
    built = pipeline.create_pipeline(config)
    return {component.id: component for component in built.components}


def _upstream(components: dict) -> dict[str, set[str]]:
    return {name: {node.id for node in component.upstream_nodes} for name, component in components.items()}


def test_components_and_their_inputs() -> None:
    assert _upstream(_components()) == {
        "FileBasedExampleGen": set(),
        "ImportSchemaGen": set(),
        "served_model": set(),
        "StatisticsGen": {"FileBasedExampleGen", "ImportSchemaGen"},
        "ExampleValidator": {"StatisticsGen", "ImportSchemaGen"},
        "Transform": {"FileBasedExampleGen", "ImportSchemaGen"},
        "Trainer": {"Transform", "ImportSchemaGen"},
        "Evaluator": {"FileBasedExampleGen", "Trainer", "served_model"},
        "served_test_evaluator": {"Trainer", "served_model"},  # on the served version's own test split
        "BulkInferrer": {"FileBasedExampleGen", "Trainer"},  # the card's mistakes, blessed or not
        "Pusher": {"FileBasedExampleGen", "Trainer", "Evaluator", "served_model", "served_test_evaluator"},
    }


def test_trainers_read_train_and_validation_and_evaluators_only_test() -> None:
    components = _components(compare_from_scratch=True, validation_percent=10, test_percent=25)
    output_config = json.loads(components["FileBasedExampleGen"].exec_properties["output_config"])
    assert {split["name"]: split["hash_buckets"] for split in output_config["split_config"]["splits"]} == {
        "train": 65,
        "validation": 10,
        "test": 25,
    }
    for trainer in ("Trainer", node_ids.FROM_SCRATCH_TRAINER):
        properties = components[trainer].exec_properties
        assert json.loads(properties["train_args"])["splits"] == ["train"]
        assert json.loads(properties["eval_args"])["splits"] == ["validation"]
    for evaluator in ("Evaluator", node_ids.TRANSFER_VS_SCRATCH_EVALUATOR):
        assert json.loads(components[evaluator].exec_properties["example_splits"]) == ["test"]
    splits_config = json.loads(components["Transform"].exec_properties["splits_config"])
    assert splits_config == {"analyze": ["train", "validation", "test"], "transform": ["train", "validation"]}


def test_from_scratch_comparison_is_its_own_trainer_and_evaluator() -> None:
    components = _components(compare_from_scratch=True, trainer={"weights": "imagenet", "stage2_epochs": 4})
    upstream = _upstream(components)
    assert upstream[node_ids.FROM_SCRATCH_TRAINER] == {"Transform", "ImportSchemaGen"}
    assert upstream[node_ids.TRANSFER_VS_SCRATCH_EVALUATOR] == {
        "FileBasedExampleGen",
        "Trainer",
        node_ids.FROM_SCRATCH_TRAINER,
    }
    scratch = json.loads(components[node_ids.FROM_SCRATCH_TRAINER].exec_properties["custom_config"])
    transfer = json.loads(components["Trainer"].exec_properties["custom_config"])
    assert (scratch["weights"], scratch["stage1_epochs"], scratch["stage2_epochs"]) == ("none", 9, 0)
    assert transfer["weights"] == "imagenet"
    # The comparison does not gate the push.
    assert upstream["Pusher"] == {
        "FileBasedExampleGen",
        "Trainer",
        "Evaluator",
        "served_model",
        "served_test_evaluator",
    }
    assert node_ids.FROM_SCRATCH_TRAINER not in _components()


def test_without_tuning_there_is_no_tuner_and_the_trainer_takes_no_hyperparameters() -> None:
    components = _components()
    assert node_ids.TUNER not in components
    assert "hyperparameters" not in components["Trainer"].inputs


def test_tuning_adds_a_tuner_on_train_and_validation_whose_best_values_feed_the_trainer() -> None:
    components = _components(
        compare_from_scratch=True,
        trainer={"weights": "imagenet"},
        tuning={"trials": 4, "algorithm": "random", "search_space": {"dropout": "0.1..0.3"}},
    )
    upstream = _upstream(components)
    tuner, trainer = components[node_ids.TUNER], components["Trainer"]
    assert upstream[node_ids.TUNER] == {"Transform", "ImportSchemaGen"}
    assert upstream["Trainer"] == {"Transform", "ImportSchemaGen", node_ids.TUNER}
    assert trainer.inputs["hyperparameters"] is tuner.outputs["best_hyperparameters"]
    assert "hyperparameters" not in components[node_ids.FROM_SCRATCH_TRAINER].inputs  # the comparison is untuned
    assert json.loads(tuner.exec_properties["train_args"])["splits"] == ["train"]
    assert json.loads(tuner.exec_properties["eval_args"])["splits"] == ["validation"]
    config = TunerConfig.model_validate(json.loads(tuner.exec_properties["custom_config"]))
    assert (config.tuning.trials, config.tuning.algorithm, str(config.tuning.search_space.dropout)) == (
        4,
        "random",
        "0.1..0.3",
    )
    assert config.trainer == TrainerSettings.model_validate(json.loads(trainer.exec_properties["custom_config"]))
    assert tuner.exec_properties["module_file"].endswith(os.path.join("components", "modules", "tuner.py"))
    installed = _components(user_code="installed", tuning={"trials": 2})[node_ids.TUNER]
    assert installed.exec_properties["tuner_fn"] == "components.modules.tuner.tuner_fn"


def test_the_tuner_takes_the_base_model_the_trainer_transfers() -> None:
    components = _components(trainer={"weights": "base_model"}, base_model="/runs/Trainer/model/3", tuning={})
    assert node_ids.BASE_MODEL_IMPORTER in _upstream(components)[node_ids.TUNER]


def test_bulk_inferrer_predicts_test_with_the_examples_signature_blessed_or_not() -> None:
    inferrer = _components()[node_ids.BULK_INFERRER]
    assert json.loads(inferrer.exec_properties["data_spec"]) == {"example_splits": ["test"]}
    assert json.loads(inferrer.exec_properties["model_spec"]) == {"model_signature_name": ["serving_examples"]}
    assert "model_blessing" not in inferrer.inputs
    assert "inference_result" in inferrer.outputs and "output_examples" not in inferrer.outputs


@pytest.mark.parametrize("enabled", [False, True])
def test_transform_statistics_follow_the_config(enabled: bool) -> None:
    transform = _components(transform_statistics=enabled)["Transform"]
    assert transform.exec_properties["disable_statistics"] == int(not enabled)
    assert ("post_transform_stats" in transform.outputs) == enabled


_START_A_RUN = """
import sys
from pipeline.cli import main as cli
from pipeline.demo import demo
from pipeline.local import runner as local_runner
from pipeline.graph.pipeline import create_pipeline
from tfx.orchestration import metadata
create_pipeline(demo.demo_config(sys.argv[1], demo.SHIPPED_WEIGHTS), metadata.sqlite_metadata_connection_config(sys.argv[2]))
print(sorted(name for name in sys.modules if name == "tfx.v1" or name.startswith("google.cloud.aiplatform")))
"""


def test_the_cli_and_the_pipeline_graph_do_not_import_tfx_v1_and_its_cloud_extensions(tmp_path: object) -> None:
    # `tfx.v1` imports its Google Cloud extensions (google-cloud-aiplatform): 2.7 s of every
    # run's start-up, and most of a fully cached rerun (benchmarks/README.md).
    completed = subprocess.run(
        [sys.executable, "-c", _START_A_RUN, str(tmp_path / "data"), str(tmp_path / "metadata.sqlite")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip().splitlines()[-1] == "[]"
