"""The pipeline's Beam steps on Beam's portable path, each output the same as in-process.

The portable path is the one Flink, Spark and Dataflow take: the launcher submits each
step's job to a job service (here Beam's own, ``local_job_service_main``), which runs it
on SDK harness workers in other processes (``--environment_type=EXTERNAL``: a worker pool,
``tests/beam_worker_pool.py``), so every DoFn and its arguments are pickled, shipped and
run elsewhere. Everything listens on loopback; the test starts and stops both services.

One whole pipeline run goes through the portable runner (ExampleGen, StatisticsGen,
Transform, BulkInferrer and the Evaluator on the workers; the Trainer in the launcher).
Then each Beam step runs again in-process (FnApiRunner, what every other test uses) as a
TFX partial run on the very same input artifacts, and every output must match: examples,
split membership and the ingest report, statistics, transformed bytes and vocabulary, the
gate's metrics and verdict, the test predictions.

The launcher runs in the data's folder with relative paths and the services in a folder of
their own, as a cluster's workers would (``pipeline/local/runner.py``,
``with_absolute_paths``: relative, every image was rejected and the examples written into
the workers' folder).

What it does not show: workers on other machines (a shared bucket, not one disk), that
staged packages install (the workers run this venv; the test checks what is staged),
Beam's Prism, Flink, Spark or Dataflow themselves, more than one worker per job (Beam's
local job service runs each job on one), and the served-test Evaluator with a served
baseline (nothing is served yet: it compares nothing).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import RunOptions

from components.evaluation import inference_result
from components.evaluation import metrics as evaluation
from components.ingest import splits
from components.ingest import summary as ingest_summary
from components.modules import features
from pipeline.config.pipeline_config import PipelineConfig
from pipeline.demo import demo, demo_data
from pipeline.graph import node_ids
from pipeline.graph.pipeline import create_pipeline
from pipeline.local import runner as local_runner
from pipeline.report.run_report import RunReport
from tests.helpers import encode, solid, tiny_run_config, write

pytestmark = pytest.mark.slow

# Run by path: the services' working folder is their own, not the checkout (nor the launcher's).
POOL_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "beam_worker_pool.py"
)
STARTUP_SECONDS = 60  # each service, from start to accepting connections
# The services are killed after this (a stuck job then fails the run instead of hanging CI).
DEADLINE_SECONDS = 480
# Jobs of one first run on the portable runner: ExampleGen, StatisticsGen, Transform, BulkInferrer,
# Evaluator (the served-test Evaluator has no served version to compare with and runs no job).
BEAM_JOBS = 5
# The in-process reruns, each a TFX partial run on the portable run's artifacts; grouped so that no
# group holds a step downstream of another (a group's steps read the portable run's outputs alone).
RERUNS = (
    (node_ids.EXAMPLE_GEN,),
    (node_ids.STATISTICS_GEN, node_ids.TRANSFORM),
    (node_ids.EVALUATOR, node_ids.BULK_INFERRER),
)
SIZE = 32


@dataclasses.dataclass
class BeamServices:
    """A running job service and worker pool on loopback, and their shared log."""

    job_port: int
    pool_port: int
    log_path: str
    processes: list[subprocess.Popen]

    def beam_args(self) -> tuple[str, ...]:
        """The pipeline's Beam flags for these services."""
        return (
            "--runner=PortableRunner",
            f"--job_endpoint=127.0.0.1:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=127.0.0.1:{self.pool_port}",
        )

    def workers_started(self) -> int:
        """SDK harness processes the pool started (one per job)."""
        with open(self.log_path, errors="replace") as handle:
            return handle.read().count("Starting worker with command")

    def staged(self) -> dict[str, list[str]]:
        """Job -> the files the launcher staged for it (names without the service's hash prefix)."""
        folder = os.path.join(os.path.dirname(self.log_path), "staging")
        return {
            job: sorted(name.split("-", 1)[1] for name in os.listdir(os.path.join(folder, job)))
            for job in sorted(os.listdir(folder))
        }

    def log_tail(self, lines: int = 40) -> str:
        with open(self.log_path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])


