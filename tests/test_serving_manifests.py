"""The TF Serving manifests validate against the Kubernetes schema and follow our rules."""

from __future__ import annotations

import copy
import os

import kubernetes_validate
import pytest
import yaml

MANIFEST = os.path.join(os.path.dirname(__file__), "..", "kubeflow", "serving", "tf-serving.yaml")
KUBERNETES_VERSION = "1.30"


def _documents() -> dict[str, dict]:
    with open(MANIFEST) as handle:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(handle)}


def test_every_document_validates_strictly() -> None:
    documents = _documents()
    assert set(documents) == {"PersistentVolumeClaim", "Deployment", "Service"}
    for document in documents.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagee="typo"),
        lambda d: d["spec"].update(replicas="two"),
    ],
)
def test_the_validation_catches_mistakes(breakage: object) -> None:
    broken = copy.deepcopy(_documents()["Deployment"])
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_deployment_is_hardened_and_probed() -> None:
    deployment = _documents()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    image, tag = container["image"].rsplit(":", 1)
    assert image == "tensorflow/serving" and tag not in ("latest", "") and tag[0].isdigit()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/image_classifier"
    assert "--model_base_path=/models/image_classifier" in container["args"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == _documents()["PersistentVolumeClaim"]["metadata"]["name"]
    service_ports = {port["name"] for port in _documents()["Service"]["spec"]["ports"]}
    assert service_ports == {"grpc", "http"}
