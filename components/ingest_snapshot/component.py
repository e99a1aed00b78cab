"""The Kubeflow spec's first step: the span the ExampleGen will read and a fingerprint of its files.

Open-source Kubeflow Pipelines never runs ``lifecycle.preCacheCheck``, where TFX
puts its FileBasedExampleGen driver, and its cache key holds input artifact
names, input parameter values, output specs, image, command and args
(kubeflow/pipelines ``backend/src/v2/cacheutils/cache.go``, ``GenerateCacheKey``).
An ExampleGen whose parameters are all constants would therefore be served from
the cache after a new span drop. This step (never cached) writes the span, the
span-resolved ``input_config`` and the input fingerprint as output parameters;
``kubeflow/runner.py`` (``with_ingest_snapshot``) wires them into the
ExampleGen's parameters, so its cache key changes exactly when the files do.

What the KFP runner needs to wire the step is here; the step itself is
``components/ingest_snapshot/executor.py``, run as
``python -m components.ingest_snapshot.executor --executor_input '{{$}}'``.
"""

from __future__ import annotations

from components.ingest_snapshot import executor

# Output parameter -> KFP parameter type.
OUTPUT_PARAMETERS = executor.OUTPUT_PARAMETERS
# The ExampleGen parameters it reads.
INPUT_PARAMETERS = executor.INPUT_PARAMETERS
