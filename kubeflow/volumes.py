"""PersistentVolumeClaims mounted into every step of the compiled pipeline, and the compile's path check.

KFP v2 keeps Kubernetes settings out of the PipelineSpec: the SDK's compiler
(``kfp.compiler.pipeline_spec_builder.write_pipeline_spec_to_file``) writes a
``PlatformSpec`` as a second YAML document in the same file, and the API server
reads every document of an uploaded file and picks the pipeline spec and the
platform spec by their shape (``backend/src/apiserver/template/v2_template.go``,
``NewV2SpecTemplate``). ``platforms.kubernetes.deploymentSpec.executors.<executor
label>`` is a ``KubernetesExecutorConfig``
(``kubernetes_platform/proto/kubernetes_executor_config.proto``); its
``pvcMount`` entries become a volume and a volume mount of the task's pod, both
named after the claim (``backend/src/v2/driver``, ``makeVolumeMountPatch``).

A mount is written as ``{"constant": NAME, "mountPath": PATH}``: ``constant`` is
deprecated in favour of ``pvcNameParameter``, but every 2.x driver reads it (the
newer ones as a fallback), while a driver from before ``pvcNameParameter`` refuses
the unknown field. A ``.json`` PipelineJob (Vertex AI) has no platform spec, as in
the KFP SDK, which refuses platform features for JSON output.

Nothing here imports TensorFlow or TFX.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from components.modules.settings import SAVEDMODEL_PREFIX
from pipeline.config.pipeline_config import ConfigError, PipelineConfig

PLATFORM = "kubernetes"
# The driver names the pod's volume after the claim, and volume names are DNS-1123 labels.
_VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LOCAL_TMP = "/tmp"  # noqa: S108 (a path we warn about, not one we write to)


@dataclasses.dataclass(frozen=True)
class PvcMount:
    """A PersistentVolumeClaim mounted at ``mount_path`` in every step."""

    claim: str
    mount_path: str

    @classmethod
    def parse(cls, text: str) -> PvcMount:
        """``NAME:/mount/path`` (the ``compile --pvc`` syntax).

        Raises:
          ConfigError: If the claim is not a valid volume name or the path is not absolute.
        """
        claim, separator, mount_path = text.partition(":")
        if not separator or not claim or not mount_path:
            raise ConfigError(f"--pvc takes NAME:/mount/path, e.g. image-transfer-data:/data. Received: {text!r}")
        if len(claim) > 63 or not _VOLUME_NAME.match(claim):
            raise ConfigError(
                f"--pvc {text!r}: the claim name must be a DNS-1123 label (lower-case letters, digits and '-', "
                "at most 63 characters): KFP names the pod's volume after it."
            )
        normalized = posixpath.normpath(mount_path)
        if not mount_path.startswith("/") or normalized == "/":
            raise ConfigError(f"--pvc {text!r}: the mount path must be an absolute path other than /.")
        return cls(claim, normalized)

    def covers(self, path: str) -> bool:
        """Whether ``path`` lies on this volume (the mount path or below it)."""
        if "://" in path or not path.startswith("/"):
            return False
        normalized = posixpath.normpath(path)
        return normalized == self.mount_path or normalized.startswith(self.mount_path + "/")


def check_mounts(mounts: Iterable[PvcMount], project_dir: str) -> None:
    """Refuses mounts the driver or the image cannot take.

    Raises:
      ConfigError: If a claim or a mount path repeats (the driver would build two
        volumes of one name), or a mount would hide the project in the image.
    """
    mounts = list(mounts)
    for attribute in ("claim", "mount_path"):
        values = [getattr(mount, attribute) for mount in mounts]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ConfigError(f"--pvc: each claim and each mount path once. Repeated: {repeated}")
    project = posixpath.normpath(project_dir)
    for mount in mounts:
        if mount.covers(project):
            raise ConfigError(
                f"--pvc {mount.claim}:{mount.mount_path} would hide {project}, where the image keeps the "
                "pipeline's code: mount it elsewhere (e.g. /data)."
            )


def platform_spec(executor_labels: Iterable[str], mounts: Iterable[PvcMount]) -> dict[str, Any]:
    """The ``PlatformSpec`` (JSON dict) that mounts every claim into every executor's pod."""
    pvc_mount = [{"constant": mount.claim, "mountPath": mount.mount_path} for mount in mounts]
    executors = {label: {"pvcMount": [dict(entry) for entry in pvc_mount]} for label in sorted(executor_labels)}
    return {"platforms": {PLATFORM: {"deploymentSpec": {"executors": executors}}}}


def pvc_mounts(platform: Mapping[str, Any], executor_label: str) -> list[PvcMount]:
    """The claims a platform spec mounts into one executor's pod."""
    executors = platform.get("platforms", {}).get(PLATFORM, {}).get("deploymentSpec", {}).get("executors", {})
    entries = executors.get(executor_label, {}).get("pvcMount", [])
    return [PvcMount(entry["constant"], entry["mountPath"]) for entry in entries]


def cluster_paths(config: PipelineConfig) -> dict[str, str]:
    """The config's paths that the pipeline's pods open, by config key."""
    paths = {"data_root": config.data_root, "pipeline_root": config.pipeline_root, "serving_dir": config.serving_dir}
    trainer = config.trainer
    if trainer.weights_kind == "file":
        paths["trainer.weights"] = trainer.weights
    if trainer.backbone.startswith(SAVEDMODEL_PREFIX):
        paths["trainer.backbone"] = trainer.backbone.removeprefix(SAVEDMODEL_PREFIX)
    if config.base_model:
        paths["base_model"] = config.base_model
    return paths


def _local_reason(path: str) -> str | None:
    """Why a path cannot be a cluster path, or None (a URI, or an absolute path outside /tmp)."""
    if "://" in path and not path.startswith("file://"):
        return None
    local = path.removeprefix("file://")
    if not local.startswith("/"):
        return "is a relative path"
    normalized = posixpath.normpath(local)
    if normalized == _LOCAL_TMP or normalized.startswith(_LOCAL_TMP + "/"):
        return "is under /tmp"
    return None


def local_path_warnings(paths: Mapping[str, str], mounts: Iterable[PvcMount]) -> list[str]:
    """One warning line per path the pipeline's pods cannot reach.

    Args:
      paths: Config key -> path, e.g. ``{"data_root": ..., "serving_dir": ...}``.
        ``pipeline_root`` is held to the launcher's rule: open-source KFP's
        launcher opens it as a bucket (``backend/src/v2/objectstore``,
        ``ParseBucketConfig``: gs://, s3:// or minio:// only) and Vertex AI takes
        gs:// only, so any local path warns, a PVC mount path too.
      mounts: The ``--pvc`` mounts; other paths under a mount path are fine.
    """
    mounts = list(mounts)
    warnings = []
    for key, path in paths.items():
        if key == "pipeline_root":
            if "://" not in path or path.startswith("file://"):
                warnings.append(
                    f"Warning: pipeline_root {path} is a local path; on a cluster it must be a bucket URI "
                    "(gs://...): Kubeflow Pipelines' launcher opens the pipeline root as a bucket and Vertex AI "
                    "needs gs://."
                )
            continue
        reason = _local_reason(path)
        if reason and not any(mount.covers(path) for mount in mounts):
            warnings.append(
                f"Warning: {key} {path} {reason}: the pipeline's pods cannot read it. Use a gs:// URI or a path "
                "under a --pvc NAME:/mount/path mount."
            )
    return warnings
