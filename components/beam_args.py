"""Beam flags shared by every Beam step: the pipeline's components and the standalone runs.

One rule (:func:`beam_pipeline_args`): the in-process runner unless the user names
one, and nothing staged for workers that run in this process or its subprocesses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# Beam's DirectRunner first tries Prism, which downloads a binary at run time (fails
# offline, and differs from what tests cover): the pipeline and standalone runs use
# the in-process FnApiRunner unless the user names a runner.
DEFAULT_BEAM_RUNNER = "--runner=FnApiRunner"
# Runners whose workers run in this process or its subprocesses, on this installation.
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
# Beam flags with which TFX ships its own code to Beam workers; without any of them, every Beam
# component builds an sdist of the installed TFX first (tfx.utils.dependency_utils).
_DEPENDENCY_FLAGS = (
    "--extra_package",
    "--setup_file",
    "--requirements_file",
    "--worker_harness_container_image",
    "--sdk_container_image",
)
# Local workers (the default runner, also in the Kubeflow container) import the installed
# packages and need nothing staged: an empty requirements file says so and skips that sdist,
# which cost 1.2-3.0 s per Beam component (7 s of a demo run, measured 2026-11-24).
NOTHING_TO_STAGE = f"--requirements_file={os.devnull}"


def beam_pipeline_args(beam_args: Sequence[str]) -> list[str]:
    """The user's Beam flags, with the in-process default runner unless one is given.

    With a local runner (the default, or one the user names such as DirectRunner) nothing
    is staged for workers (:data:`NOTHING_TO_STAGE`); with a remote runner (Dataflow,
    Flink), TFX's own staging applies. A dependency flag of the user's own always stands.

    Args:
      beam_args: The user's Beam flags (``--runner=...``, ``--direct_num_workers=...``).

    Returns:
      The flags to pass to TFX's ``beam_pipeline_args``.
    """
    runners = [arg.split("=", 1)[-1] for arg in beam_args if arg.startswith("--runner")]
    args = list(beam_args) if runners else [DEFAULT_BEAM_RUNNER, *beam_args]
    local = all(runner in LOCAL_RUNNERS for runner in runners)
    if local and not any(arg.startswith(_DEPENDENCY_FLAGS) for arg in beam_args):
        args.append(NOTHING_TO_STAGE)
    return args
