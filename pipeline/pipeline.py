"""The TFX pipeline: ingest -> validate -> transform -> train -> gate -> push."""

from __future__ import annotations

import os

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import components.modules
import schemas
from components import atomic_pusher, image_example_gen, image_files
from components.modules import features
from pipeline.config import PipelineConfig

MODULES_DIR = os.path.dirname(components.modules.__file__)
TRANSFORM_MODULE_FILE = os.path.join(MODULES_DIR, "transform.py")
TRAINER_MODULE_FILE = os.path.join(MODULES_DIR, "trainer.py")
DEFAULT_SCHEMA_FILE = os.path.join(os.path.dirname(schemas.__file__), "schema.pbtxt")
ACCURACY_METRIC = "sparse_categorical_accuracy"
# TFMA needs a strictly negative change bound to accept an equal accuracy.
_MIN_CHANGE_TOLERANCE = 1e-10


def beam_pipeline_args(beam_args: tuple[str, ...]) -> list[str]:
    """The user's Beam flags, with the local default runner unless one is given."""
    if any(arg.startswith("--runner") for arg in beam_args):
        return list(beam_args)
    return [image_example_gen.DEFAULT_BEAM_RUNNER, *beam_args]


def _user_code(user_code: str, module_file: str, function: str) -> dict[str, str]:
    """``module_file`` (packaged as a wheel per run) or the installed function's path."""
    if user_code == "wheel":
        return {"module_file": module_file}
    module = os.path.splitext(os.path.relpath(module_file, os.path.dirname(MODULES_DIR)))[0]
    return {function: f"components.{module.replace(os.sep, '.')}.{function}"}


def eval_config(min_accuracy: float, max_accuracy_drop: float) -> tfma.EvalConfig:
    """Accuracy gate on the overall slice; per-class slices are reported only.

    Args:
      min_accuracy: Absolute lower bound of eval accuracy.
      max_accuracy_drop: How much lower than the latest blessed model the
        candidate may be (0.0: no worse).
    """
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max(max_accuracy_drop, _MIN_CHANGE_TOLERANCE)},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_examples",
                label_key=features.transformed_name(features.LABEL_KEY),
                prediction_key="probabilities",
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        config=f'{{"name": "{ACCURACY_METRIC}"}}',
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
                        ],
                    ),
                ]
            )
        ],
    )


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline; pure: no I/O, nothing runs.

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
        config.eval_percent,
        image_files.IngestLimits(max_pixels=config.max_pixels, min_side=config.min_side),
        config.span,
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_file or DEFAULT_SCHEMA_FILE)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        custom_config={"image_size": config.image_size},
        # Pre-transform statistics repeat StatisticsGen's; post-transform ones describe
        # JPEG bytes. Together they were a third of Transform's time (benchmarks/README.md).
        disable_statistics=not config.transform_statistics,
        **_user_code(config.user_code, TRANSFORM_MODULE_FILE, "preprocessing_fn"),
    )
    base_model = None
    if config.base_model:
        base_model = tfx.dsl.Importer(
            source_uri=config.base_model, artifact_type=tfx.types.standard_artifacts.Model
        ).with_id("base_model_importer")
    trainer = tfx.components.Trainer(
        **_user_code(config.user_code, TRAINER_MODULE_FILE, "run_fn"),
        base_model=base_model.outputs["result"] if base_model else None,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.trainer_config(),
    )
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config.min_accuracy, config.max_accuracy_drop),
    )
    pusher = atomic_pusher.create_pusher(
        trainer.outputs["model"], evaluator.outputs["blessing"], config.model_push_dir, config.keep_versions
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            example_gen,
            schema_gen,
            statistics_gen,
            example_validator,
            transform,
            *([base_model] if base_model else []),
            trainer,
            model_resolver,
            evaluator,
            pusher,
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args(config.beam_args),
    )
