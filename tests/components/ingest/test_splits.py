"""Train / validation / test assignment: every file in exactly one split, every class in every split."""

from __future__ import annotations

import collections

import pytest

from components.ingest import splits

PERCENTS = splits.SplitPercents(validation=15, test=15)


def _files(per_class: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{label}/{index:04d}.jpg", label) for label, count in per_class.items() for index in range(count)]


def test_every_file_lands_in_exactly_one_split_and_counts_add_up() -> None:
    files = _files({"cat": 400, "dog": 250, "fox": 37})
    assignment = splits.assign(files, PERCENTS)
    assert set(assignment.split_of) == {path for path, _ in files}
    assert set(assignment.split_of.values()) == set(splits.SPLIT_NAMES)
    for label, count in {"cat": 400, "dog": 250, "fox": 37}.items():
        assert sum(assignment.counts[label].values()) == count
    shares = collections.Counter(assignment.split_of.values())
    assert abs(shares["train"] / len(files) - 0.70) < 0.05
    assert abs(shares["test"] / len(files) - 0.15) < 0.04
    assert assignment.notes == []


def test_small_classes_reach_every_split_where_possible() -> None:
    assignment = splits.assign(_files({"big": 100, "three": 3, "two": 2, "one": 1}), PERCENTS)
    assert assignment.counts["three"] == {"train": 1, "validation": 1, "test": 1}
    assert assignment.counts["two"] == {"train": 1, "validation": 0, "test": 1}
    assert assignment.counts["one"] == {"train": 1, "validation": 0, "test": 0}
    assert assignment.missing("validation") == ["one", "two"] and assignment.missing("test") == ["one"]
    assert len(assignment.notes) == 2
    assert any("'one' has 1 image(s)" in note and "no validation and no test" in note for note in assignment.notes)


def test_assignment_is_deterministic_and_stable_when_files_are_added() -> None:
    before = splits.assign(_files({"cat": 200, "dog": 200}), PERCENTS)
    again = splits.assign(list(reversed(_files({"cat": 200, "dog": 200}))), PERCENTS)
    after = splits.assign(_files({"cat": 260, "dog": 230}), PERCENTS)
    assert again.split_of == before.split_of
    assert all(after.split_of[path] == split for path, split in before.split_of.items())


def test_percents_are_checked() -> None:
    with pytest.raises(ValueError, match="test_percent must be in"):
        splits.SplitPercents(validation=10, test=0)
    with pytest.raises(ValueError, match="leave 40% for training"):
        splits.SplitPercents(validation=30, test=30)


def test_a_group_of_copies_goes_whole_into_the_split_of_its_key() -> None:
    files = _files({"cat": 300})
    group_of = {path: "cat/0000.jpg" for path, _ in files[:40]}  # 40 copies of one image
    assignment = splits.assign(files, PERCENTS, group_of)
    alone = splits.assign([("cat/0000.jpg", "cat")] + files[40:], PERCENTS)
    assert {assignment.split_of[path] for path in group_of} == {alone.split_of["cat/0000.jpg"]}
    assert sum(assignment.counts["cat"].values()) == 300


def test_a_small_class_counts_groups_not_files_when_filling_splits() -> None:
    files = _files({"few": 4})
    group_of = {"few/0001.jpg": "few/0000.jpg", "few/0002.jpg": "few/0000.jpg"}  # two groups: 0000-0002, 0003
    assignment = splits.assign(files, PERCENTS, group_of)
    assert len({assignment.split_of[path] for path in ("few/0000.jpg", "few/0001.jpg", "few/0002.jpg")}) == 1
    assert assignment.split_of["few/0003.jpg"] != assignment.split_of["few/0000.jpg"]
    assert assignment.missing("validation") == ["few"]
    assert "'few' has 4 image(s) in 2 group(s) of copies, too few for every split: no validation" in assignment.notes[0]
