"""The TFX pipeline: ingest -> validate -> transform -> (tune ->) train -> gate -> push."""

from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2

# TFMA 0.52 no longer re-exports its config protos at the top level (tfma.EvalConfig,
# tfma.PerSliceMetricThreshold, ...): config_pb2 holds them, in 0.47 as in 0.52.
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx.components import (
    BulkInferrer,
    ExampleValidator,
    StatisticsGen,
    Trainer,
    Transform,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.importer import Importer
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import trainer_pb2, transform_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

import components.modules
import schemas
from components.beam_args import beam_pipeline_args  # one rule for every Beam step, standalone runs too
from components.evaluation import inference_result
from components.evaluation.eval_config import eval_config, gate_threshold, no_worse_threshold
from components.example_gen import component as image_example_gen
from components.gate_evaluator.component import GateEvaluator
from components.ingest import image_files, splits
from components.modules.settings import TrainerSettings, TransformSettings
from components.modules.tuning_settings import TunerConfig
from components.pusher import component as atomic_pusher
from components.served_model import component as served_model
from components.tuner.component import BEST_HYPERPARAMETERS_KEY, TrialsTuner
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.graph import node_ids

MODULES_DIR = os.path.dirname(components.modules.__file__)
TRANSFORM_MODULE_FILE = os.path.join(MODULES_DIR, "transform.py")
TRAINER_MODULE_FILE = os.path.join(MODULES_DIR, "trainer.py")
TUNER_MODULE_FILE = os.path.join(MODULES_DIR, "tuner.py")
DEFAULT_SCHEMA_FILE = os.path.join(os.path.dirname(schemas.__file__), "schema.pbtxt")


def _user_code(user_code: str, module_file: str, function: str) -> dict[str, str]:
    """``module_file`` (packaged as a wheel per run) or the installed function's path."""
    if user_code == "wheel":
        return {"module_file": module_file}
    module = os.path.splitext(os.path.relpath(module_file, os.path.dirname(MODULES_DIR)))[0]
    return {function: f"components.{module.replace(os.sep, '.')}.{function}"}


def _fit_inputs(transform: Transform, schema: Channel) -> dict[str, object]:
    """What the Trainer and the Tuner read: the transformed ``train`` (fit) and ``validation`` (choices), never
    ``test``."""
    return {
        "examples": transform.outputs["transformed_examples"],
        "transform_graph": transform.outputs["transform_graph"],
        "schema": schema,
        "train_args": trainer_pb2.TrainArgs(splits=[splits.TRAIN]),
        "eval_args": trainer_pb2.EvalArgs(splits=[splits.VALIDATION]),
    }


def _trainer(
    config: PipelineConfig,
    settings: TrainerSettings,
    transform: Transform,
    schema: Channel,
    base_model: Channel | None = None,
    hyperparameters: Channel | None = None,
) -> Trainer:
    """A Trainer reading ``train`` (fit) and ``validation`` (early stopping, stage choice), never ``test``.

    With ``hyperparameters`` (the Tuner's best), ``run_fn`` applies them onto ``settings``.
    """
    return Trainer(
        **_user_code(config.user_code, TRAINER_MODULE_FILE, "run_fn"),
        base_model=base_model,
        hyperparameters=hyperparameters,
        **_fit_inputs(transform, schema),
        custom_config=settings.model_dump(mode="json"),
    )


def _tuner(config: PipelineConfig, transform: Transform, schema: Channel, base_model: Channel | None) -> TrialsTuner:
    """The Tuner: trials of the Trainer's two stages on ``train``, each scored on ``validation``, never ``test``."""
    return TrialsTuner(
        **_user_code(config.user_code, TUNER_MODULE_FILE, "tuner_fn"),
        base_model=base_model,
        **_fit_inputs(transform, schema),
        custom_config=TunerConfig(trainer=config.trainer, tuning=config.tuning).model_dump(mode="json"),
    ).with_id(node_ids.TUNER)


def _evaluator(
    examples: Channel,
    model: Channel,
    baseline: Channel,
    config: tfma_config.EvalConfig,
    above_majority_class: bool = False,
) -> GateEvaluator:
    """TFMA on the ``test`` split only: data no Trainer read or selected on (the gate: with the majority rule)."""
    return GateEvaluator(
        examples=examples,
        model=model,
        baseline_model=baseline,
        eval_config=config,
        example_splits=[splits.TEST],
        above_majority_class=above_majority_class,
    ).with_id(node_ids.EVALUATOR)


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
) -> Pipeline:
    """Builds the pipeline; pure: no I/O, nothing runs.

    The ExampleGen writes ``train``, ``validation`` and ``test``; the Trainer reads
    the first two, the Evaluator gates on ``test`` alone, and the BulkInferrer
    predicts ``test`` with the candidate for the model card's mistakes. With
    ``compare_from_scratch``, a second Trainer trains the same model from random
    weights and a second Evaluator compares the two on ``test``: its blessing says
    whether transfer beat training from scratch (recorded in MLMD, not a flag).
    With ``tuning`` on, a Tuner runs trials of the Trainer's two stages on ``train``
    and ``validation`` first, and the Trainer trains with its best hyperparameters
    (the from-scratch comparison keeps the configured ones).

    Args:
      config: The validated pipeline configuration.
      metadata_connection_config: MLMD connection (SQLite locally; None on Kubeflow,
        which brings its own).

    Returns:
      The TFX pipeline.
    """
    example_gen = image_example_gen.create_example_gen(
        config.data_root,
        config.input_pattern,
        config.split_percents,
        image_files.IngestLimits(
            max_pixels=config.max_pixels,
            min_side=config.min_side,
            near_duplicate_distance=config.near_duplicate_distance,
        ),
        config.span,
    ).with_id(node_ids.EXAMPLE_GEN)
    examples = example_gen.outputs["examples"]
    schema_gen = ImportSchemaGen(schema_file=config.schema_file or DEFAULT_SCHEMA_FILE).with_id(node_ids.SCHEMA_GEN)
    schema = schema_gen.outputs["schema"]
    statistics_gen = StatisticsGen(examples=examples, schema=schema).with_id(node_ids.STATISTICS_GEN)
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema).with_id(
        node_ids.EXAMPLE_VALIDATOR
    )
    transform = Transform(
        examples=examples,
        schema=schema,
        custom_config=TransformSettings(image_size=config.trainer.image_size).model_dump(),
        # The label vocabulary sees every split, so every ingested class has its own
        # index; only train and validation are transformed (the Evaluator reads raw
        # test examples through the model's transform_features signature).
        splits_config=transform_pb2.SplitsConfig(
            analyze=list(splits.SPLIT_NAMES), transform=[splits.TRAIN, splits.VALIDATION]
        ),
        # Pre-transform statistics repeat StatisticsGen's; post-transform ones describe
        # JPEG bytes. Together they were a third of Transform's time (benchmarks/README.md).
        disable_statistics=not config.transform_statistics,
        # No step reads an analyzer cache (it pays off when analyzing many spans incrementally); writing it
        # took about 0.4 s of Transform's time on 2k images (benchmarks/README.md, "Fixed cost").
        disable_analyzer_cache=True,
        **_user_code(config.user_code, TRANSFORM_MODULE_FILE, "preprocessing_fn"),
    ).with_id(node_ids.TRANSFORM)
    base_model = None
    if config.base_model:
        base_model = Importer(source_uri=config.base_model, artifact_type=standard_artifacts.Model).with_id(
            node_ids.BASE_MODEL_IMPORTER
        )
    base_model_channel = base_model.outputs["result"] if base_model else None
    tuner = _tuner(config, transform, schema, base_model_channel) if config.tuning.enabled else None
    trainer = _trainer(
        config,
        config.trainer,
        transform,
        schema,
        base_model_channel,
        tuner.outputs[BEST_HYPERPARAMETERS_KEY] if tuner else None,
    ).with_id(node_ids.TRAINER)
    # The baseline is what clients get now: read from the serving directory on every run.
    served = served_model.create_served_model(config.model_push_dir).with_id(node_ids.SERVED_MODEL)
    evaluator = _evaluator(
        examples,
        trainer.outputs["model"],
        served.outputs[served_model.MODEL_KEY],
        eval_config(gate_threshold(config.min_accuracy, config.max_accuracy_drop)),
        above_majority_class=config.above_majority_class,
    )
    # The candidate against the served model on the test split the served version was gated on.
    served_test = _evaluator(
        served.outputs[served_model.TEST_EXAMPLES_KEY],
        trainer.outputs["model"],
        served.outputs[served_model.MODEL_KEY],
        eval_config(no_worse_threshold(config.max_accuracy_drop)),
    ).with_id(node_ids.SERVED_TEST_EVALUATOR)
    # The candidate's predictions on test, for the model card's mistakes; without the blessing,
    # so a card also shows what a model the gate refused got wrong.
    test_inferrer = BulkInferrer(
        examples=examples,
        model=trainer.outputs["model"],
        data_spec=inference_result.data_spec(),
        model_spec=inference_result.model_spec(),
    ).with_id(node_ids.BULK_INFERRER)
    pusher = atomic_pusher.create_pusher(
        trainer.outputs["model"],
        evaluator.outputs["blessing"],
        config.model_push_dir,
        atomic_pusher.PusherSettings(
            keep_versions=config.keep_versions,
            allow_class_changes=config.allow_class_changes,
            allow_data_shift=config.allow_data_shift,
            tflite=config.tflite,
        ),
        evaluation=evaluator.outputs["evaluation"],
        served=served.outputs[served_model.MODEL_KEY],
        examples=examples,
        served_test=(served_test.outputs["blessing"], served_test.outputs["evaluation"]),
    ).with_id(node_ids.PUSHER)
    comparison = []
    if config.compare_from_scratch:
        scratch = _trainer(config, config.trainer.from_scratch_comparison(), transform, schema).with_id(
            node_ids.FROM_SCRATCH_TRAINER
        )
        # Both models' test metrics side by side; no threshold, so no blessing.
        versus = _evaluator(examples, trainer.outputs["model"], scratch.outputs["model"], eval_config(None)).with_id(
            node_ids.TRANSFER_VS_SCRATCH_EVALUATOR
        )
        comparison = [scratch, versus]
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            example_gen,
            schema_gen,
            statistics_gen,
            example_validator,
            transform,
            *([base_model] if base_model else []),
            *([tuner] if tuner else []),
            trainer,
            served,
            evaluator,
            served_test,
            test_inferrer,
            pusher,
            *comparison,
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args(config.beam_args),
    )
