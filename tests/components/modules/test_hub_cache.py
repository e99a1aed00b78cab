"""hub: handles: tensorflow_hub's cache layout, offline cache hits, downloads over loopback, clear errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from components.modules import hub_cache, saved_model_backbone
from pipeline.cli import main as cli
from tests import saved_models
from tests.helpers import encode, solid, write

SIZE = 32
HANDLE = "https://tfhub.dev/google/imagenet/fake_feature_vector/1"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("published")
    return saved_models.export_hub_style(saved_models.tiny_feature_extractor(SIZE), str(root / "model"))


@pytest.fixture
def cache(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = os.path.join(str(tmp_path), "tfhub_cache")
    monkeypatch.setenv(hub_cache.CACHE_ENV, folder)
    return folder


def _tar_gz(folder: str | None, extra: tuple[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        if folder:
            for name in os.listdir(folder):
                archive.add(os.path.join(folder, name), arcname=name)
        if extra:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            archive.addfile(info, io.BytesIO(extra[1]))
    return buffer.getvalue()


@pytest.fixture
def server() -> Iterator[dict]:
    """A loopback model host: GET <path>?tf-hub-format=compressed answers the archive set for <path>."""
    state: dict = {"archives": {}, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urllib.parse.urlparse(self.path)
            state["requests"].append(self.path)
            body = state["archives"].get(url.path)
            if body is None or ("tf-hub-format", "compressed") not in urllib.parse.parse_qsl(url.query):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["base"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cache_layout_and_download_url_are_tensorflow_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hub_cache.CACHE_ENV, raising=False)
    assert hub_cache.cache_dir() == os.path.join(tempfile.gettempdir(), "tfhub_modules")
    monkeypatch.setenv(hub_cache.CACHE_ENV, "/shared/tfhub")
    assert hub_cache.cached_path(HANDLE) == os.path.join("/shared/tfhub", hashlib.sha1(HANDLE.encode()).hexdigest())
    assert hub_cache.download_url(HANDLE) == HANDLE + "?tf-hub-format=compressed"
    assert hub_cache.download_url("https://h/m?a=1") == "https://h/m?a=1&tf-hub-format=compressed"


def test_a_filled_cache_loads_offline(model_dir: str, cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(model_dir, hub_cache.cached_path(HANDLE))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached model must not be downloaded")

    monkeypatch.setattr(hub_cache.urllib.request, "urlopen", no_network)
    assert saved_model_backbone.check(f"hub:{HANDLE}", SIZE) == saved_models.FEATURES


def test_a_download_fills_the_cache_once(model_dir: str, cache: str, server: dict) -> None:
    handle = f"{server['base']}/google/fake/feature_vector/2"
    server["archives"]["/google/fake/feature_vector/2"] = _tar_gz(model_dir)
    path = hub_cache.resolve(handle)
    assert path == hub_cache.cached_path(handle) and os.path.isfile(os.path.join(path, "saved_model.pb"))
    with open(f"{path}.descriptor.txt", encoding="utf-8") as descriptor:
        assert descriptor.readline().strip() == f"Module: {handle}"
    assert saved_model_backbone.check(f"hub:{handle}", SIZE) == saved_models.FEATURES
    assert server["requests"] == ["/google/fake/feature_vector/2?tf-hub-format=compressed"]
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(path), os.path.basename(path) + ".descriptor.txt"])


def test_neither_cached_nor_reachable_is_one_line_naming_the_cache(cache: str, server: dict) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}/google/fake/1"
    with pytest.raises(hub_cache.HubError) as raised:
        hub_cache.resolve(unreachable)
    message = str(raised.value)
    assert "\n" not in message and hub_cache.cached_path(unreachable) in message
    assert "is not in the cache" in message and "image-pipeline hub-download" in message
    with pytest.raises(hub_cache.HubError, match="HTTP 404"):
        hub_cache.resolve(f"{server['base']}/no/such/model")
    assert os.listdir(cache) == []  # nothing half-written


def test_an_archive_escaping_its_folder_is_refused(cache: str, server: dict, tmp_path: object) -> None:
    server["archives"]["/evil"] = _tar_gz(None, extra=("../escaped.txt", b"x"))
    with pytest.raises(hub_cache.HubError, match="could not be downloaded"):
        hub_cache.resolve(f"{server['base']}/evil")
    assert not os.path.exists(os.path.join(cache, "escaped.txt")) and os.listdir(cache) == []


def test_hub_download_command_prints_the_cached_folder(model_dir: str, cache: str, server: dict) -> None:
    server["archives"]["/m/1"] = _tar_gz(model_dir)
    handle = f"{server['base']}/m/1"
    result = CliRunner().invoke(cli.main, ["hub-download", f"hub:{handle}"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == hub_cache.cached_path(handle)


def test_run_stops_before_any_work_on_an_unreachable_handle(cache: str, tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    for label in ("a", "b"):
        write(os.path.join(data, label, "1.png"), encode(solid((1, 2, 3)), "PNG"))
    pipeline_root = os.path.join(str(tmp_path), "tfx_root")
    handle = f"http://127.0.0.1:{_closed_port()}/google/fake/1"
    args = ["run", "--data-root", data, "--pipeline-root", pipeline_root, "--image-size", "32", "--backbone"]
    result = CliRunner().invoke(cli.main, [*args, f"hub:{handle}"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: TF Hub model {handle} is not in the cache")
    assert not os.path.exists(os.path.join(pipeline_root, "metadata.sqlite"))
