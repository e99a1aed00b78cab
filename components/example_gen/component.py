"""The ImageFolder ExampleGen component: a folder with one sub-folder per class -> tf.Examples.

:func:`create_example_gen` is TFX's ``FileBasedExampleGen`` with the ImageFolder
executor (``components/example_gen/executor.py``: reading, checking and splitting
the files, the ingest report); :func:`run_executor` runs that executor outside a
pipeline. The split shares travel as the output splits' hash buckets, the ingest
limits and the near-duplicate distance as ``custom_config``, a pinned span as ``range_config``
(``components/ingest/spans.py`` resolves it).
"""

from __future__ import annotations

import tempfile
from typing import Any

from google.protobuf import struct_pb2
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import beam_args as beam_flags
from components.example_gen import executor
from components.ingest import image_files, splits
from components.modules import features


def ingest_custom_config(limits: image_files.IngestLimits) -> example_gen_pb2.CustomConfig:
    """Packs the ingest limits and the near-duplicate distance for the ExampleGen's ``custom_config``."""
    values = struct_pb2.Struct()
    values.update(
        {
            executor.MAX_PIXELS_KEY: limits.max_pixels,
            executor.MIN_SIDE_KEY: limits.min_side,
            executor.NEAR_DUPLICATE_DISTANCE_KEY: limits.near_duplicate_distance,
        }
    )
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(values)
    return custom


def span_range_config(span: int | None) -> range_config_pb2.RangeConfig | None:
    """Pins one span (``None``: TFX picks the latest span)."""
    if span is None:
        return None
    return range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
    )


def create_example_gen(
    data_root: str,
    input_pattern: str,
    percents: splits.SplitPercents,
    limits: image_files.IngestLimits,
    span: int | None = None,
) -> FileBasedExampleGen:
    """The ExampleGen component writing the ``train``, ``validation`` and ``test`` splits.

    The shares are recorded as the output splits' hash buckets; the executor
    assigns files per class (``components/ingest/splits.py``). With ``{SPAN}`` in
    ``input_pattern`` the driver reads the latest span, or ``span`` when given,
    and records it on the Examples artifact.
    """
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=share)
                for name, share in percents.as_dict().items()
            ],
            partition_feature_name=features.PATH_KEY,
        )
    )
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="images", pattern=input_pattern)]),
        output_config=output_config,
        custom_config=ingest_custom_config(limits),
        range_config=span_range_config(span),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor.ImageFolderExecutor),
    )


def run_executor(
    data_root: str,
    output_uri: str,
    percents: splits.SplitPercents | None = None,
    limits: image_files.IngestLimits | None = None,
    beam_args: list[str] | None = None,
) -> standard_artifacts.Examples:
    """Runs the executor outside a pipeline (no MLMD), e.g. for tests and benchmarks.

    Returns:
      The Examples artifact, its properties set as in a pipeline run.
    """
    component = create_example_gen(
        data_root, "*/*", percents or splits.SplitPercents(), limits or image_files.IngestLimits()
    )
    keys = (
        standard_component_specs.INPUT_CONFIG_KEY,
        standard_component_specs.OUTPUT_CONFIG_KEY,
        standard_component_specs.CUSTOM_CONFIG_KEY,
    )
    exec_properties = {key: _as_json(component.exec_properties[key]) for key in keys}
    exec_properties[standard_component_specs.INPUT_BASE_KEY] = data_root
    exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY] = example_gen_pb2.FORMAT_TF_EXAMPLE
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    context = executor.ImageFolderExecutor.Context(
        beam_pipeline_args=beam_flags.beam_pipeline_args(beam_args or ()), tmp_dir=tempfile.mkdtemp()
    )
    executor.ImageFolderExecutor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def _as_json(value: Any) -> str:
    return value if isinstance(value, str) else proto_utils.proto_to_json(value)
