"""How sure a test accuracy is: the 95% Wilson score interval, and when two accuracies surely differ.

Used by the Pusher (is the served model's accuracy on the new test split out of
line with its accuracy at push time?) and by the reports.
"""

from __future__ import annotations

import math

Z95 = 1.96  # two-sided 95% normal quantile


def accuracy_interval(accuracy: float, examples: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``examples`` images."""
    if examples <= 0:
        return 0.0, 1.0
    denominator = 1 + Z95**2 / examples
    centre = (accuracy + Z95**2 / (2 * examples)) / denominator
    half = Z95 * math.sqrt(accuracy * (1 - accuracy) / examples + Z95**2 / (4 * examples**2)) / denominator
    return max(centre - half, 0.0), min(centre + half, 1.0)


def surely_lower(now: float, now_examples: int, before: float, before_examples: int) -> bool:
    """Whether accuracy ``now`` is below ``before`` beyond doubt: their 95% intervals do not overlap.

    Two disjoint 95% Wilson intervals mean a difference far past chance (for two
    independent samples, a two-sided p below about 0.006): a model whose accuracy
    on new test images falls that far below its own accuracy at push time was
    not made worse by training, so the images or their labels changed.
    """
    return accuracy_interval(now, now_examples)[1] < accuracy_interval(before, before_examples)[0]


def majority_class_rate(per_class_examples: dict[str, int]) -> tuple[str, float] | None:
    """The most frequent class and its share: what always answering that class scores (None: no examples)."""
    total = sum(per_class_examples.values())
    if total <= 0:
        return None
    label = max(sorted(per_class_examples), key=lambda name: per_class_examples[name])
    return label, per_class_examples[label] / total


def detectable_drop(accuracy: float, examples: int) -> float:
    """The smallest difference between two models' accuracies on the same ``examples`` images seen at 95%.

    Two models near ``accuracy`` whose mistakes are independent disagree on about
    ``2 p (1 - p)`` of the images, so the standard error of their accuracy
    difference on one split is ``sqrt(2 p (1 - p) / n)`` (McNemar's); a drop below
    1.96 of those is within noise. Models whose mistakes overlap disagree less,
    so this errs on the side of asking for more images. Never below one image.
    """
    if examples <= 0:
        return 1.0
    return max(Z95 * math.sqrt(2 * accuracy * (1 - accuracy) / examples), 1 / examples)


def examples_to_detect(accuracy: float, drop: float) -> int:
    """Test images for :func:`detectable_drop` at ``accuracy`` to reach ``drop``."""
    return max(math.ceil(Z95**2 * 2 * accuracy * (1 - accuracy) / drop**2), math.ceil(1 / drop))