def _require_a_resolvable_hostname() -> None:
    """Beam gives EXTERNAL workers the job's control address as ``socket.getfqdn()``.

    (ExternalWorkerHandler.host_from_worker in
    apache_beam/runners/portability/fn_api_runner/worker_handlers.py): a name that does not
    resolve leaves the workers retrying for a minute and the job hanging.
    """
    name = socket.getfqdn()
    try:
        socket.getaddrinfo(name, None)
    except socket.gaierror as error:
        pytest.fail(
            f"This machine's name {name!r} does not resolve ({error}): Beam's EXTERNAL workers dial the job service "
            "there. Add it to /etc/hosts (tools/in-userland.sh binds the host's /etc/hosts into the userland)."
        )


def _start(command: list[str], cwd: str, log: object) -> subprocess.Popen:
    """This venv's Python in its own process group (the pool's SDK workers join it), in ``cwd``."""
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _port_when_serving(port_file: str, process: subprocess.Popen, services: BeamServices) -> int:
    """Waits (bounded) for the port a service writes once it serves, and for it to accept connections."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{services.log_tail()}")
        if os.path.exists(port_file):  # written whole (renamed into place) once the service listens
            with open(port_file) as handle:
                port = int(handle.read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"{process.args} did not serve within {STARTUP_SECONDS} s:\n{services.log_tail()}")


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass  # the whole group has exited


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group (the pool's SDK workers too), SIGKILL after 10 s."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def beam_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BeamServices]:
    """Beam's job service and an SDK worker pool on loopback, stopped after the module (or at the deadline)."""
    _require_a_resolvable_hostname()
    folder = str(tmp_path_factory.mktemp("beam_services"))
    log_path = os.path.join(folder, "services.log")
    services = BeamServices(0, 0, log_path, [])
    with open(log_path, "w") as log:
        job = _start(
            [
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port=0",
                f"--port_file={folder}/job.port",
                f"--staging_dir={folder}/staging",
            ],
            folder,
            log,
        )
        services.processes.append(job)
        pool = _start([POOL_SCRIPT, f"--port-file={folder}/pool.port"], folder, log)
        services.processes.append(pool)
    watchdog = threading.Timer(DEADLINE_SECONDS, _stop, [services.processes])
    watchdog.daemon = True
    try:
        services.job_port = _port_when_serving(f"{folder}/job.port", job, services)
        services.pool_port = _port_when_serving(f"{folder}/pool.port", pool, services)
        watchdog.start()
        yield services
    finally:
        watchdog.cancel()
        _stop(services.processes)


def _config(root: str, beam_args: tuple[str, ...], enable_cache: bool = True) -> PipelineConfig:
    """The demo's small backbone (MobileNetV2 0.35, its shipped weights) at 32 px, 1 + 1 epochs, no TFLite."""
    trainer = {
        "backbone": demo.BACKBONE,
        "backbone_alpha": demo.ALPHA,
        "weights": demo.SHIPPED_WEIGHTS,
        "stage1_epochs": 1,
        "stage2_epochs": 1,
    }
    return tiny_run_config(root, trainer=trainer, tflite="none", beam_args=beam_args, enable_cache=enable_cache)


def _data(data_root: str) -> None:
    """36 shapes in JPEG/PNG/BMP/GIF, a resized copy of one, a TIFF the workers convert, a truncated file."""
    demo_data.generate(data_root, demo_data.TARGET_CLASSES, 12, SIZE, seed=0)
    first = os.path.join(data_root, "triangle", sorted(os.listdir(os.path.join(data_root, "triangle")))[0])
    with Image.open(first) as image:
        copy = image.convert("RGB").resize((2 * SIZE, 2 * SIZE))
    write(os.path.join(data_root, "triangle", "copy.png"), encode(copy, "PNG"))
    write(os.path.join(data_root, "circle", "scan.tiff"), encode(solid((200, 30, 30), SIZE), "TIFF"))
    write(os.path.join(data_root, "square", "cut.png"), encode(solid((30, 200, 30), SIZE), "PNG")[:60])


