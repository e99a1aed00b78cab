"""The ingest plan and the preflight's preview of it: the counts the ingest will write."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from components.ingest import image_files, plan, splits
from tests.helpers import encode, write

PERCENTS = splits.SplitPercents(validation=20, test=20)


def _picture(seed: int, size: int = 32) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _folder(root: str) -> list[image_files.FoundFile]:
    for index in range(5):
        write(os.path.join(root, "a", f"{index}.png"), encode(_picture(index), "PNG"))
        write(os.path.join(root, "b", f"{index}.png"), encode(_picture(50 + index), "PNG"))
    write(os.path.join(root, "b", "broken.png"), encode(_picture(99), "PNG")[:60])
    write(os.path.join(root, "b", "again.jpg"), encode(_picture(51), "JPEG", quality=90))
    write(os.path.join(root, "b", "sub", "deep.png"), encode(_picture(77), "PNG"))
    write(os.path.join(root, ".DS_Store"), b"Bud1")
    return image_files.list_files(root)


def test_the_plan_rejects_what_the_checks_reject_and_keeps_copies_together(tmp_path: object) -> None:
    files = _folder(str(tmp_path))
    planned = plan.plan_ingest(files, PERCENTS, image_files.IngestLimits())
    by_path = {item.found.relative_path: item for item in planned.files}
    assert [item.found.relative_path for item in planned.files] == [item.relative_path for item in files]
    assert {path: item.reason for path, item in by_path.items() if item.reason} == {
        ".DS_Store": image_files.REASON_HIDDEN,
        "b/broken.png": image_files.REASON_TRUNCATED,
    }
    assert by_path["b/again.jpg"].group == by_path["b/1.png"].group == "b/1.png"
    assert by_path["b/again.jpg"].split == by_path["b/1.png"].split
    assert sum(sum(counts.values()) for counts in planned.assignment.counts.values()) == len(files) - 2
    assert planned.rejected == 2


def test_the_preview_counts_are_the_ingests_and_nested_folders_are_named(tmp_path: object) -> None:
    files = _folder(str(tmp_path))
    planned = plan.plan_ingest(files, PERCENTS, image_files.IngestLimits())
    preview = plan.preview(files, PERCENTS, image_files.IngestLimits())
    assert preview.exact and preview.assignment == planned.assignment
    totals = planned.split_totals()
    assert preview.line() == (
        f"splits (as the ingest will write them): train {totals['train']}, validation {totals['validation']}, "
        f"test {totals['test']}; 2 files will be rejected, 1 groups of copies"
    )
    assert preview.warnings() == [
        "b/sub/ holds 1 files: they are ingested as class 'b' (make it a top-level folder if it is a class of its own)"
    ]


def test_over_the_limit_the_preview_is_labelled_an_estimate(tmp_path: object) -> None:
    files = _folder(str(tmp_path))
    preview = plan.preview(files, PERCENTS, image_files.IngestLimits(), max_files=3)
    assert not preview.exact
    assert preview.line().startswith("splits (estimate from the file names, over 3 files")
    assert sum(sum(counts.values()) for counts in preview.assignment.counts.values()) == len(files) - 1  # not hidden
