"""The ImageFolder ExampleGen executor on a tiny folder with good and bad files."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image
from tfx.types import standard_artifacts

from components.example_gen import component as image_example_gen
from components.example_gen import executor as image_example_gen_executor
from components.ingest import image_files, plan, splits
from components.ingest import summary as ingest_summary
from components.modules import features
from tests.helpers import encode, solid, write


def _run_executor(data_root: str, output_uri: str) -> standard_artifacts.Examples:
    return image_example_gen.run_executor(
        data_root, output_uri, splits.SplitPercents(validation=15, test=15), image_files.IngestLimits(min_side=8)
    )


def _read_split(uri: str, split: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def _value(example: tf.train.Example, key: str) -> bytes:
    return example.features.feature[key].bytes_list.value[0]


def _make_folder(root: str) -> dict[str, str]:
    """12 good images over 2 classes and one of each kind of bad file."""
    for index in range(6):  # a tint per image: each has its own noise, so none is a copy of another
        write(os.path.join(root, "red", f"r{index}.jpg"), encode(solid((220, 20 + index, 20)), "JPEG"))
        write(os.path.join(root, "blue", f"b{index}.png"), encode(solid((20, 20, 220 + index)), "PNG"))
    bad = {
        "red/empty.jpg": b"",
        "red/notes.jpg": b"not an image at all",
        "blue/cut.png": encode(solid((1, 1, 1)), "PNG")[:50],
        "blue/tiny.png": encode(solid((1, 1, 1), size=3), "PNG"),
        "stray.jpg": encode(solid((1, 1, 1)), "JPEG"),
        "blue/.hidden.png": encode(solid((1, 1, 1)), "PNG"),
    }
    for relative, data in bad.items():
        write(os.path.join(root, relative), data)
    os.symlink(os.path.join(root, "gone.png"), os.path.join(root, "red", "dangling.png"))
    bad["red/dangling.png"] = b""
    return bad


def test_every_file_is_ingested_or_rejected_with_a_reason(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "data")
    bad = _make_folder(root)
    examples = _run_executor(root, os.path.join(str(tmp_path), "out"))

    by_split = {name: _read_split(examples.uri, name) for name in splits.SPLIT_NAMES}
    ingested = [example for examples_of_split in by_split.values() for example in examples_of_split]
    assert len(ingested) == 12
    assert collections.Counter(_value(e, features.LABEL_KEY) for e in ingested) == {b"red": 6, b"blue": 6}
    paths = [_value(e, features.PATH_KEY).decode() for e in ingested]
    # Every image in exactly one split, and each class (6 images) in all three.
    assert sorted(paths) == sorted([f"red/r{i}.jpg" for i in range(6)] + [f"blue/b{i}.png" for i in range(6)])
    for name, examples_of_split in by_split.items():
        assert {_value(e, features.LABEL_KEY) for e in examples_of_split} == {b"red", b"blue"}, name
    # The stored bytes decode to the original image.
    first = next(e for e in ingested if _value(e, features.PATH_KEY) == b"blue/b0.png")
    assert _value(first, features.IMAGE_KEY) == encode(solid((20, 20, 220)), "PNG")

    summary = ingest_summary.read(examples.uri)
    assert summary.files_seen == 12 + len(bad) == summary.ingested + summary.rejected
    assert summary.class_counts == {"blue": 6, "red": 6}
    assert summary.split_counts == {name: len(by_split[name]) for name in splits.SPLIT_NAMES}
    assert sum(summary.split_counts.values()) == summary.ingested
    assert summary.notes == []
    assert (summary.duplicate_groups, summary.nested_files) == (0, 0)
    with open(os.path.join(ingest_summary.report_dir(examples.uri), ingest_summary.REPORT_FILES)) as handle:
        rejected = {r["path"]: r["reason"] for r in map(json.loads, handle) if r["status"] == "rejected"}
    assert rejected == {
        "red/empty.jpg": image_files.REASON_EMPTY,
        "red/notes.jpg": image_files.REASON_NOT_IMAGE,
        "blue/cut.png": image_files.REASON_TRUNCATED,
        "blue/tiny.png": image_files.REASON_TOO_SMALL,
        "stray.jpg": image_files.REASON_TOP_LEVEL,
        "blue/.hidden.png": image_files.REASON_HIDDEN,
        "red/dangling.png": image_files.REASON_UNREADABLE_PATH,
    }
    # MLMD sees the counts as artifact properties.
    assert examples.get_int_custom_property("ingested") == 12
    assert examples.get_int_custom_property("rejected") == len(bad)


def test_split_is_deterministic_and_a_small_class_is_reported(tmp_path: object) -> None:
    root = os.path.join(str(tmp_path), "data")
    _make_folder(root)
    write(os.path.join(root, "green", "g0.png"), encode(solid((20, 220, 20)), "PNG"))
    runs = [_run_executor(root, os.path.join(str(tmp_path), f"out{i}")) for i in range(2)]
    for name in splits.SPLIT_NAMES:
        paths = [{_value(e, features.PATH_KEY) for e in _read_split(run.uri, name)} for run in runs]
        assert paths[0] == paths[1], name
    summary = ingest_summary.read(runs[0].uri)
    assert summary.class_split_counts["green"] == {"train": 1, "validation": 0, "test": 0}
    assert summary.notes == [
        "class 'green' has no validation images (1 ingested)",
        "class 'green' has no test images (1 ingested)",
    ]


@pytest.mark.parametrize(
    ("beam_args", "spreads"),
    [
        ([], False),
        (["--runner=FnApiRunner"], False),
        (["--runner=DirectRunner", "--direct_num_workers=1"], False),
        (["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
        (["--direct_num_workers=0"], False),  # in_memory mode: one worker whatever the count
        (["--direct_running_mode=multi_threading", "--direct_num_workers=0"], True),  # one per core
        (["--runner=DataflowRunner"], True),
    ],
)
def test_the_file_list_is_reshuffled_only_for_several_workers(beam_args: list[str], spreads: bool) -> None:
    assert image_example_gen_executor.spreads_over_workers(PipelineOptions(beam_args)) is spreads


def test_several_workers_ingest_every_file_once(tmp_path: object) -> None:
    root = str(tmp_path / "data")
    _make_folder(root)
    one = _run_executor(root, str(tmp_path / "one"))
    threads = image_example_gen.run_executor(
        root,
        str(tmp_path / "threads"),
        splits.SplitPercents(validation=15, test=15),
        image_files.IngestLimits(min_side=8),
        beam_args=["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
    )
    for split in splits.SPLIT_NAMES:
        paths = [_value(example, features.PATH_KEY) for example in _read_split(threads.uri, split)]
        assert len(paths) == len(set(paths))
        assert sorted(paths) == sorted(_value(example, features.PATH_KEY) for example in _read_split(one.uri, split))
    assert threads.get_int_custom_property("ingested") == one.get_int_custom_property("ingested") == 12


def test_written_examples_interleave_the_classes_the_same_way_every_run(tmp_path: object) -> None:
    root = str(tmp_path / "data")
    for label in ("a", "b", "c"):
        for index in range(20):
            write(
                os.path.join(root, label, f"{index:02d}.png"), encode(solid((10 * index, 20 + ord(label), 30)), "PNG")
            )
    first, second = (_run_executor(root, str(tmp_path / name)) for name in ("first", "second"))
    labels = [_value(example, features.LABEL_KEY) for example in _read_split(first.uri, splits.TRAIN)]
    changes = sum(1 for before, after in zip(labels, labels[1:], strict=False) if before != after)
    assert changes > len(labels) // 3  # class-sorted records would change label twice
    paths = [_value(example, features.PATH_KEY) for example in _read_split(first.uri, splits.TRAIN)]
    assert paths == [_value(example, features.PATH_KEY) for example in _read_split(second.uri, splits.TRAIN)]


def _picture(seed: int, size: int = 64) -> Image.Image:
    """A smooth random picture (coarse noise, enlarged), unlike any other seed's."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _planted_copies(root: str) -> None:
    """Three classes of distinct pictures, with copies planted in and across classes."""
    for label_index, label in enumerate(("a", "b", "c")):
        for index in range(6):
            write(os.path.join(root, label, f"{index}.png"), encode(_picture(100 * label_index + index), "PNG"))
    write(os.path.join(root, "a", "copy_of_0.bmp"), encode(_picture(0), "BMP"))  # exact: same pixels, other format
    write(os.path.join(root, "a", "smaller_1.png"), encode(_picture(1).resize((40, 40)), "PNG"))  # resized
    write(os.path.join(root, "a", "q95_2.jpg"), encode(_picture(2), "JPEG", quality=95))
    write(os.path.join(root, "a", "q40_2.jpg"), encode(_picture(2), "JPEG", quality=40))  # re-encoded
    write(os.path.join(root, "b", "also_a3.png"), encode(_picture(3), "PNG"))  # exact copy in another class
    write(os.path.join(root, "c", "b4_smaller.jpg"), encode(_picture(104).resize((48, 48)), "JPEG", quality=80))
    write(os.path.join(root, "a", "extra", "nested.png"), encode(_picture(7), "PNG"))
    write(os.path.join(root, ".DS_Store"), b"\0\0\0\1Bud1")


