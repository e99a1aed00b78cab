"""The pipeline's Tuner: TFX's Tuner component with :class:`TunerExecutor` (see ``executor.py``).

Same spec, inputs and outputs as ``tfx.components.Tuner`` (TFX 1.21,
``tfx/components/tuner/component.py``): ``best_hyperparameters`` (a HyperParameters
artifact, ``best_hyperparameters.txt``: the KerasTuner config the Trainer's
``hyperparameters`` input reads) and ``tuner_results`` (a TunerResults artifact, TFX's
``tuner_results.json`` and this pipeline's ``trials.json``, ``trials.py``). The user
module is ``components/modules/tuner.py``; its trials read ``train`` and
``validation`` only. The pipeline adds it when ``tuning.trials`` is above 0
(``pipeline/graph/pipeline.py``); on Kubeflow it runs with the Trainer's resources,
its GPU included (``kubeflow/runner.py``).
"""

from __future__ import annotations

from tfx.components import Tuner
from tfx.dsl.components.base import executor_spec

from components.tuner.executor import TunerExecutor

BEST_HYPERPARAMETERS_KEY = "best_hyperparameters"
TUNER_RESULTS_KEY = "tuner_results"


class TrialsTuner(Tuner):
    """``tfx.components.Tuner`` whose executor records every trial in MLMD."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TunerExecutor)
