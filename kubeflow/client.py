"""Submitting the compiled pipeline to Kubeflow Pipelines: one run, or a recurring run.

A recurring run re-runs the same compiled spec on a cron schedule; with
``input_pattern: span-{SPAN:4}/*/*`` each run reads the newest span, so new data
drops are picked up without recompiling.

Both keep what the compiled spec says: its ``defaultPipelineRoot`` is passed as the
run's pipeline root (the KFP API ignores the spec's own field and would use the
cluster's default root), and each task's ``cachingOptions`` stands (the Pusher
is never cached), unless ``enable_caching`` overrides every task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator

import kfp
import urllib3
import yaml


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What the KFP API created."""

    kind: str
    id: str
    experiment_id: str


def _client(endpoint: str) -> kfp.Client:
    if not endpoint:
        raise ValueError("No KFP endpoint: pass --endpoint or set KFP_ENDPOINT (e.g. http://localhost:8080).")
    return kfp.Client(host=endpoint)


@contextlib.contextmanager
def _reaching(endpoint: str) -> Iterator[None]:
    """Turns a refused or unreachable connection into one ``ConnectionError`` line that names the fix."""
    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as error:
        reason = re.sub(r"<[^>]*>: ", "", str(getattr(error, "reason", "") or error)).splitlines()[0][:160]
        raise ConnectionError(
            f"Cannot reach the Kubeflow Pipelines API at {endpoint} ({type(error).__name__}: {reason}). "
            "Check --endpoint (or KFP_ENDPOINT) and that the API answers there, e.g. "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80` for http://localhost:8080."
        ) from None


def _experiment_id(client: kfp.Client, name: str) -> str:
    try:
        return client.get_experiment(experiment_name=name).experiment_id
    except ValueError:  # kfp raises ValueError when no experiment has that name
        return client.create_experiment(name).experiment_id


def _require_package(package: str) -> None:
    if not os.path.isfile(package):
        raise FileNotFoundError(f"Compiled pipeline not found: {package}. Run `image-pipeline compile` first.")


def pipeline_root(package: str) -> str | None:
    """The compiled spec's ``defaultPipelineRoot`` (``kubeflow/runner.py`` sets the config's)."""
    with open(package) as handle:
        document = next(yaml.safe_load_all(handle))  # JSON is YAML too; a --pvc file has a platform spec after it
    return document.get("pipelineSpec", document).get("defaultPipelineRoot")


def submit(
    package: str, endpoint: str, experiment: str, run_name: str, enable_caching: bool | None = None
) -> Submitted:
    """Starts one run of the compiled pipeline.

    Args:
      enable_caching: None keeps each task's compiled caching option; True or
        False applies to every task (True would cache the Pusher too).
    """
    _require_package(package)
    with _reaching(endpoint):
        client = _client(endpoint)
        experiment_id = _experiment_id(client, experiment)
        result = client.create_run_from_pipeline_package(
            package,
            arguments={},
            run_name=run_name,
            experiment_id=experiment_id,
            pipeline_root=pipeline_root(package),
            enable_caching=enable_caching,
        )
    return Submitted("run", result.run_id, experiment_id)


def schedule(
    package: str, endpoint: str, experiment: str, job_name: str, cron: str, max_concurrency: int = 1
) -> Submitted:
    """Creates a recurring run (KFP cron format: 6 fields, seconds first, e.g. ``0 0 3 * * *``)."""
    _require_package(package)
    if len(cron.split()) != 6:
        raise ValueError(f"KFP cron expressions have 6 fields (seconds first), e.g. '0 0 3 * * *'. Received: {cron!r}")
    with _reaching(endpoint):
        client = _client(endpoint)
        experiment_id = _experiment_id(client, experiment)
        recurring = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=True,
            pipeline_package_path=package,
            pipeline_root=pipeline_root(package),
        )
    return Submitted("recurring run", recurring.recurring_run_id, experiment_id)
