"""Copies of one image: fingerprints, the near-duplicate distance, grouping at scale."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from components.ingest import duplicates


def _picture(seed: int, size: int = 96) -> Image.Image:
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _bits(one: Image.Image, other: Image.Image) -> int:
    return (duplicates.perceptual_hash(one) ^ duplicates.perceptual_hash(other)).bit_count()


@pytest.mark.parametrize(
    "copy",
    [
        lambda image: image.resize((48, 48)),
        lambda image: image.resize((200, 200)),
        lambda image: _jpeg(image, 30),
        lambda image: _jpeg(image.resize((64, 64)), 60),
    ],
    ids=["half", "enlarged", "jpeg-q30", "smaller-jpeg-q60"],
)
def test_resized_and_reencoded_copies_are_within_the_default_distance(copy: object) -> None:
    for seed in range(20):
        original = _picture(seed)
        assert _bits(original, copy(original)) <= duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE
        prints = [duplicates.fingerprint(original, True), duplicates.fingerprint(copy(original), True)]
        assert duplicates.group(prints, duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE) == [([0, 1], duplicates.NEAR)]
        assert duplicates.group(prints, duplicates.NEAR_DUPLICATES_OFF) == []


def test_distinct_pictures_are_not_grouped_and_exact_copies_always_are() -> None:
    prints = [duplicates.fingerprint(_picture(seed), with_pixels=True) for seed in range(200)]
    assert duplicates.group(prints, duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE) == []
    same = duplicates.fingerprint(_picture(5), with_pixels=True)
    assert duplicates.group([*prints, same], duplicates.NEAR_DUPLICATES_OFF) == [([5, 200], duplicates.EXACT)]
    # Without pixel digests an identical fingerprint is only a candidate: exact_candidates names both.
    cheap = [duplicates.fingerprint(_picture(seed)) for seed in range(200)]
    assert duplicates.exact_candidates([*cheap, duplicates.fingerprint(_picture(5))]) == [5, 200]
    assert duplicates.group([*cheap, duplicates.fingerprint(_picture(5))], duplicates.NEAR_DUPLICATES_OFF) == []


def test_a_too_large_distance_is_refused() -> None:
    with pytest.raises(ValueError, match="near_duplicate_distance must be at most 16 bits"):
        duplicates.group([], 17)


def test_grouping_scales_to_twenty_thousand_images_and_finds_planted_pairs() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 20_000, dtype=np.int64).astype(np.uint64)
    thumbnail = bytes(192)
    prints = [duplicates.Fingerprint(int(value), thumbnail, (8, 8), str(index)) for index, value in enumerate(hashes)]
    flipped = int(hashes[7]) ^ 0b1011_0000_0001  # 4 bits from image 7
    prints.append(duplicates.Fingerprint(flipped, thumbnail, (8, 8), "copy"))
    started = time.perf_counter()
    groups = duplicates.group(prints, duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE)
    assert time.perf_counter() - started < 10  # all pairs would be 200 million comparisons
    assert ([7, 20_000], duplicates.NEAR) in groups
    assert all(len(members) == 2 for members, _ in groups)  # random 64-bit hashes are ~32 bits apart
