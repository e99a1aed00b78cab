"""What classifying one file can end in: a ``Prediction``, or a ``Failure`` with the reason.

Shared by the local classifiers (``predict.py``) and the TF Serving clients
(``serving_client.py``), so neither imports the other for its result types.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top classes of one image, best first."""

    path: str
    classes: list[str]
    scores: list[float]


@dataclasses.dataclass(frozen=True)
class Failure:
    """A file that got no prediction, and why."""

    path: str
    reason: str


class ImageError(ValueError):
    """The model (or TF Serving) refused one image; the message is the reason."""
