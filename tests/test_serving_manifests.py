"""The TF Serving manifests validate against the Kubernetes schema and follow our rules."""

from __future__ import annotations

import copy
import os

import kubernetes_validate
import pytest
import yaml

from pipeline import serving_ops

MANIFEST = os.path.join(os.path.dirname(__file__), "..", "kubeflow", "serving", "tf-serving.yaml")
KUBERNETES_VERSION = "1.30"


def _documents() -> dict[str, dict]:
    with open(MANIFEST) as handle:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(handle)}


def test_every_document_validates_strictly() -> None:
    documents = _documents()
    assert set(documents) == {
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
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


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        ("HorizontalPodAutoscaler", lambda d: d["spec"].update(minReplica=2)),
        (
            "HorizontalPodAutoscaler",
            lambda d: d["spec"]["metrics"][0]["resource"]["target"].update(averageUtilization="70%"),
        ),
        ("PodDisruptionBudget", lambda d: d["spec"].update(minAvailable=[1])),
    ],
)
def test_the_validation_catches_autoscaling_mistakes(kind: str, breakage: object) -> None:
    broken = copy.deepcopy(_documents()[kind])
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
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == _documents()["PersistentVolumeClaim"]["metadata"]["name"]
    service_ports = {port["name"] for port in _documents()["Service"]["spec"]["ports"]}
    assert service_ports == {"grpc", "http"}


def _args(container: dict) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])


def test_labels_come_from_the_model_config_file_on_the_model_volume() -> None:
    container = _documents()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    args = _args(container)
    assert "model_base_path" not in args and "model_name" not in args  # they exclude a config file
    assert args["model_config_file"] == "/models/" + serving_ops.MODEL_CONFIG_FILE
    assert int(args["model_config_file_poll_wait_seconds"]) == serving_ops.CONFIG_POLL_SECONDS
    assert args["allow_version_labels_for_unavailable_models"] == "true"  # tensorflow/serving#1230


def test_batching_reads_a_valid_parameters_file_from_the_config_map() -> None:
    documents = _documents()
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = _args(container)
    assert args["enable_batching"] == "true"
    directory, name = os.path.split(args["batching_parameters_file"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = documents["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    values = serving_ops.batching_parameters(config_map["data"][name])
    assert 1 <= values["max_batch_size"] <= 64 and values["batch_timeout_micros"] <= 10_000
    limit = container["resources"]["limits"]["cpu"]
    assert values["num_batch_threads"] <= int(limit)  # one batch thread per core the pod may use


def test_batching_parameters_are_checked() -> None:
    assert serving_ops.batching_parameters(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n"
        "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 4 }\n"
    ) == {"max_batch_size": 8, "batch_timeout_micros": 0, "num_batch_threads": 2, "max_enqueued_batches": 4}
    with pytest.raises(ValueError, match="missing: \\['batch_timeout_micros'"):
        serving_ops.batching_parameters(
            "max_batch_size { value: 8 } num_batch_threads { value: 2 } max_enqueued_batches { value: 4 }"
        )
    with pytest.raises(ValueError, match="Unknown: \\['max_batch'\\]"):
        serving_ops.batching_parameters(
            "max_batch { value: 8 } batch_timeout_micros { value: 0 } max_batch_size { value: 8 } "
            "num_batch_threads { value: 2 } max_enqueued_batches { value: 4 }"
        )
    with pytest.raises(ValueError, match="not understood"):
        serving_ops.batching_parameters(
            "max_batch_size: 8 batch_timeout_micros { value: 0 } max_batch_size { value: 8 } "
            "num_batch_threads { value: 2 } max_enqueued_batches { value: 4 }"
        )


def test_autoscaler_and_disruption_budget_cover_the_deployment() -> None:
    documents = _documents()
    deployment = documents["Deployment"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    hpa = documents["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    pdb = documents["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["minAvailable"] < hpa["minReplicas"]  # a drain can always evict one pod
