"""Pusher whose versions appear in the serving directory only when complete.

TFX's Pusher copies into ``<base>/<version>/`` in place, so TF Serving (which polls
the base directory) can load a half-copied model. This component keeps TFX's Pusher
(its spec plus the gate's evaluation, the served model, the Examples and the
served-test verdict as optional inputs) and swaps in the atomic executor
(``components/pusher/executor.py``): a hidden staging folder renamed to a free version
number, no push of an unchanged model, class-change and data-shift hold-backs, the
newest K versions kept, a TFLite file and the push info written with each version.
"""

from __future__ import annotations

from tfx.components import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import channel_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.types.channel import Channel
from tfx.utils import json_utils

from components.pusher.executor import (
    ALREADY_SERVED,
    EVALUATION_KEY,
    EXAMPLES_KEY,
    NEW_VERSION,
    NOT_PUSHED_REASON,
    PUSH_OUTCOME,
    SERVED_MODEL_KEY,
    SERVED_TEST_BLESSING_KEY,
    SERVED_TEST_EVALUATION_KEY,
    AtomicPusherExecutor,
    PusherSettings,
)

__all__ = [
    "ALREADY_SERVED",
    "EVALUATION_KEY",
    "EXAMPLES_KEY",
    "NEW_VERSION",
    "NOT_PUSHED_REASON",
    "PUSH_OUTCOME",
    "SERVED_MODEL_KEY",
    "SERVED_TEST_BLESSING_KEY",
    "SERVED_TEST_EVALUATION_KEY",
    "AtomicPusher",
    "AtomicPusherSpec",
    "PusherSettings",
    "create_pusher",
]


class AtomicPusherSpec(component_spec.ComponentSpec):
    """TFX's PusherSpec plus the gate's evaluation (optional), to record each version's test accuracy."""

    PARAMETERS = dict(standard_component_specs.PusherSpec.PARAMETERS)
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        SERVED_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model, optional=True),
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples, optional=True),
        SERVED_TEST_BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        SERVED_TEST_EVALUATION_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.ModelEvaluation, optional=True
        ),
    }
    OUTPUTS = dict(standard_component_specs.PusherSpec.OUTPUTS)


class AtomicPusher(Pusher):
    """TFX's Pusher with the atomic executor and the gate's evaluation as an extra input.

    It stays a ``tfx.components.Pusher`` (``pipeline/graph/uncached_nodes.py`` finds Pushers by type).
    """

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)

    def __init__(  # noqa: D107 (documented by create_pusher)
        self,
        model: Channel,
        model_blessing: Channel,
        evaluation: Channel | None,
        base_directory: str,
        settings: PusherSettings,
        served: Channel | None = None,
        examples: Channel | None = None,
        served_test: tuple[Channel, Channel] | None = None,
    ) -> None:
        spec = AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            evaluation=evaluation,
            served_model=served,
            examples=examples,
            served_test_blessing=served_test[0] if served_test else None,
            served_test_evaluation=served_test[1] if served_test else None,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory)
            ),
            custom_config=json_utils.dumps(settings.model_dump()),
            pushed_model=channel_utils.as_channel([standard_artifacts.PushedModel()]),
        )
        base_component.BaseComponent.__init__(self, spec=spec)


def create_pusher(
    model: Channel,
    model_blessing: Channel,
    base_directory: str,
    settings: PusherSettings,
    evaluation: Channel | None = None,
    served: Channel | None = None,
    examples: Channel | None = None,
    served_test: tuple[Channel, Channel] | None = None,
) -> Pusher:
    """The ``Pusher`` node: pushes blessed models atomically, recording ``evaluation``'s test accuracy.

    Args:
      model: The Trainer's model.
      model_blessing: The gate's blessing.
      base_directory: ``<serving_dir>/<model_name>``.
      settings: Versions kept, class changes, TFLite variant.
      evaluation: The gate's ModelEvaluation (its test accuracy goes into each version's push info).
      served: The served-model step's Model (the gate's baseline): class changes are judged
        against it, and its push-time accuracy tells a data shift (``data_shift``).
      examples: The ingested Examples, recorded with each version (its test split is re-judged later).
      served_test: The second Evaluator's blessing and evaluation on the served version's test split.
    """
    pusher = AtomicPusher(model, model_blessing, evaluation, base_directory, settings, served, examples, served_test)
    return pusher
