"""Can the test split decide "no worse than served"? A preflight note with the numbers when it cannot.

The gate compares the candidate's test accuracy with the served model's on the
same images (and, in ``served_test_evaluator``, on the served version's own test
split). Two models near accuracy ``p`` whose mistakes are independent disagree on
about ``2 p (1 - p)`` of the images, so on ``n`` images their accuracy difference
has a standard error of ``sqrt(2 p (1 - p) / n)``; a drop below 1.96 of those
cannot be told from chance at 95% (``components/evaluation/accuracy.py``,
``detectable_drop``). When that detectable drop is larger than the tolerance, the
comparison decides on noise: an equally good candidate fails it, a worse one
passes.

The tolerance is ``max_accuracy_drop``, but at least :data:`MIN_RESOLUTION`:
with the default ``max_accuracy_drop`` 0.0 no finite split resolves "exactly no
worse", so the note is kept for splits that cannot even see a drop of five points
of accuracy, one that a user would want the gate to catch (the demo's 78 test
images at 0.974 resolve 0.050, just enough; 21 images at 0.9 only 0.181).

``p`` is the served version's test accuracy at push time (its push info), the
number the comparison will most likely see; 0.5 (the widest case) where it
recorded none. With nothing served there is no comparison, and no note.
"""

from __future__ import annotations

from components.evaluation.accuracy import detectable_drop, examples_to_detect
from components.serving import labels, repository, sidecars
from pipeline.config.pipeline_config import PipelineConfig

# The smallest drop the comparison should resolve, whatever max_accuracy_drop says.
MIN_RESOLUTION = 0.05
_UNKNOWN_ACCURACY = 0.5


def gate_power_notes(config: PipelineConfig, test_examples: int) -> list[str]:
    """One sentence per test split too small to decide "no worse than served"; none with nothing served.

    Args:
      config: The run's config (serving directory, model name, ``max_accuracy_drop``).
      test_examples: Images this run's test split will hold.
    """
    served = labels.served_version(config.serving_dir, config.model_name)
    if served is None:
        return []
    version, _ = served
    info = sidecars.read_push_info(repository.version_path(config.model_push_dir, version))
    accuracy = info.accuracy if info.accuracy is not None else _UNKNOWN_ACCURACY
    at = (
        f"the served version {version}'s accuracy {accuracy:.3f}"
        if info.accuracy is not None
        else f"accuracy {accuracy:.1f} (version {version} recorded none)"
    )
    splits = [("this run's test split", test_examples)]
    if info.test_examples:
        splits.append((f"version {version}'s own test split", info.test_examples))
    tolerance = max(config.max_accuracy_drop, MIN_RESOLUTION)
    return [
        _note(name, examples, accuracy, at, config.max_accuracy_drop, tolerance)
        for name, examples in splits
        if detectable_drop(accuracy, examples) > tolerance
    ]


def _note(name: str, examples: int, accuracy: float, at: str, max_drop: float, tolerance: float) -> str:
    drop = detectable_drop(accuracy, examples)
    return (
        f"{name} has {examples} images: at {at}, 'no worse than served' cannot tell a drop under {drop:.3f} "
        f"from chance (95%), more than max_accuracy_drop {max_drop:.3f} allows (resolving {tolerance:.3f} "
        f"takes about {examples_to_detect(accuracy, tolerance)} test images), so that comparison decides on "
        "noise. Add images, raise test_percent, or raise max_accuracy_drop"
    )
