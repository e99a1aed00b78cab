"""TFX's Tuner executor, with every trial recorded in MLMD (``trials.py``).

The search is TFX 1.21's own (``tfx/components/tuner/executor.py``: ``search`` calls the
user module's ``tuner_fn`` and runs ``tuner.search``; ``write_best_hyperparameters``
writes ``best_hyperparameters.txt`` into the HyperParameters artifact and
``tuner_results.json``, the completed trials by score, into the TunerResults
artifact). After it, this executor writes ``trials.json`` (every trial in the order
it ran, with its status and seconds) and the artifacts' custom properties. A search
in which no trial completed fails the step: TFX would hand the Trainer a failed
trial's values as the best.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tfx.components.tuner import executor as tfx_tuner_executor
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from components.modules.tuning_settings import TunerConfig
from components.tuner import trials


class TunerExecutor(tfx_tuner_executor.Executor):
    """Runs TFX's search, then records its trials."""

    def Do(  # noqa: N802 (TFX API)
        self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]
    ) -> None:
        """Searches, writes the best hyperparameters and TFX's results, then ``trials.json`` and the properties.

        Raises:
          RuntimeError: If no trial completed (each failed trial's last error line is in the message).
        """
        if tfx_tuner_executor.get_tune_args(exec_properties):
            raise ValueError("TuneArgs (parallel trials) is not supported by this Tuner's executor.")
        config = TunerConfig.model_validate(
            json_utils.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
        )
        started = time.monotonic()
        tuner = tfx_tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir())
        result = trials.from_oracle(
            tuner.oracle, config.tuning, config.tuning.epochs_per_trial(config.trainer), time.monotonic() - started
        )
        best = result.best
        if best is None:
            errors = "; ".join(f"trial {trial.trial_id}: {trial.error or trial.status}" for trial in result.trials)
            raise RuntimeError(f"No tuning trial completed ({errors}); the full tracebacks are in the log.")
        tfx_tuner_executor.write_best_hyperparameters(tuner, output_dict)
        trials.write(
            result,
            output_dict[standard_component_specs.TUNER_RESULTS_KEY][0],
            output_dict[standard_component_specs.BEST_HYPERPARAMETERS_KEY][0],
        )
        logging.info(
            "Tuning: %d of %d trials completed in %.0f s (stopped by %s); best trial %s, validation accuracy %.4f",
            len(result.completed),
            len(result.trials),
            result.seconds,
            result.stopped_by,
            best.trial_id,
            best.score,
        )
