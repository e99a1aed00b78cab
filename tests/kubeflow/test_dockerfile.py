"""The pipeline image can be its own Beam workers' image (kubeflow/Dockerfile)."""

from __future__ import annotations

import os
import re

import apache_beam

DOCKERFILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "kubeflow", "Dockerfile"
)


def test_the_beam_boot_comes_from_the_same_beam_and_python_as_the_image() -> None:
    with open(DOCKERFILE) as handle:
        text = handle.read()
    python = re.search(r"^FROM python:(\d+\.\d+)-", text, re.MULTILINE)
    boot = re.search(
        r"^COPY --from=apache/beam_python(\d+\.\d+)_sdk:(\S+) /opt/apache/beam /opt/apache/beam$", text, re.MULTILINE
    )
    assert python and boot, "kubeflow/Dockerfile: expected FROM python:X.Y-... and Beam's SDK boot copied in"
    # Beam's boot starts the SDK harness of the Beam installed in the image: one version, one Python.
    assert boot.groups() == (python.group(1), apache_beam.__version__)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
