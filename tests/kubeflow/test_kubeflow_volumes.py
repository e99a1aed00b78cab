"""The cluster path of the Kubeflow target: PVC mounts in every step, local-path warnings, Vertex AI submission."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import backend_rules, local_harness, runner, volumes
from pipeline.cli import main as cli
from pipeline.config.pipeline_config import ConfigError, load_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG = os.path.join(ROOT, "kubeflow", "config.yaml")
GOLDEN = os.path.join(ROOT, "kubeflow", "pipeline.yaml")
IMAGE = "ghcr.io/tfx-image-transfer/pipeline:0.1.0"  # as in the Makefile's compile target
MOUNTS = ["image-transfer-data:/data", "image-transfer-models:/models"]


@pytest.fixture(scope="module")
def compiled_with_pvcs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = str(tmp_path_factory.mktemp("kfp_pvc") / "pipeline.yaml")
    args = ["compile", "--config", CONFIG, "--image", IMAGE, "--output", output]
    args += ["--data-root", "/data/images", "--serving-dir", "/models"]
    for mount in MOUNTS:
        args += ["--pvc", mount]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    with open(output) as handle:
        text = handle.read()
    return {"path": output, "text": text, "documents": list(yaml.safe_load_all(text)), "stderr": result.stderr}


def test_the_file_is_a_pipeline_spec_then_a_platform_spec(compiled_with_pvcs: dict) -> None:
    spec, platform = compiled_with_pvcs["documents"]
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # unknown fields fail
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert backend_rules.open_source_errors(spec) == []
    # Written as the KFP SDK writes a spec with platform features: yaml.dump_all of both, after the comments.
    assert compiled_with_pvcs["text"].endswith(yaml.dump_all([spec, platform], sort_keys=True))
    assert compiled_with_pvcs["text"].count("\n---\n") == 1


def test_every_executor_mounts_every_claim(compiled_with_pvcs: dict) -> None:
    spec, platform = compiled_with_pvcs["documents"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])  # the Trainer and IngestSnapshot too
    expected = [volumes.PvcMount.parse(mount) for mount in MOUNTS]
    for label, config in executors.items():
        assert config == {"pvcMount": [{"constant": m.claim, "mountPath": m.mount_path} for m in expected]}, label
        assert volumes.pvc_mounts(platform, label) == expected


def test_the_pipeline_spec_part_is_unchanged_but_for_the_paths(compiled_with_pvcs: dict) -> None:
    with open(GOLDEN) as handle:
        golden = yaml.safe_load(handle)
    spec = compiled_with_pvcs["documents"][0]
    text = json.dumps(spec)
    assert "/data/images" in text and "/models/image_classifier" in text
    restored = text.replace("/data/images", "gs://image-transfer-data/images").replace(
        '"/models', '"gs://image-transfer-data/serving'
    )
    assert json.loads(restored) == golden


def test_kfp_client_and_harness_read_the_file(compiled_with_pvcs: dict) -> None:
    from kfp.client import client

    # What kfp.Client.create_run_from_pipeline_package sends: pipeline_spec and platform_spec.
    document = client._extract_pipeline_yaml(compiled_with_pvcs["path"]).to_dict()  # noqa: SLF001
    assert set(document) == {"pipeline_spec", "platform_spec"}
    assert set(document["platform_spec"]["platforms"]) == {"kubernetes"}
    assert local_harness.load_spec(compiled_with_pvcs["path"]) == compiled_with_pvcs["documents"][0]


def test_paths_under_a_mount_draw_no_warning(compiled_with_pvcs: dict) -> None:
    assert "Warning" not in compiled_with_pvcs["stderr"], compiled_with_pvcs["stderr"]


def test_without_pvc_the_file_stays_one_document() -> None:
    with open(GOLDEN) as handle:
        assert len(list(yaml.safe_load_all(handle))) == 1


@pytest.fixture
def fake_compile(monkeypatch: pytest.MonkeyPatch) -> list:
    """compile_pipeline replaced: the CLI's checks and warnings run, TFX does not."""
    calls: list = []
    monkeypatch.setattr(runner, "compile_pipeline", lambda config, kubeflow: calls.append(kubeflow) or "out.yaml")
    return calls


def _compile(*args: str) -> object:
    return CliRunner().invoke(cli.main, ["compile", "--config", CONFIG, "--image", IMAGE, *args])


def test_local_paths_warn_one_line_each_on_stderr(fake_compile: list) -> None:
    result = _compile("--data-root", "my_images", "--pipeline-root", "/tmp/dry/root", "--serving-dir", "/tmp/serving")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Compiled kubeflow pipeline to out.yaml\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    data, root, serving = lines
    assert data.startswith("Warning: data_root my_images is a relative path") and "gs://" in data
    assert "--pvc" in data
    assert root.startswith("Warning: pipeline_root /tmp/dry/root is a local path") and "gs://" in root
    assert serving.startswith("Warning: serving_dir /tmp/serving is under /tmp") and "--pvc" in serving


