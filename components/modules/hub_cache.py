"""``hub:`` handles to local SavedModel folders, in tensorflow_hub's cache layout.

tensorflow_hub 0.15 (tfx 1.21 still pins ``tensorflow-hub<0.16``) does not import under
TF 2.21 ("cannot import name 'estimator' from 'tensorflow.compat.v1'", as under TF 2.16),
and 0.16 conflicts with tfx's pin, so this module re-implements the one part we need:
its compressed-model cache. The model of a handle lives in
``<cache>/<sha1 of the handle>/``, where ``<cache>`` is ``$TFHUB_CACHE_DIR`` or
``<system temp>/tfhub_modules``: the folders ``hub.resolve`` uses, so a cache filled by
tensorflow_hub (or by ``image-pipeline hub-download``) on a machine with network
works offline here. A handle that is not cached is downloaded from
``<handle>?tf-hub-format=compressed`` (a .tar.gz; tfhub.dev URLs redirect to Kaggle
Models, which serves the same format). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid

CACHE_ENV = "TFHUB_CACHE_DIR"
DOWNLOAD_TIMEOUT_SECONDS = 60.0
_COMPRESSED_QUERY = ("tf-hub-format", "compressed")


class HubError(RuntimeError):
    """A ``hub:`` handle is neither cached nor downloadable."""


def cache_dir() -> str:
    """``$TFHUB_CACHE_DIR``, else ``<system temp>/tfhub_modules`` (tensorflow_hub's defaults)."""
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "tfhub_modules")


def cached_path(handle: str, cache: str | None = None) -> str:
    """Where the model of ``handle`` is (or will be) in the cache: ``<cache>/<sha1(handle)>``."""
    return os.path.join(cache or cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())


def download_url(handle: str) -> str:
    """The handle with ``tf-hub-format=compressed`` added to its query (what tensorflow_hub requests)."""
    parts = list(urllib.parse.urlparse(handle))
    parts[4] = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts[4]), _COMPRESSED_QUERY])
    return urllib.parse.urlunparse(parts)


def is_cached(handle: str, cache: str | None = None) -> bool:
    """Whether the cache holds the model (a non-empty folder, as tensorflow_hub decides)."""
    path = cached_path(handle, cache)
    return os.path.isdir(path) and bool(os.listdir(path))


def resolve(handle: str, cache: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> str:
    """The local SavedModel folder of ``handle``: from the cache, else downloaded into it.

    Raises:
      HubError: If the model is not cached and cannot be downloaded (one line
        saying where the cache is and how to fill it offline).
    """
    cache = cache or cache_dir()
    if "://" in cache:
        raise HubError(
            f"{CACHE_ENV}={cache!r} must be a local folder (or a mounted volume); for a model in a bucket use "
            "backbone savedmodel:<URI of the extracted model folder>."
        )
    path = cached_path(handle, cache)
    if is_cached(handle, cache):
        logging.info("TF Hub model %s: cached in %s", handle, path)
        return path
    try:
        _download(handle, path, timeout)
    except (OSError, tarfile.TarError) as error:  # URLError, HTTPError and timeouts are OSErrors
        raise HubError(
            f"TF Hub model {handle} is not in the cache ({path}) and could not be downloaded ({_reason(error)}). "
            f"Without network: run `image-pipeline hub-download {handle}` on a machine with network and copy "
            f"the folder it prints to {path}, or set {CACHE_ENV} to a cache that holds it."
        ) from None
    return path


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _download(handle: str, path: str, timeout: float) -> None:
    """Downloads and extracts into a temporary sibling folder, then renames it into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.tmp"
    url = download_url(handle)
    logging.info("Downloading TF Hub model %s into %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only: settings)
            with tarfile.open(fileobj=response, mode="r|*") as archive:
                archive.extractall(partial, filter="data")  # no absolute paths, no escaping links
        if not os.path.isdir(partial) or not os.listdir(partial):
            raise tarfile.TarError("the archive was empty")
        with open(f"{path}.descriptor.txt", "w", encoding="utf-8") as handle_file:
            handle_file.write(
                f"Module: {handle}\nDownload Time: {datetime.datetime.now()}\n"
                f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})"
            )
        try:
            os.rename(partial, path)
        except OSError:
            if not os.path.isdir(path):  # else another process finished first: keep its copy
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