def _report(examples: standard_artifacts.Examples) -> dict[str, dict]:
    with open(os.path.join(ingest_summary.report_dir(examples.uri), ingest_summary.REPORT_FILES)) as handle:
        return {record["path"]: record for record in map(json.loads, handle)}


def test_copies_go_whole_into_one_split_and_label_conflicts_are_rejected(tmp_path: object) -> None:
    root = str(tmp_path / "data")
    _planted_copies(root)
    examples = _run_executor(root, str(tmp_path / "out"))
    report = _report(examples)
    groups: dict[str, set[str]] = collections.defaultdict(set)
    for record in report.values():
        if record.get("group"):
            groups[record["group"]].add(record["path"])
    assert sorted(map(sorted, groups.values())) == [
        ["a/0.png", "a/copy_of_0.bmp"],
        ["a/1.png", "a/smaller_1.png"],
        ["a/2.png", "a/q40_2.jpg", "a/q95_2.jpg"],
        ["a/3.png", "b/also_a3.png"],
        ["b/4.png", "c/b4_smaller.jpg"],
    ]
    assert report["a/copy_of_0.bmp"]["group_kind"] == report["b/also_a3.png"]["group_kind"] == "exact"
    assert report["a/smaller_1.png"]["group_kind"] == report["a/q40_2.jpg"]["group_kind"] == "near"
    for members in groups.values():  # each group in one split (or all rejected)
        assert len({report[path].get("split", "rejected") for path in members}) == 1, members
    conflicts = {path: record for path, record in report.items() if record.get("reason") == "label conflict"}
    assert set(conflicts) == {"a/3.png", "b/also_a3.png", "b/4.png", "c/b4_smaller.jpg"}
    assert conflicts["b/also_a3.png"]["detail"] == "same image as a/3.png in class 'a'"
    assert conflicts["b/4.png"]["detail"] == "same image as c/b4_smaller.jpg in class 'c'"
    written = {
        _value(e, features.PATH_KEY).decode() for name in splits.SPLIT_NAMES for e in _read_split(examples.uri, name)
    }
    assert not written & set(conflicts)
    assert report[".DS_Store"]["reason"] == image_files.REASON_HIDDEN
    assert report["a/extra/nested.png"]["status"] == "ingested" and report["a/extra/nested.png"]["label"] == "a"

    summary = ingest_summary.read(examples.uri)
    assert summary.files_seen == len(report) == summary.ingested + summary.rejected == 26
    assert summary.ingested == len(written) == 21
    assert (summary.duplicate_groups, summary.images_in_duplicate_groups) == (5, 11)
    assert (summary.label_conflict_groups, summary.label_conflict_files) == (2, 4)
    assert summary.rejected_by_reason == {image_files.REASON_HIDDEN: 1, image_files.REASON_LABEL_CONFLICT: 4}
    assert (summary.nested_files, summary.nested_folders) == (1, {"a/extra": 1})
    assert [group.conflict for group in summary.duplicate_examples] == [True, True, False, False, False]
    assert examples.get_int_custom_property("label_conflict_files") == 4
    assert examples.get_int_custom_property("duplicate_groups") == 5