def test_a_pvc_mount_covers_its_paths_but_not_the_pipeline_root(fake_compile: list) -> None:
    result = _compile(
        *("--data-root", "/tmp/data/images", "--serving-dir", "/tmp/data/serving"),
        *("--pipeline-root", "/tmp/data/root", "--pvc", "image-transfer-data:/tmp/data"),
    )
    assert result.exit_code == 0, result.output
    # The launcher opens the pipeline root as a bucket (objectstore.ParseBucketConfig): no PVC path there.
    assert [line.split(" ")[1] for line in result.stderr.splitlines()] == ["pipeline_root"]
    (kubeflow,) = fake_compile
    assert kubeflow.pvc_mounts == (volumes.PvcMount("image-transfer-data", "/tmp/data"),)


def test_bucket_and_absolute_paths_draw_no_warning(fake_compile: list) -> None:
    assert _compile().stderr == ""  # kubeflow/config.yaml: gs:// everywhere
    assert _compile("--data-root", "/mnt/images", "--serving-dir", "/srv/models").stderr == ""


def test_a_weights_file_path_is_checked_too(fake_compile: list) -> None:
    result = _compile("--weights", "weights/mobilenet_v2.h5")
    assert result.stderr.splitlines() == [
        "Warning: trainer.weights weights/mobilenet_v2.h5 is a relative path: the pipeline's pods cannot read it. "
        "Use a gs:// URI or a path under a --pvc NAME:/mount/path mount."
    ]
    assert _compile("--weights", "gs://b/weights/mobilenet_v2.h5").stderr == ""


@pytest.mark.parametrize(
    ("pvc", "message"),
    [
        ("image-transfer-data", "NAME:/mount/path"),
        ("Data_Volume:/data", "DNS-1123 label"),
        ("data:relative/path", "absolute path"),
        ("data:/", "absolute path"),
    ],
)
def test_bad_pvc_options_are_one_line(pvc: str, message: str, fake_compile: list) -> None:
    result = _compile("--pvc", pvc)
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert fake_compile == []


def test_mounts_the_driver_or_the_image_cannot_take_are_refused() -> None:
    data = volumes.PvcMount.parse("data:/data")
    with pytest.raises(ConfigError, match="Repeated: \\['data'\\]"):
        runner.KubeflowConfig(image=IMAGE, pvc_mounts=(data, volumes.PvcMount.parse("data:/other")))
    with pytest.raises(ConfigError, match="Repeated: \\['/data'\\]"):
        runner.KubeflowConfig(image=IMAGE, pvc_mounts=(data, volumes.PvcMount.parse("other:/data/")))
    with pytest.raises(ConfigError, match="would hide /app"):
        runner.KubeflowConfig(image=IMAGE, pvc_mounts=(volumes.PvcMount.parse("code:/app"),))
    with pytest.raises(ConfigError, match="needs .yaml output"):
        runner.KubeflowConfig(image=IMAGE, output="job.json", pvc_mounts=(data,))
    assert runner.KubeflowConfig(image=IMAGE, pvc_mounts=(data,)).pvc_mounts == (data,)


def test_mount_paths_cover_what_lies_below_them() -> None:
    mount = volumes.PvcMount.parse("data:/data/")
    assert mount.mount_path == "/data"
    assert mount.covers("/data") and mount.covers("/data/images/span-0001") and mount.covers("/data/x/../y")
    assert not mount.covers("/database") and not mount.covers("data/images") and not mount.covers("gs://data")


def test_load_spec_takes_the_first_document(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "two.yaml")
    platform = volumes.platform_spec(["A_executor"], [volumes.PvcMount.parse("data:/data")])
    with open(path, "w") as handle:
        yaml.dump_all([{"pipelineInfo": {"name": "p"}}, platform], handle, sort_keys=True)
    assert local_harness.load_spec(path) == {"pipelineInfo": {"name": "p"}}


def test_the_vertex_snippet_builds_a_pipeline_job_from_the_json(tmp_path: object) -> None:
    # README, "Vertex AI Pipelines": PipelineJob(template_path=<the .json>) and .submit(); built offline here.
    from google.auth.credentials import AnonymousCredentials

    config = load_config(CONFIG, {})
    output = runner.compile_pipeline(config, runner.KubeflowConfig(image=IMAGE, output=f"{tmp_path}/job.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the client's deprecation notices, if any
        from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name="image-transfer",
        template_path=output,
        project="my-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    assert job.job_id.startswith("image-transfer-")
    assert job._gca_resource.runtime_config.gcs_output_directory == config.pipeline_root  # noqa: SLF001
    tasks = job._gca_resource.pipeline_spec["root"]["dag"]["tasks"]  # noqa: SLF001
    assert tasks["Pusher"]["cachingOptions"]["enableCache"] is False  # enable_caching=None keeps the compiled options


def test_submit_reads_the_pipeline_root_of_a_file_with_a_platform_spec(compiled_with_pvcs: dict) -> None:
    from kubeflow import client

    assert client.pipeline_root(compiled_with_pvcs["path"]) == "gs://image-transfer-data/tfx_root"
