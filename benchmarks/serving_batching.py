"""Server-side batching: throughput and latency of the exported model by max_batch_size and timeout.

Emulates TF Serving's batching (``--enable_batching``) in one process: C client
threads each send one encoded image at a time and wait for its answer (closed
loop, like C busy callers); ``num_batch_threads`` batch threads each take the
oldest queued requests, up to ``max_batch_size``, waiting at most
``batch_timeout_micros`` after the first one arrived (while all batch threads are
busy, requests queue and the next batch takes them at once, as TF Serving's
scheduler does), and call ``serving_default`` once on the batch. max_batch_size 1
is serving without batching. Two sweeps: max_batch_size at the ConfigMap's
timeout, then batch_timeout_micros at the ConfigMap's max_batch_size (the
ConfigMap in kubeflow/serving/tf-serving.yaml; the thread count too, unless
given). Rounds alternate the settings; a run is clean when other processes used
under 10% of the machine's CPU meanwhile (this VM is shared), and rounds go on
until each setting has two clean runs or 120 s have passed; images/s and latency
count the clean runs only (all, if none was clean). Images per CPU-second of this
process (median of all runs) hardly depends on other load: on a pod with a CPU
limit, capacity is that times the limit. Needs a pushed model (``make demo``);
under 3 minutes on 2 cores.

    python benchmarks/serving_batching.py [--model-dir demo_workdir/serving/image_classifier]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import os
import queue
import random
import statistics
import threading
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import tensorflow as tf
import yaml

from components.serving import model_config as serving_ops
from pipeline.demo import demo, demo_data
from pipeline.predict import predict

MANIFEST = os.path.join(os.path.dirname(__file__), "..", "kubeflow", "serving", "tf-serving.yaml")
BATCH_SIZES = (1, 4, 8, 16, 32, 64)
TIMEOUTS_MICROS = (0, 1000, 2000, 5000)
QUIET = 0.10  # a run is clean when other processes used less than this share of the machine's CPU


@dataclasses.dataclass
class _Request:
    image: bytes
    arrived: float
    answer: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class Batcher:
    """Batch threads in front of ``serving_default``, as TF Serving's batch scheduler runs them."""

    def __init__(self, serve: callable, max_batch_size: int, timeout_s: float, threads: int) -> None:
        self._serve, self._max, self._timeout = serve, max_batch_size, timeout_s
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._forming = threading.Lock()  # one open batch at a time
        self.batch_sizes: list[int] = []
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def predict(self, image: bytes) -> concurrent.futures.Future:
        """Queues one request; the future holds its scores."""
        request = _Request(image, time.perf_counter())
        self._queue.put(request)
        return request.answer

    def close(self) -> None:
        """Stops the batch threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _take_batch(self) -> list[_Request] | None:
        with self._forming:
            first = self._queue.get()
            if first is None:
                return None
            batch, deadline = [first], first.arrived + self._timeout
            while len(batch) < self._max:
                try:
                    request = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if request is None:
                    self._queue.put(None)
                    break
                batch.append(request)
            return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            self.batch_sizes.append(len(batch))
            scores = self._serve(image_bytes=tf.constant([request.image for request in batch]))["scores"].numpy()
            for request, row in zip(batch, scores, strict=True):
                request.answer.set_result(row)


def _client(batcher: Batcher, images: list[bytes], start: float, stop: float, latencies: list[float]) -> None:
    rng = random.Random(len(latencies))
    while time.perf_counter() < stop:
        sent = time.perf_counter()
        batcher.predict(rng.choice(images)).result()
        if sent >= start:  # after the warm-up
            latencies.append(time.perf_counter() - sent)


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (Linux /proc/stat), 0 elsewhere."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in stat.readline().split()[1:8])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measure(
    serve: callable,
    images: list[bytes],
    max_batch_size: int,
    timeout_s: float,
    threads: int,
    clients: int,
    seconds: float,
) -> dict:
    """One run of one setting: images/s, every request's latency, every batch's size, others' CPU share."""
    busy, own = _busy_cpu_seconds(), sum(os.times()[:2])
    batcher = Batcher(serve, max_batch_size, timeout_s, threads)
    start = time.perf_counter() + 0.5  # warm-up: fill the pipeline
    stop = start + seconds
    per_client: list[list[float]] = [[] for _ in range(clients)]
    workers = [
        threading.Thread(target=_client, args=(batcher, images, start, stop, per_client[i])) for i in range(clients)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    batcher.close()
    latencies = [latency for client in per_client for latency in client]
    own = sum(os.times()[:2]) - own
    others = (_busy_cpu_seconds() - busy) - own  # CPU used by other processes
    return {
        "images_per_s": len(latencies) / seconds,
        "images_per_cpu_s": sum(batcher.batch_sizes) / own,  # hardly moved by other processes
        "latencies": latencies,
        "batch_sizes": batcher.batch_sizes,
        "others_cpu_share": max(0.0, others) / ((seconds + 0.5) * os.cpu_count()),
    }


def _clean(runs: list[dict]) -> list[dict]:
    return [run for run in runs if run["others_cpu_share"] < QUIET]


def summarize(max_batch_size: int, timeout_micros: int, runs: list[dict]) -> dict:
    """Median images/s and latency percentiles over the clean runs (all runs if none is clean)."""
    counted = _clean(runs) or runs
    rates = [run["images_per_s"] for run in counted]
    latencies = sorted(latency for run in counted for latency in run["latencies"])
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return {
        "max_batch_size": max_batch_size,
        "batch_timeout_micros": timeout_micros,
        "images_per_s": round(statistics.median(rates), 1),
        "images_per_cpu_s": round(statistics.median(run["images_per_cpu_s"] for run in runs), 1),
        "clean_runs": f"{len(_clean(runs))}/{len(runs)}",
        "images_per_s_runs": [round(run["images_per_s"], 1) for run in runs],  # in round order
        "others_cpu_share_runs": [round(run["others_cpu_share"], 2) for run in runs],
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * p99, 1),
        "mean_batch": round(statistics.mean(size for run in counted for size in run["batch_sizes"]), 1),
    }