def test_near_duplicates_off_groups_only_exact_copies(tmp_path: object) -> None:
    root = str(tmp_path / "data")
    _planted_copies(root)
    examples = image_example_gen.run_executor(
        root, str(tmp_path / "out"), limits=image_files.IngestLimits(near_duplicate_distance=-1)
    )
    report = _report(examples)
    assert sorted(path for path, record in report.items() if record.get("group")) == [
        "a/0.png",
        "a/3.png",
        "a/copy_of_0.bmp",
        "b/also_a3.png",
    ]
    assert report["a/smaller_1.png"]["status"] == report["c/b4_smaller.jpg"]["status"] == "ingested"
    summary = ingest_summary.read(examples.uri)
    assert (summary.duplicate_groups, summary.label_conflict_files) == (2, 2)
    assert summary.files_seen == summary.ingested + summary.rejected


def test_a_file_changed_after_the_plan_is_rejected_not_written_unchecked(tmp_path: object) -> None:
    root = str(tmp_path / "data")
    for index in range(3):
        write(os.path.join(root, "a", f"{index}.png"), encode(_picture(index), "PNG"))
    planned = plan.plan_ingest(image_files.list_files(root), splits.SplitPercents(), image_files.IngestLimits())
    first = planned.files[0]
    write(first.found.path, encode(_picture(9), "PNG"))  # replaced between the plan and the Beam job
    outputs = list(image_example_gen_executor.ingest_file((0, first), image_files.IngestLimits(), 3))
    assert [output.tag for output in outputs] == [ingest_summary.REJECTED]
    assert outputs[0].value["reason"] == image_files.REASON_CHANGED
    kept = list(image_example_gen_executor.ingest_file((1, planned.files[1]), image_files.IngestLimits(), 3))
    assert kept[-1][0] == planned.files[1].split and kept[0].value["status"] == ingest_summary.INGESTED
