"""The TF Serving manifests validate against the Kubernetes schema and follow our rules."""

from __future__ import annotations

import copy
import json
import os

import kubernetes_validate
import pytest
import yaml

from components.serving import model_config as serving_ops
from pipeline.config.pipeline_config import load_config

MANIFEST = os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "serving", "tf-serving.yaml")
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


SERVING = os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "serving")
GCS_MANIFEST = os.path.join(SERVING, "tf-serving-gcs.yaml")
CANARY_JOB = os.path.join(SERVING, "first-canary-job.yaml")
CLUSTER_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "config.yaml")


def _load(path: str) -> dict[str, dict]:
    with open(path) as handle:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(handle)}


def _pod(documents: dict[str, dict], kind: str = "Deployment") -> dict:
    return documents[kind]["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(SERVING) if n.endswith(".yaml")))
def test_every_serving_manifest_validates_strictly(name: str) -> None:
    with open(os.path.join(SERVING, name)) as handle:
        documents = list(yaml.safe_load_all(handle))
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_pvc_pods_wait_for_the_config_file_the_server_reads() -> None:
    # TF Serving exits without its --model_config_file; the init container waits for the first canary instead.
    pod = _pod(_documents())
    (init,) = pod["initContainers"]
    config_file = _args(pod["containers"][0])["model_config_file"]
    assert f"until [ -f {config_file} ]" in init["args"][0]
    assert init["image"] == pod["containers"][0]["image"]
    mount = next(m for m in init["volumeMounts"] if config_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True and mount["name"] == "models"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(init["resources"]["limits"]) == {"cpu", "memory"}


def test_the_gcs_variant_reads_the_configs_serving_dir_with_workload_identity_or_a_key() -> None:
    documents = _load(GCS_MANIFEST)
    assert set(documents) == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    pod = _pod(documents)
    container = pod["containers"][0]
    serving_dir = load_config(CLUSTER_CONFIG, {}).serving_dir
    assert serving_dir.startswith("gs://")
    assert _args(container)["model_config_file"] == serving_ops.model_config_path(serving_dir)
    # Workload Identity: the pods run as the ServiceAccount that names a Google service account.
    account = documents["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    # A key file, when its Secret exists (optional: without it TensorFlow asks the metadata server).
    key_file = {env["name"]: env["value"] for env in container["env"]}["GOOGLE_APPLICATION_CREDENTIALS"]
    mount = next(m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["optional"] is True and mount["readOnly"] is True
    assert "persistentVolumeClaim" not in json.dumps(pod) and "PersistentVolumeClaim" not in documents


def test_the_gcs_variant_differs_from_the_pvc_manifest_only_in_storage_and_credentials() -> None:
    pvc, gcs = _documents(), _load(GCS_MANIFEST)
    for kind in ("ConfigMap", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert gcs[kind] == pvc[kind], kind
    pvc_pod, gcs_pod = copy.deepcopy(_pod(pvc)), copy.deepcopy(_pod(gcs))
    pvc_pod.pop("initContainers")  # it can only wait for a mounted file
    gcs_pod.pop("serviceAccountName")
    for pod, storage in ((pvc_pod, "models"), (gcs_pod, "gcs-key")):
        container = pod["containers"][0]
        container.pop("env", None)
        container["args"] = [arg for arg in container["args"] if not arg.startswith("--model_config_file=")]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != storage]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != storage]
    assert gcs_pod == pvc_pod
    assert {k: v for k, v in gcs["Deployment"].items() if k != "spec"} == {
        k: v for k, v in pvc["Deployment"].items() if k != "spec"
    }


def test_the_first_canary_job_writes_the_config_the_server_reads() -> None:
    job = _load(CANARY_JOB)["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["args"][0]
    serving = _pod(_documents())
    server_mount = next(m for m in serving["containers"][0]["volumeMounts"] if m["name"] == "models")
    job_mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    # Same claim at the same path: the config's base_path (<serving_dir>/<model>) is what TF Serving sees.
    assert job_mount["mountPath"] == server_mount["mountPath"] and not job_mount.get("readOnly")
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in serving["volumes"] if "persistentVolumeClaim" in v
    }
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claims["models"]
    serving_dir = job_mount["mountPath"]
    model_dir = os.path.join(serving_dir, load_config(CLUSTER_CONFIG, {}).model_name)
    assert f'image-pipeline serving canary "$version" --serving-dir {serving_dir};' in script
    assert f"ls {model_dir} " in script
    assert serving_ops.model_config_path(serving_dir) == _args(serving["containers"][0])["model_config_file"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
