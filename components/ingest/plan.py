"""The ingest plan: every listed file checked, copies grouped, label conflicts rejected, splits assigned.

One pass over the listed files, shared by the ExampleGen executor (which then writes
what the plan decided) and the preflight (which shows the same counts before any
Beam work). It reads and decodes each file once (and the few exact-duplicate
candidates twice, for their pixel digests) and keeps only small facts per file (its
verdict, a digest of its bytes, its fingerprint, its group), never the pixels.

Copies filed under two classes are a *label conflict*: every file of such a group is
rejected (``image_files.REASON_LABEL_CONFLICT``, the detail names a copy in the other
class), because either label is a guess and any copy left in test would be graded
against a label the training copy contradicts. The other groups go whole into one
split (``components/ingest/splits.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence

import tensorflow as tf

from components.ingest import duplicates, image_files, splits

PROGRESS_EVERY = 1000


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """What the ingest does with one listed file.

    Attributes:
      found: The file.
      reason: Its rejection reason, or ``""`` when it is ingested.
      detail: More about the reason (or the conversion).
      image_format, width, height: What the decoder saw (0 when it never got there).
      file_digest: SHA-256 of the bytes checked (the executor checks it reads the same bytes).
      stored_as_is: The example holds the file's own bytes (else a converted PNG).
      group: The key (smallest relative path) of its group of copies, ``""`` without copies.
      group_kind: ``"exact"`` or ``"near"`` (duplicates.EXACT / NEAR) for a file in a group.
      split: Its split when ingested.
    """

    found: image_files.FoundFile
    reason: str = ""
    detail: str = ""
    image_format: str = ""
    width: int = 0
    height: int = 0
    file_digest: str = ""
    stored_as_is: bool = False
    group: str = ""
    group_kind: str = ""
    split: str = ""

    def record(self) -> dict:
        """Its line of ``ingest_report/files.jsonl`` (without the status the executor adds)."""
        record = {"path": self.found.relative_path, "label": self.found.label}
        if self.image_format or self.width:
            record.update(format=self.image_format, width=self.width, height=self.height)
        if self.detail:
            record["detail"] = self.detail
        if self.group:
            record.update(group=self.group, group_kind=self.group_kind)
        return record


@dataclasses.dataclass(frozen=True)
class IngestPlan:
    """Every listed file's fate, in listing order, and the split assignment of the ingested ones."""

    files: list[PlannedFile]
    assignment: splits.Assignment

    @property
    def rejected(self) -> int:
        """Files the ingest rejects."""
        return sum(1 for item in self.files if item.reason)

    def split_totals(self) -> dict[str, int]:
        """Ingested files per split."""
        return {name: sum(counts[name] for counts in self.assignment.counts.values()) for name in splits.SPLIT_NAMES}


def _check(
    found: image_files.FoundFile, limits: image_files.IngestLimits
) -> tuple[PlannedFile, duplicates.Fingerprint | None]:
    reason = image_files.precheck_reason(found)
    if reason:
        return PlannedFile(found, reason), None
    try:
        with tf.io.gfile.GFile(found.path, "rb") as handle:
            data = handle.read()
    except (OSError, tf.errors.OpError) as error:
        return PlannedFile(found, image_files.REASON_UNREADABLE_PATH, str(error)), None
    checked = image_files.check_image(data, limits, fingerprint=True)
    planned = PlannedFile(
        found,
        checked.reason,
        checked.detail,
        checked.image_format,
        checked.width,
        checked.height,
        file_digest=hashlib.sha256(data).hexdigest() if not checked.reason else "",
        stored_as_is=checked.stored_as_is,
    )
    return planned, checked.fingerprint


def _with_pixel_digests(
    planned: list[PlannedFile], prints: list[duplicates.Fingerprint | None], limits: image_files.IngestLimits
) -> list[duplicates.Fingerprint | None]:
    """The fingerprints, exact candidates' with their pixel digests (their files read and decoded once more).

    A candidate whose bytes changed since the first look keeps no digest: it is nobody's exact copy.
    """
    accepted = [index for index, fingerprint in enumerate(prints) if fingerprint is not None]
    candidates = duplicates.exact_candidates([prints[index] for index in accepted])  # type: ignore[misc]
    result = list(prints)
    for member in candidates:
        index = accepted[member]
        try:
            with tf.io.gfile.GFile(planned[index].found.path, "rb") as handle:
                data = handle.read()
        except (OSError, tf.errors.OpError):
            continue
        if hashlib.sha256(data).hexdigest() == planned[index].file_digest:
            result[index] = image_files.check_image(data, limits, fingerprint=True, pixels=True).fingerprint
    logging.debug("Pixel digests of %d exact-duplicate candidates", len(candidates))
    return result


def _conflict_detail(member: PlannedFile, members: Sequence[PlannedFile]) -> str:
    other = next(item for item in members if item.found.label != member.found.label)
    return f"same image as {other.found.relative_path} in class {other.found.label!r}"


