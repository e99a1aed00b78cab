"""Train / validation / test: which image goes where.

The one home of the split names and of the assignment rule, used by the ExampleGen
(which writes the splits), the preflight (which shows them before any work) and
the pipeline (which feeds ``train``/``validation`` to the Trainer and ``test`` to
the Evaluator only).

Rule: a file's split follows from a hash of its path relative to the class root,
so it is deterministic and does not move when other files are added. Then, per
class, a split left empty takes one file from the fullest split (the file whose
hash is nearest to the empty split's range), so a class with at least three
images is in all three splits; smaller classes fill train, then test, then
validation, and the assignment says which split each such class lacks.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Iterable

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
SPLIT_NAMES = (TRAIN, VALIDATION, TEST)
# Which split a small class gets first: a model needs training images, a class
# without test images cannot be judged, validation only steers training.
_FILL_ORDER = (TRAIN, TEST, VALIDATION)
_HASH_RANGE = 10_000
MIN_TRAIN_PERCENT = 50
DEFAULT_VALIDATION_PERCENT = 15
DEFAULT_TEST_PERCENT = 15


@dataclasses.dataclass(frozen=True)
class SplitPercents:
    """Shares of each class per split, in percent.

    Raises:
      ValueError: If a share is outside [1, 40] or train would get less than MIN_TRAIN_PERCENT.
    """

    validation: int = DEFAULT_VALIDATION_PERCENT
    test: int = DEFAULT_TEST_PERCENT

    def __post_init__(self) -> None:
        for name in (VALIDATION, TEST):
            share = getattr(self, name)
            if not 1 <= share <= 40:
                raise ValueError(f"{name}_percent must be in [1, 40]. Received: {name}_percent={share}")
        if self.train < MIN_TRAIN_PERCENT:
            raise ValueError(
                f"validation_percent + test_percent leave {self.train}% for training; keep at least "
                f"{MIN_TRAIN_PERCENT}%. Received: validation_percent={self.validation}, test_percent={self.test}"
            )

    @property
    def train(self) -> int:
        """What validation and test leave."""
        return 100 - self.validation - self.test

    def as_dict(self) -> dict[str, int]:
        """Split name -> percent, in SPLIT_NAMES order."""
        return {TRAIN: self.train, VALIDATION: self.validation, TEST: self.test}


@dataclasses.dataclass(frozen=True)
class Assignment:
    """The split of every file, and what small classes lack.

    Attributes:
      split_of: Relative path -> split name.
      counts: Class -> split name -> files.
      notes: One line per class that misses a split, saying why.
    """

    split_of: dict[str, str]
    counts: dict[str, dict[str, int]]
    notes: list[str]

    def missing(self, split: str) -> list[str]:
        """Classes without a file in ``split``."""
        return [label for label, counts in self.counts.items() if not counts[split]]


def hash_position(relative_path: str) -> float:
    """A stable position in [0, 1) from the path (SHA-256, as TFX's own split)."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()
    return (int(digest, 16) % _HASH_RANGE) / _HASH_RANGE


def _ranges(percents: SplitPercents) -> dict[str, tuple[float, float]]:
    ranges, start = {}, 0.0
    for name, share in percents.as_dict().items():
        ranges[name] = (start, start + share / 100)
        start += share / 100
    return ranges


def _distance(position: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return 0.0 if low <= position < high else min(abs(position - low), abs(position - high))


def _assign_class(paths: list[str], ranges: dict[str, tuple[float, float]]) -> dict[str, str]:
    positions = {path: hash_position(path) for path in paths}
    split_of = {
        path: next((name for name, (low, high) in ranges.items() if low <= position < high), TRAIN)
        for path, position in positions.items()
    }
    wanted = _FILL_ORDER[: len(paths)]
    for needed in wanted:
        members = collections.Counter(split_of.values())
        if members[needed]:
            continue
        # A split this class cannot fill gives first, then the fullest one.
        donor = max(
            (name for name in SPLIT_NAMES if members[name] > (name in wanted)),
            key=lambda name: (name not in wanted, members[name], name),
        )
        moved = min(
            (path for path, split in split_of.items() if split == donor),
            key=lambda path: (_distance(positions[path], ranges[needed]), path),
        )
        split_of[moved] = needed
    return split_of


def assign(files: Iterable[tuple[str, str]], percents: SplitPercents) -> Assignment:
    """Assigns each (relative path, class) to a split.

    Args:
      files: The candidate files (already past the path checks) with their class.
      percents: The split shares.

    Returns:
      The assignment, with per-class counts and notes for classes too small for
      all three splits.
    """
    by_class: dict[str, list[str]] = collections.defaultdict(list)
    for path, label in files:
        by_class[label].append(path)
    ranges = _ranges(percents)
    split_of: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    notes = []
    for label in sorted(by_class):
        assigned = _assign_class(sorted(by_class[label]), ranges)
        split_of.update(assigned)
        members = collections.Counter(assigned.values())
        counts[label] = {name: members[name] for name in SPLIT_NAMES}
        lacking = [name for name in SPLIT_NAMES if not members[name]]
        if lacking:
            notes.append(
                f"class {label!r} has {len(assigned)} image(s), too few for every split: no {' and no '.join(lacking)} "
                "images (add images to this class)"
            )
    return Assignment(split_of=split_of, counts=counts, notes=notes)
