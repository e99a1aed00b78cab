"""submit/schedule speak KFP's v2beta1 REST API (a loopback server records the calls)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from click.testing import CliRunner

from kubeflow import client
from pipeline.cli import main as cli

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "pipeline.yaml")


class FakeKfp:
    """Answers the v2beta1 endpoints kfp.Client uses, with the documented field names."""

    def __init__(self, experiments: dict[str, str]) -> None:
        self.experiments = dict(experiments)
        self.calls: list[tuple[str, str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                fake.calls.append(("GET", url.path, parse_qs(url.query)))
                if url.path == "/apis/v2beta1/experiments":
                    predicates = json.loads(parse_qs(url.query)["filter"][0])["predicates"]
                    wanted = {p["key"]: p.get("string_value", p.get("stringValue")) for p in predicates}
                    found = [
                        {"experiment_id": eid, "display_name": name}
                        for name, eid in fake.experiments.items()
                        if wanted.get("display_name") == name
                    ]
                    return self._answer(200, {"experiments": found, "total_size": len(found)} if found else {})
                self._answer(200, {})

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.calls.append(("POST", urlparse(self.path).path, body))
                if self.path.startswith("/apis/v2beta1/experiments"):
                    fake.experiments[body["display_name"]] = "exp-new"
                    return self._answer(200, {"experiment_id": "exp-new", "display_name": body["display_name"]})
                if self.path.startswith("/apis/v2beta1/runs"):
                    return self._answer(
                        200, {"run_id": "run-7", "display_name": body.get("display_name"), "state": "PENDING"}
                    )
                if self.path.startswith("/apis/v2beta1/recurringruns"):
                    return self._answer(200, {"recurring_run_id": "rr-3", "display_name": body.get("display_name")})
                self._answer(404, {"error": "not found"})

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self, path: str) -> list[dict]:
        return [body for method, p, body in self.calls if method == "POST" and p == path]


@pytest.fixture
def kfp_server() -> FakeKfp:
    fake = FakeKfp({"image-transfer": "exp-1"})
    yield fake
    fake.server.shutdown()


def _golden_spec() -> dict:
    with open(GOLDEN) as handle:
        return yaml.safe_load(handle)


def _enable_cache(task: dict) -> bool:
    return task.get("cachingOptions", {}).get("enableCache", False)


def _assert_same_pipeline(sent: dict, runtime_config: dict) -> None:
    golden = _golden_spec()
    assert sent["pipelineInfo"] == golden["pipelineInfo"]
    assert set(sent["root"]["dag"]["tasks"]) == set(golden["root"]["dag"]["tasks"])
    assert sent["deploymentSpec"] == golden["deploymentSpec"]
    # Each task's compiled caching option stands (kfp.Client's enable_caching=True would cache the Pusher).
    # kfp.Client sends the spec through its proto, so a false enableCache (the proto default) arrives as {}.
    caching = {name: _enable_cache(task) for name, task in sent["root"]["dag"]["tasks"].items()}
    assert caching == {name: _enable_cache(task) for name, task in golden["root"]["dag"]["tasks"].items()}
    assert caching["Pusher"] is False and caching["Trainer"] is True
    # The KFP API uses the run's pipeline root, not the spec's defaultPipelineRoot.
    assert runtime_config["pipeline_root"] == golden["defaultPipelineRoot"] == "gs://image-transfer-data/tfx_root"


def test_submit_creates_a_run_with_the_compiled_spec(kfp_server: FakeKfp) -> None:
    created = client.submit(GOLDEN, kfp_server.endpoint, "image-transfer", "nightly")
    assert created == client.Submitted("run", "run-7", "exp-1")
    (run,) = kfp_server.posts("/apis/v2beta1/runs")
    assert run["display_name"] == "nightly" and run["experiment_id"] == "exp-1"
    _assert_same_pipeline(run["pipeline_spec"], run["runtime_config"])


def test_schedule_creates_a_cron_recurring_run_and_the_experiment(kfp_server: FakeKfp) -> None:
    result = CliRunner().invoke(
        cli.main,
        ["schedule", "--package", GOLDEN, "--experiment", "retraining", "--cron", "0 0 3 * * *"],
        env={"KFP_ENDPOINT": kfp_server.endpoint},
    )
    assert result.exit_code == 0, result.output
    assert "Created recurring run rr-3 in experiment exp-new" in result.output
    assert kfp_server.posts("/apis/v2beta1/experiments")[0]["display_name"] == "retraining"
    (recurring,) = kfp_server.posts("/apis/v2beta1/recurringruns")
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert recurring["experiment_id"] == "exp-new" and recurring["max_concurrency"] in (1, "1")
    _assert_same_pipeline(recurring["pipeline_spec"], recurring["runtime_config"])


def test_clear_errors_before_any_call(kfp_server: FakeKfp, tmp_path: object) -> None:
    with pytest.raises(ValueError, match="6 fields"):
        client.schedule(GOLDEN, kfp_server.endpoint, "e", "j", "0 3 * * *")
    with pytest.raises(FileNotFoundError, match="Run `image-pipeline compile` first"):
        client.submit(f"{tmp_path}/missing.yaml", kfp_server.endpoint, "e", "r")
    with pytest.raises(ValueError, match="No KFP endpoint"):
        client.submit(GOLDEN, "", "e", "r")
    assert kfp_server.calls == []


def test_an_unreachable_api_is_one_line_naming_the_fix() -> None:
    import socket

    from click.testing import CliRunner

    from pipeline.cli import main as cli

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = CliRunner().invoke(cli.main, ["submit", "--package", GOLDEN, "--endpoint", endpoint])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: Cannot reach the Kubeflow Pipelines API at {endpoint}")
    assert "Connection refused" in lines[0] and "port-forward" in lines[0] and "object at" not in lines[0]