def _manifest_batching(path: str) -> dict[str, int]:
    with open(path) as handle:
        documents = list(yaml.safe_load_all(handle))
    (config_map,) = [doc for doc in documents if doc["kind"] == "ConfigMap"]
    (text,) = config_map["data"].values()
    return serving_ops.batching_parameters(text)


def _jpeg(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def main() -> None:
    """Runs the sweep, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.path.join("demo_workdir", "serving", "image_classifier"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per setting and round.")
    parser.add_argument("--clean-runs", type=int, default=2, help="Clean runs wanted per setting.")
    parser.add_argument("--budget-s", type=float, default=120.0, help="Stop adding rounds after this long.")
    parser.add_argument("--batch-threads", type=int, help="num_batch_threads (default: the manifest's).")
    parser.add_argument("--out", default=_results.default_path("serving_batching"))
    args = parser.parse_args()
    configured = _manifest_batching(MANIFEST)
    threads = args.batch_threads or configured["num_batch_threads"]
    model_dir = predict.resolve_model_dir(args.model_dir)
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    rng = random.Random(0)
    images = [_jpeg(demo_data.render(demo_data.TARGET_CLASSES[i % 3], demo.IMAGE_SIZE, rng)) for i in range(32)]
    for size in BATCH_SIZES:  # trace and warm every batch shape once
        serve(image_bytes=tf.constant(images[:1] * size))
    by_size = [(size, configured["batch_timeout_micros"]) for size in BATCH_SIZES]
    by_timeout = [(configured["max_batch_size"], timeout) for timeout in TIMEOUTS_MICROS]
    settings = list(dict.fromkeys(by_size + by_timeout))
    load_before = os.getloadavg()[0]
    runs: dict[tuple[int, int], list[dict]] = {setting: [] for setting in settings}
    started, rounds = time.perf_counter(), 0
    # Rounds alternate the settings until each has enough clean runs (a shared machine is noisy).
    while rounds == 0 or (
        time.perf_counter() - started < args.budget_s
        and any(len(_clean(setting_runs)) < args.clean_runs for setting_runs in runs.values())
    ):
        order = settings[rounds % len(settings) :] + settings[: rounds % len(settings)]
        for size, timeout in order:
            if rounds and len(_clean(runs[size, timeout])) >= args.clean_runs:
                continue
            runs[size, timeout].append(measure(serve, images, size, timeout / 1e6, threads, args.clients, args.seconds))
        rounds += 1
    rows = {setting: summarize(*setting, runs[setting]) for setting in settings}
    baseline = rows[by_size[0]]
    for row in rows.values():
        row["vs_batch_1"] = round(row["images_per_s"] / baseline["images_per_s"], 2)
        row["cpu_vs_batch_1"] = round(row["images_per_cpu_s"] / baseline["images_per_cpu_s"], 2)
    print(
        f"Server-side batching on CPU ({model_dir}; {args.clients} clients sending batch-1 requests; "
        f"num_batch_threads={threads}; median of the clean {args.seconds:g} s runs)"
    )
    header = f"{'max_batch_size':>14} {'timeout us':>10} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'mean batch':>10}"
    print(f"{header} {'img/CPU-s':>9} {'vs 1: wall':>10} {'vs 1: CPU':>9} {'clean runs':>10}")
    for table in (by_size, by_timeout):
        print("-" * 106)
        for setting in table:
            row = rows[setting]
            print(
                f"{row['max_batch_size']:>14} {row['batch_timeout_micros']:>10} {row['images_per_s']:>9.1f} "
                f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['mean_batch']:>10.1f} "
                f"{row['images_per_cpu_s']:>9.1f} {row['vs_batch_1']:>10.2f} {row['cpu_vs_batch_1']:>9.2f} "
                f"{row['clean_runs']:>10}"
            )
    _results.write(
        args.out,
        {
            "model": model_dir,
            "clients": args.clients,
            "num_batch_threads": threads,
            "seconds": args.seconds,
            "rounds": rounds,
            "load_average_1m": [load_before, os.getloadavg()[0]],  # other work on the machine skews the numbers
            "rows": list(rows.values()),
        },
    )


if __name__ == "__main__":
    main()
