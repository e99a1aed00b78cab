"""Train / validation / test: which image goes where.

The one home of the split names and of the assignment rule, used by the ExampleGen
(which writes the splits), the preflight (which shows them before any work) and
the pipeline (which feeds ``train``/``validation`` to the Trainer and ``test`` to
the Evaluator only).

Rule: copies of one image (``components/ingest/duplicates.py``) form a group, and a
group's split follows from a hash of its key (its smallest path relative to the
class root; a file without copies is a group of its own, keyed by its path), so
copies never straddle train and test, the split is deterministic, and a file
does not move when other files are added (unless a copy of it with a smaller
path joins its group). Then, per class, a split left empty takes one group from
the fullest split (the group whose hash is nearest to the empty split's range),
so a class with at least three groups is in all three splits; smaller classes
fill train, then test, then validation, and the assignment says which split each
such class lacks.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Iterable, Mapping

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


def _assign_class(groups: dict[str, list[str]], ranges: dict[str, tuple[float, float]]) -> dict[str, str]:
    """Group key -> split for one class's groups (a lone file is a group of one, keyed by its path)."""
    positions = {key: hash_position(key) for key in groups}
    split_of = {
        key: next((name for name, (low, high) in ranges.items() if low <= position < high), TRAIN)
        for key, position in positions.items()
    }
    wanted = _FILL_ORDER[: len(groups)]
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
            (key for key, split in split_of.items() if split == donor),
            key=lambda key: (_distance(positions[key], ranges[needed]), key),
        )
        split_of[moved] = needed
    return split_of


def assign(
    files: Iterable[tuple[str, str]], percents: SplitPercents, group_of: Mapping[str, str] | None = None
) -> Assignment:
    """Assigns each (relative path, class) to a split, copies of one image together.

    Args:
      files: The candidate files with their class.
      percents: The split shares.
      group_of: Relative path -> key of its group of copies (``components/ingest/duplicates.py``;
        the plan uses the group's smallest path). A group goes whole into the split its key
        hashes to; a path not in the mapping is a group of its own.

    Returns:
      The assignment, with per-class counts (of files) and notes for classes with
      too few groups for all three splits.
    """
    group_of = group_of or {}
    by_class: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for path, label in files:
        by_class[label][group_of.get(path, path)].append(path)
    ranges = _ranges(percents)
    split_of: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    notes = []
    for label in sorted(by_class):
        groups = dict(sorted(by_class[label].items()))
        assigned = {path: split for key, split in _assign_class(groups, ranges).items() for path in groups[key]}
        split_of.update(assigned)
        members = collections.Counter(assigned.values())
        counts[label] = {name: members[name] for name in SPLIT_NAMES}
        lacking = [name for name in SPLIT_NAMES if not members[name]]
        if lacking:
            copies = f" in {len(groups)} group(s) of copies" if len(groups) < len(assigned) else ""
            notes.append(
                f"class {label!r} has {len(assigned)} image(s){copies}, too few for every split: no "
                f"{' and no '.join(lacking)} images (add images to this class)"
            )
    return Assignment(split_of=split_of, counts=counts, notes=notes)