def _run_portable(config: PipelineConfig, services: BeamServices) -> RunReport:
    try:
        return local_runner.run(config)
    except Exception as error:
        raise AssertionError(
            f"The portable run failed: {error}\nJob service and workers:\n{services.log_tail()}"
        ) from error


def _rerun_in_process(config: PipelineConfig, nodes: tuple[str, ...], base_run_id: str) -> None:
    """Runs ``nodes`` again in-process, reading the artifacts of run ``base_run_id`` (a TFX partial run)."""
    connection = metadata.sqlite_metadata_connection_config(config.metadata_path)
    options = RunOptions(from_nodes=list(nodes), to_nodes=list(nodes), base_pipeline_run_id=base_run_id)
    LocalDagRunner().run(create_pipeline(config, connection), run_options=options)


@pytest.fixture(scope="module")
def runs(beam_services: BeamServices, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A whole run on the portable runner, then each Beam step again in-process on its inputs."""
    root = str(tmp_path_factory.mktemp("portable"))
    _data(os.path.join(root, "data"))
    with pytest.MonkeyPatch.context() as patch:
        # Relative paths, as in `image-pipeline run --data-root my_images`: the workers run elsewhere.
        patch.chdir(root)
        portable = _config(".", beam_services.beam_args())
        local_runner.preflight(portable)
        report = _run_portable(portable, beam_services)
    in_process = _config(root, (), enable_cache=False)  # every selected step runs, none from the cache
    for nodes in RERUNS:
        _rerun_in_process(in_process, nodes, report.run_id)
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(in_process.metadata_path))
    return {
        "report": report,
        "outputs": {node: _outputs(store, in_process.pipeline_name, node) for nodes in RERUNS for node in nodes},
        "workers": beam_services.workers_started(),
        "staged": beam_services.staged(),
    }


def _outputs(
    store: metadata_store.MetadataStore, pipeline_name: str, node: str
) -> list[dict[str, metadata_store_pb2.Artifact]]:
    """Output key -> artifact of each execution of ``node`` that ran (reused ones left out), oldest first."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node}")
    ran = [
        execution
        for execution in store.get_executions_by_context(context.id)
        if execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    outputs = []
    for execution in sorted(ran, key=lambda execution: execution.id):
        events = store.get_events_by_execution_ids([execution.id])
        ids = {event.path.steps[0].key: event.artifact_id for event in events if event.type == event.OUTPUT}
        artifacts = dict(zip(ids, store.get_artifacts_by_id(list(ids.values())), strict=True))
        outputs.append(artifacts)
    return outputs


def _portable_and_in_process(runs: dict, node: str) -> tuple[dict, dict]:
    executions = runs["outputs"][node]
    assert len(executions) == 2, f"{node}: expected the portable run and the in-process rerun, got {executions}"
    return executions[0], executions[1]


def _examples(uri: str, split: str) -> list[tf.train.Example]:
    """The split's records as protos, in a fixed order (a feature map's serialization order is protobuf's)."""
    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*"))
    records = [tf.train.Example.FromString(record.numpy()) for record in tf.data.TFRecordDataset(files, "GZIP")]
    return sorted(records, key=lambda example: example.SerializeToString(deterministic=True))


def _paths(examples: list[tf.train.Example]) -> set[str]:
    return {example.features.feature[features.PATH_KEY].bytes_list.value[0].decode() for example in examples}


def test_the_whole_run_went_through_the_job_service_and_its_workers(runs: dict) -> None:
    report = runs["report"]
    assert set(report.component_states.values()) == {"ran"}, report.component_states
    # Every Beam step's job ran on an SDK harness process the pool started, none in the launcher.
    assert runs["workers"] == BEAM_JOBS, runs["workers"]
    assert report.blessed is True and report.pushed_to


def test_the_workers_ran_this_project_that_no_job_staged(runs: dict) -> None:
    staged = runs["staged"]
    assert len(staged) == BEAM_JOBS, staged
    # TFX stages its own sdist for every job and the Transform module's wheel for Transform's ...
    assert all(any(name.startswith("tfx_ephemeral-") for name in names) for names in staged.values()), staged
    assert sum(any(name.startswith("tfx_user_code_Transform-") for name in names) for names in staged.values()) == 1
    # ... and nothing of this project (components/: the ExampleGen's DoFns): the workers must bring it
    # (the pool runs this venv; on a cluster, the pipeline image: components/beam_args.py).
    assert not [name for names in staged.values() for name in names if "image_transfer" in name], staged


def test_example_gen_writes_the_same_examples_splits_and_report(runs: dict) -> None:
    portable, in_process = _portable_and_in_process(runs, node_ids.EXAMPLE_GEN)
    uris = portable["examples"].uri, in_process["examples"].uri
    for split in splits.SPLIT_NAMES:
        ported, local = (_examples(uri, split) for uri in uris)
        assert ported == local, split  # the same images, labels and paths: the same split membership
        assert _paths(ported), split
    summaries = [ingest_summary.read(uri) for uri in uris]
    assert summaries[0] == summaries[1]
    assert (summaries[0].ingested, summaries[0].rejected) == (38, 1)  # the TIFF converted on a worker
    assert summaries[0].duplicate_groups == 1  # the copy and its original, in one split
    reports = []
    for uri in uris:
        with open(os.path.join(ingest_summary.report_dir(uri), ingest_summary.REPORT_FILES)) as handle:
            reports.append(sorted(handle))
    assert reports[0] == reports[1]


def test_statistics_gen_computes_the_same_statistics(runs: dict) -> None:
    portable, in_process = _portable_and_in_process(runs, node_ids.STATISTICS_GEN)
    for split in splits.SPLIT_NAMES:
        ported, local = (
            text_format.MessageToString(
                tfdv.load_stats_binary(os.path.join(outputs["statistics"].uri, f"Split-{split}", "FeatureStats.pb"))
            )
            for outputs in (portable, in_process)
        )
        assert ported == local, split


def test_transform_writes_the_same_bytes_and_vocabulary(runs: dict) -> None:
    portable, in_process = _portable_and_in_process(runs, node_ids.TRANSFORM)
    for split in (splits.TRAIN, splits.VALIDATION):
        ported, local = (_examples(outputs["transformed_examples"].uri, split) for outputs in (portable, in_process))
        assert ported and ported == local, split  # every JPEG byte and class index
    for name in ("transform_fn/assets/" + features.LABEL_VOCAB_NAME, "transformed_metadata/schema.pbtxt"):
        ported, local = (
            tf.io.gfile.GFile(os.path.join(outputs["transform_graph"].uri, name), "rb").read()
            for outputs in (portable, in_process)
        )
        assert ported == local, name


def test_the_evaluator_computes_the_same_metrics_and_verdict(runs: dict) -> None:
    portable, in_process = _portable_and_in_process(runs, node_ids.EVALUATOR)
    blessed = [bool(outputs["blessing"].custom_properties["blessed"].int_value) for outputs in (portable, in_process)]
    assert blessed[0] == blessed[1]
    gates = [evaluation.read_gate(outputs["evaluation"].uri, blessed[0]) for outputs in (portable, in_process)]
    assert gates[0] == gates[1]
    assert gates[0].test_examples == runs["report"].ingest.split_counts[splits.TEST]
    assert sum(map(sum, gates[0].confusion_matrix)) == gates[0].test_examples


def test_the_bulk_inferrer_predicts_the_same_test_images(runs: dict) -> None:
    portable, in_process = _portable_and_in_process(runs, node_ids.BULK_INFERRER)
    ported, local = (
        sorted(inference_result.read_predictions(outputs["inference_result"].uri), key=lambda p: p.path)
        for outputs in (portable, in_process)
    )
    assert [p.path for p in ported] == [p.path for p in local] and len(ported) == runs["report"].gate.test_examples
    for one, other in zip(ported, local, strict=True):
        assert (one.label, one.predicted) == (other.label, other.predicted)
        assert one.probability == pytest.approx(other.probability, abs=1e-6)