def _grouped(
    planned: list[PlannedFile], prints: list[duplicates.Fingerprint | None], distance: int
) -> list[PlannedFile]:
    """The files with their groups set, and every file of a group that spans classes rejected."""
    accepted = [index for index, fingerprint in enumerate(prints) if fingerprint is not None]
    groups = duplicates.group([prints[index] for index in accepted], distance)  # type: ignore[misc]
    result = list(planned)
    for members, kind in groups:
        files = [planned[accepted[member]] for member in members]
        key = min(item.found.relative_path for item in files)
        conflict = len({item.found.label for item in files}) > 1
        for member, item in zip(members, files, strict=True):
            changes = {"group": key, "group_kind": kind}
            if conflict:
                changes.update(reason=image_files.REASON_LABEL_CONFLICT, detail=_conflict_detail(item, files))
            result[accepted[member]] = dataclasses.replace(item, **changes)
    return result


def plan_ingest(
    files: Iterable[image_files.FoundFile], percents: splits.SplitPercents, limits: image_files.IngestLimits
) -> IngestPlan:
    """Checks every file, groups the copies and assigns the splits.

    Args:
      files: The listed files (``image_files.list_files``).
      percents: The split shares.
      limits: The acceptance limits and the near-duplicate distance.

    Returns:
      The plan: one PlannedFile per listed file, in the same order.
    """
    listed = list(files)
    checked = []
    for index, found in enumerate(listed):
        if index and index % PROGRESS_EVERY == 0:
            logging.info("Ingest check: file %d of %d (%s)", index + 1, len(listed), found.relative_path)
        checked.append(_check(found, limits))
    first_look = [item for item, _ in checked]
    prints = _with_pixel_digests(first_look, [found for _, found in checked], limits)
    planned = _grouped(first_look, prints, limits.near_duplicate_distance)
    kept = [item for item in planned if not item.reason]
    assignment = splits.assign(
        ((item.found.relative_path, item.found.label) for item in kept),
        percents,
        {item.found.relative_path: item.group for item in kept if item.group},
    )
    with_splits = [
        dataclasses.replace(item, split=assignment.split_of[item.found.relative_path]) if not item.reason else item
        for item in planned
    ]
    return IngestPlan(files=with_splits, assignment=assignment)


# The preflight reads and checks every file (as the ingest will) up to this many files,
# about 2 s of 96x96 images on one core; above it, it shows the split of the paths as an estimate.
PREVIEW_MAX_FILES = 5_000


@dataclasses.dataclass(frozen=True)
class Preview:
    """The split counts the preflight shows: the ingest's own (``exact``) or an estimate from the paths."""

    assignment: splits.Assignment
    exact: bool
    rejected: int = 0
    duplicate_groups: int = 0
    conflict_files: int = 0
    nested_folders: dict[str, int] = dataclasses.field(default_factory=dict)
    max_files: int = PREVIEW_MAX_FILES

    def warnings(self) -> list[str]:
        """One line per sub-folder of a class folder (its files are ingested under the top class)."""
        return [
            f"{folder}/ holds {count} files: they are ingested as class {folder.split('/')[0]!r} (make it a "
            "top-level folder if it is a class of its own)"
            for folder, count in self.nested_folders.items()
        ]

    def line(self) -> str:
        """``splits: train N, validation N, test N``, saying whether the counts are the ingest's."""
        totals = {name: sum(c[name] for c in self.assignment.counts.values()) for name in splits.SPLIT_NAMES}
        shown = ", ".join(f"{name} {count}" for name, count in totals.items())
        if not self.exact:
            return (
                f"splits (estimate from the file names, over {self.max_files} files: the ingest checks every "
                f"file and groups copies, so broken files and copies can move a few): {shown}"
            )
        extra = f"; {self.rejected} files will be rejected" if self.rejected else ""
        copies = f", {self.duplicate_groups} groups of copies" if self.duplicate_groups else ""
        conflicts = f", {self.conflict_files} files in label conflicts" if self.conflict_files else ""
        return f"splits (as the ingest will write them): {shown}{extra}{copies}{conflicts}"


def preview(
    files: Sequence[image_files.FoundFile],
    percents: splits.SplitPercents,
    limits: image_files.IngestLimits,
    max_files: int = PREVIEW_MAX_FILES,
) -> Preview:
    """The ingest's plan for up to ``max_files`` files (exact counts), else the split of the paths (an estimate)."""
    nested = collections.Counter(folder for item in files if (folder := image_files.nested_folder(item.relative_path)))
    if len(files) > max_files:
        candidates = ((item.relative_path, item.label) for item in files if not image_files.precheck_reason(item))
        return Preview(
            splits.assign(candidates, percents), False, nested_folders=dict(sorted(nested.items())), max_files=max_files
        )
    planned = plan_ingest(files, percents, limits)
    return Preview(
        assignment=planned.assignment,
        exact=True,
        nested_folders=dict(sorted(nested.items())),
        rejected=planned.rejected,
        duplicate_groups=len({item.group for item in planned.files if item.group}),
        conflict_files=sum(1 for item in planned.files if item.reason == image_files.REASON_LABEL_CONFLICT),
    )
