"""The Kubeflow spec's first step (IngestSnapshot), run: the span the ExampleGen will read and a fingerprint of its files.

Reads the ExampleGen's parameters from the executorInput, resolves the span with
``components/ingest/spans.py`` and writes the output parameters
(``components/ingest_snapshot/component.py`` says which, and why this step exists)
into the ExecutorOutput. The launcher takes output parameters from the
ExecutorOutput's ``parameterValues`` (``backend/src/v2/component/launcher_v2.go``,
``collectOutputParameters``).

Run as ``python -m components.ingest_snapshot.executor --executor_input '{{$}}'``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import standard_component_specs

from components.ingest import spans

# Output parameter -> KFP parameter type.
OUTPUT_PARAMETERS = {
    standard_component_specs.INPUT_CONFIG_KEY: "STRING",
    example_gen_utils.SPAN_PROPERTY_NAME: "NUMBER_INTEGER",
    example_gen_utils.FINGERPRINT_PROPERTY_NAME: "STRING",
}
# The ExampleGen parameters it reads.
INPUT_PARAMETERS = (
    standard_component_specs.INPUT_BASE_KEY,
    standard_component_specs.INPUT_CONFIG_KEY,
    standard_component_specs.RANGE_CONFIG_KEY,
)


def outputs(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The output parameter values for the ExampleGen parameters ``exec_properties``.

    Raises:
      ValueError: If the pattern has a ``{VERSION}`` placeholder (not passed on by this step).
    """
    values = spans.snapshot(exec_properties)
    if values[example_gen_utils.VERSION_PROPERTY_NAME] is not None:
        raise ValueError("input_pattern with {VERSION} is not supported on Kubeflow; use {SPAN} alone.")
    return {key: values[key] for key in OUTPUT_PARAMETERS}


def main(argv: Sequence[str] | None = None) -> int:
    """Reads the executorInput, writes the ExecutorOutput with the output parameters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor_input", required=True, help="The executorInput JSON ({{$}}).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    executor_input = json_format.Parse(
        args.executor_input, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True
    )
    parameters = executor_input.inputs.parameter_values
    exec_properties = {key: json_format.MessageToDict(parameters[key]) for key in INPUT_PARAMETERS if key in parameters}
    output = pipeline_spec_pb2.ExecutorOutput()
    for key, value in outputs(exec_properties).items():
        output.parameter_values[key].CopyFrom(json_format.ParseDict(value, output.parameter_values[key]))
    path = executor_input.outputs.output_file
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json_format.MessageToJson(output, sort_keys=True))
    logging.info("Ingest snapshot: %s", json.dumps(json_format.MessageToDict(output)["parameterValues"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
