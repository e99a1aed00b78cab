"""Beam's SDK worker pool on loopback only, for the portable-runner test.

``python -m apache_beam.runners.worker.worker_pool_main`` serves on every interface
(``'[::]:%s' % port`` in ``BeamFnExternalWorkerPoolServicer.start``,
apache_beam/runners/worker/worker_pool_main.py). This serves the same servicer on
127.0.0.1 alone: each ``StartWorker`` request of a job (``--environment_type=EXTERNAL``)
starts one SDK harness process, ``python -c "...SdkHarness(...).run()"`` with the
``python`` on ``PATH`` (the caller puts this venv's first), which runs until its job ends.

    python tests/beam_worker_pool.py --port-file FILE

writes the port it listens on to FILE once it serves, and serves until it is killed.
"""

from __future__ import annotations

import argparse
import logging
import os

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker import worker_pool_main
from apache_beam.utils import thread_pool_executor


def serve(port_file: str) -> None:
    """Serves the worker pool on a free loopback port, written to ``port_file``; never returns."""
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    servicer = worker_pool_main.BeamFnExternalWorkerPoolServicer(use_process=True)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(f"{port_file}.tmp", "w") as handle:
        handle.write(str(port))
    os.replace(f"{port_file}.tmp", port_file)  # whole, or not there yet
    logging.info("SDK worker pool listening on 127.0.0.1:%d", port)
    server.wait_for_termination()


def main() -> None:
    """Parses ``--port-file`` and serves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    logging.basicConfig(level=logging.INFO)
    serve(parser.parse_args().port_file)


if __name__ == "__main__":
    main()
