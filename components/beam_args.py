"""Beam flags shared by every Beam step: the pipeline's components and the standalone runs.

One rule (:func:`beam_pipeline_args`): the in-process runner unless the user names
one, nothing staged for workers in this process or its subprocesses, and a runner whose
workers would start without this project (Beam's default container) refused, with the
flag that fixes it.

Why the second half: TFX stages only itself for remote workers (an sdist of the installed
TFX, ``tfx/utils/dependency_utils.py``, ``make_beam_dependency_flags``), never the package
the pipeline's DoFns live in (``components/``: the ExampleGen reads and checks the images on
the workers), so a worker started from Beam's default container fails with "No module named
'components'" (the failure tensorflow/tfx#4764 reports for the user module). The portable
run (``tests/pipeline/local/test_portable_runner.py``: Beam's job service and a worker pool
from this installation) proves the steps on workers that bring the code themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.runners.portability.flink_runner import MAGIC_HOST_NAMES

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
# Portable environments (apache_beam/options/pipeline_options.py, PortableOptions) whose workers
# the operator starts: in the launching process (LOOPBACK), a worker pool
# (EXTERNAL: ``python -m apache_beam.runners.worker.worker_pool_main`` from this image) or a
# command on each worker machine (PROCESS). They run what is installed there.
_OWN_ENVIRONMENTS = ("LOOPBACK", "EXTERNAL", "PROCESS")
DATAFLOW_RUNNER = "DataflowRunner"


class WorkerCodeError(ValueError):
    """The Beam workers would start without this project's code; the message names the flag to add."""


def runner_name(beam_args: Sequence[str]) -> str:
    """The short name of the runner the flags name (``FnApiRunner`` when none is named).

    ``--runner=apache_beam.runners.DataflowRunner`` and ``--runner=DataflowRunner`` are both ``DataflowRunner``.
    """
    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner
    return str(runner).rsplit(".", 1)[-1] if runner else DEFAULT_BEAM_RUNNER.split("=", 1)[1]


def workers_run_this_project(beam_args: Sequence[str]) -> bool:
    """Whether the Beam workers these flags start run this project without anything staged.

    True for the local runners, for a portable environment the operator starts
    (LOOPBACK, EXTERNAL, PROCESS: the same installation or image), and for a container
    image the flags name (``--sdk_container_image``, or DOCKER with ``--environment_config``);
    False for Dataflow's or a portable runner's default container (Beam's, without this project).
    """
    runner = runner_name(beam_args)
    if runner in LOCAL_RUNNERS:
        return True
    options = PipelineOptions(list(beam_args))
    worker = options.view_as(WorkerOptions)
    if worker.sdk_container_image or worker.worker_harness_container_image:
        return True
    if runner == DATAFLOW_RUNNER:
        return False
    portable = options.view_as(PortableOptions)
    environment = (portable.environment_type or _default_environment(runner, options)).upper()
    if environment in _OWN_ENVIRONMENTS:
        return True
    return environment == "DOCKER" and bool(portable.environment_config)


def _default_environment(runner: str, options: PipelineOptions) -> str:
    """The environment a portable runner picks when none is named.

    LOOPBACK for Prism and for Flink started on this machine (``default_environment`` in
    apache_beam/runners/portability/prism_runner.py and flink_runner.py), DOCKER (Beam's
    default SDK image) otherwise.
    """
    if runner == "PrismRunner":
        return "LOOPBACK"
    if runner == "FlinkRunner" and options.view_as(FlinkRunnerOptions).flink_master in MAGIC_HOST_NAMES:
        return "LOOPBACK"
    return "DOCKER"


def beam_pipeline_args(beam_args: Sequence[str]) -> list[str]:
    """The user's Beam flags, with the in-process default runner unless one is given.

    With a local runner (the default, or one the user names such as DirectRunner) nothing
    is staged for workers (:data:`NOTHING_TO_STAGE`); with workers that run this project
    elsewhere (:func:`workers_run_this_project`: a portable environment of the operator's,
    an image of the pipeline) TFX's own staging applies. A dependency flag of the user's own
    always stands as given.

    Args:
      beam_args: The user's Beam flags (``--runner=...``, ``--direct_num_workers=...``).

    Returns:
      The flags to pass to TFX's ``beam_pipeline_args``.

    Raises:
      WorkerCodeError: If the workers would start from a container without this project
        and no flag says how they get it.
    """
    named = any(arg.startswith("--runner") for arg in beam_args)
    args = list(beam_args) if named else [DEFAULT_BEAM_RUNNER, *beam_args]
    if any(arg.startswith(_DEPENDENCY_FLAGS) for arg in beam_args):
        return args
    if runner_name(beam_args) in LOCAL_RUNNERS:
        return [*args, NOTHING_TO_STAGE]
    if workers_run_this_project(beam_args):
        # TFX stages its sdist as it always does; the workers run the project already. Not
        # NOTHING_TO_STAGE: a runner that stages refuses /dev/null ("The file /dev/null cannot be
        # found", apache_beam/runners/portability/stager.py, create_job_resources: os.path.isfile),
        # and any real file would be this machine's path, baked into a compiled Kubeflow spec.
        return args
    raise WorkerCodeError(
        f"The {runner_name(beam_args)} workers would start from Beam's default container, without this project "
        "(components/, where the ExampleGen's DoFns live) or its pinned TFX stack, and fail with \"No module named "
        "'components'\". Run them from the pipeline image (kubeflow/Dockerfile): --beam-arg=--sdk_container_image="
        "REGISTRY/tfx-image-transfer:TAG, or a worker pool of it with --beam-arg=--environment_type=EXTERNAL "
        "--beam-arg=--environment_config=HOST:PORT; or stage the project yourself with --beam-arg=--setup_file="
        f"setup.py (README, Scaling). Received: beam_args={list(beam_args)}"
    )
