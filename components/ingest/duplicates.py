"""Copies of one image among the ingested files: exact and near duplicates, grouped.

Three facts per accepted image (:func:`fingerprint`, taken on the decoded image
after the same EXIF rotation and RGB conversion the ingest applies):

- ``pixels``: a SHA-256 digest of the size and the RGB pixels. Equal digests are
  *exact duplicates*: the same picture whatever the file name or format (a PNG and
  a BMP of one image, or two copies of one JPEG). Hashing every pixel costs about
  half a photo's decode, so it is taken only for *exact candidates*
  (:func:`exact_candidates`: same size, perceptual hash and thumbnail, which every
  exact copy has), in a second look at those files (``components/ingest/plan.py``).
- ``phash``: a 64-bit perceptual hash (DCT hash: 32x32 grayscale, the 8x8 lowest
  frequencies, each bit "above the median"), the pHash of Zauner (2010) that
  ``imagehash.phash`` also computes, here in a few lines of numpy instead of a
  dependency (imagehash brings PyWavelets, and scipy for what is a 32x32 matrix product).
  Hashes within ``near_duplicate_distance`` differing bits are *near duplicates*
  (distinct pictures are about 32 bits apart; see DEFAULT_NEAR_DUPLICATE_DISTANCE).
- ``thumbnail``: the 8x8 RGB thumbnail (box filter). Near duplicates must also have
  thumbnails within ``THUMBNAIL_TOLERANCE`` grey levels (mean absolute difference):
  pHash reads grey structure only, and distinct pictures with the same layout (the
  demo's gradients) can be a few bits apart; copies differ by under 5 levels,
  the demo's closest distinct pairs by over 28 (measured on 600 demo images).

:func:`group` joins copies into groups (connected components: if A is a copy of B
and B of C, all three are one group: union-find), with pigeonhole buckets so that 10,000+
images never need all pairs: with distance ``d`` the 64 bits are cut into ``d + 1``
chunks, and two hashes within ``d`` bits agree on at least one chunk whole, so only
hashes sharing a chunk value are compared (numpy, block by block).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

# The default near-duplicate distance (bits of 64). On 600 of the demo's noisy 96x96 images (a hard
# case: JPEG removes the noise) copies resized to a half or a quarter or enlarged measured at most
# 8 bits from the original, re-encoded at JPEG quality 75 at most 6, at quality 30 at most 12 (so a
# few of those stay apart at 10); 6 of 180,000 distinct pairs were 4 bits apart and 12 within 6
# (the thumbnail check tells them apart: 0 false groups in 3,000 demo images). 10 also keeps
# the pigeonhole chunks at 6 bits, so buckets stay small.
DEFAULT_NEAR_DUPLICATE_DISTANCE = 10
# Any negative distance turns near-duplicate grouping off (exact duplicates are always grouped).
NEAR_DUPLICATES_OFF = -1
# Above this the pigeonhole chunks get too short to narrow the comparisons (and pHash itself
# stops telling copies from merely similar pictures).
MAX_NEAR_DUPLICATE_DISTANCE = 16
# Mean absolute difference of two near duplicates' 8x8 RGB thumbnails, in levels of 255.
THUMBNAIL_TOLERANCE = 8.0
_THUMBNAIL_SIDE = 8
EXACT = "exact"
NEAR = "near"
_DCT_SIDE = 32
_HASH_SIDE = 8
_HASH_BITS = _HASH_SIDE * _HASH_SIDE
_BLOCK_ROWS = 1024


def _dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``matrix @ x`` is the DCT of the column vector ``x``."""
    frequency = np.arange(size)[:, None]
    position = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * position + 1) * frequency / (2 * size)) * np.sqrt(2 / size)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(_DCT_SIDE)[:_HASH_SIDE]


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What identifies an image's content: perceptual hash, 8x8 RGB thumbnail (192 bytes), size, pixel digest.

    ``pixels`` is ``""`` until :func:`pixel_digest` is taken (only exact candidates need it).
    """

    phash: int
    thumbnail: bytes
    size: tuple[int, int]
    pixels: str = ""


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit DCT hash of ``image`` (any mode, any size)."""
    gray = image.convert("L")
    if min(gray.size) >= 4 * _DCT_SIDE:  # an area average first: the same hash, a tenth of the time on photos
        gray = gray.resize((2 * _DCT_SIDE, 2 * _DCT_SIDE), Image.Resampling.BOX)
    # Lanczos, as imagehash: a box filter straight to 32x32 put resized copies 10 bits apart, not 6-8.
    gray = gray.resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.LANCZOS)
    low = _DCT @ np.asarray(gray, dtype=np.float64) @ _DCT.T
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def pixel_digest(rgb: Image.Image) -> str:
    """SHA-256 of the size and the RGB pixels: equal for exact duplicates only."""
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\0".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def fingerprint(rgb: Image.Image, with_pixels: bool = False) -> Fingerprint:
    """The fingerprint of an RGB image, as the ingest decoded and rotated it (``with_pixels``: with its digest)."""
    # No reducing_gap: its integer reduction shifts the grid by up to a block (8 levels on an enlarged copy).
    thumbnail = rgb.resize((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), Image.Resampling.BOX)
    return Fingerprint(
        phash=perceptual_hash(rgb),
        thumbnail=thumbnail.tobytes(),
        size=rgb.size,
        pixels=pixel_digest(rgb) if with_pixels else "",
    )


def exact_candidates(fingerprints: Sequence[Fingerprint]) -> list[int]:
    """Indices of the images that may have an exact copy: another with the same size, hash and thumbnail."""
    seen: dict[tuple, list[int]] = {}
    for index, item in enumerate(fingerprints):
        seen.setdefault((item.size, item.phash, item.thumbnail), []).append(index)
    return sorted(index for members in seen.values() if len(members) > 1 for index in members)


def validate_distance(distance: int) -> None:
    """Raises ValueError unless ``distance`` is negative (off) or at most MAX_NEAR_DUPLICATE_DISTANCE."""
    if distance > MAX_NEAR_DUPLICATE_DISTANCE:
        raise ValueError(
            f"near_duplicate_distance must be at most {MAX_NEAR_DUPLICATE_DISTANCE} bits (or -1: off). "
            f"Received: {distance}"
        )


def group(fingerprints: Sequence[Fingerprint], near_distance: int) -> list[tuple[list[int], str]]:
    """Groups of copies: (indices into ``fingerprints``, ``"exact"`` or ``"near"``), each of two or more.

    Args:
      fingerprints: One per image; those without a pixel digest are nobody's exact copy.
      near_distance: Perceptual hashes at most this many bits apart are copies;
        (and thumbnails within THUMBNAIL_TOLERANCE) are copies; negative: only exact
        duplicates (equal pixel digests) are grouped.

    Returns:
      The groups with more than one member, each sorted, in order of their first
      member. A group is ``"exact"`` when all its members have the same pixels.
    """
    validate_distance(near_distance)
    count = len(fingerprints)
    first_of: dict[str, int] = {}
    exact_first = [
        first_of.setdefault(item.pixels, index) if item.pixels else index for index, item in enumerate(fingerprints)
    ]
    rows, cols = [np.arange(count)], [np.array(exact_first, dtype=np.int64)]
    if near_distance >= 0 and count > 1:
        near_rows, near_cols = _near_pairs(
            np.array([item.phash for item in fingerprints], dtype=np.uint64), near_distance
        )
        thumbnails = np.frombuffer(b"".join(item.thumbnail for item in fingerprints), dtype=np.uint8)
        thumbnails = thumbnails.reshape(count, -1).astype(np.int16)
        alike = np.abs(thumbnails[near_rows] - thumbnails[near_cols]).mean(axis=1) <= THUMBNAIL_TOLERANCE
        rows.append(near_rows[alike])
        cols.append(near_cols[alike])
    component = _components(count, np.concatenate(rows), np.concatenate(cols))
    members: dict[int, list[int]] = {}
    for index, root in enumerate(component):
        members.setdefault(root, []).append(index)
    groups = []
    for indices in members.values():
        if len(indices) > 1:
            digests = {fingerprints[index].pixels for index in indices}
            kind = EXACT if len(digests) == 1 and "" not in digests else NEAR
            groups.append((indices, kind))
    return sorted(groups, key=lambda item: item[0][0])


def _components(count: int, rows: np.ndarray, cols: np.ndarray) -> list[int]:
    """The connected component (its smallest index) of each of ``count`` nodes, by union-find over the pairs."""
    parent = list(range(count))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for left, right in zip(rows[rows != cols].tolist(), cols[rows != cols].tolist(), strict=True):
        one, other = find(left), find(right)
        if one != other:
            parent[max(one, other)] = min(one, other)
    return [find(node) for node in range(count)]


def _near_pairs(hashes: np.ndarray, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Image index pairs whose hashes are at most ``distance`` bits apart (pigeonhole buckets, ``distance + 1`` chunks).

    Equal hashes are paired with the first image of that hash; distinct hash values are
    compared only within a bucket of values that agree on one chunk.
    """
    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    rows, cols = [np.arange(len(hashes))], [first[inverse]]
    bounds = np.linspace(0, _HASH_BITS, distance + 2).astype(int)
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        keys = (unique >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            if end - start > 1:
                left, right = _close_in_bucket(unique, order[start:end], distance)
                rows.append(first[left])
                cols.append(first[right])
    return np.concatenate(rows), np.concatenate(cols)


def _close_in_bucket(values: np.ndarray, members: np.ndarray, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (indices into ``values``) among ``members`` within ``distance`` bits, block by block."""
    lefts, rights = [], []
    block_values = values[members]
    for start in range(0, len(members), _BLOCK_ROWS):
        rows = block_values[start : start + _BLOCK_ROWS]
        bits = np.bitwise_count(rows[:, None] ^ block_values[None, :])
        row, col = np.nonzero(bits <= distance)
        keep = col > row + start
        lefts.append(members[row[keep] + start])
        rights.append(members[col[keep]])
    return np.concatenate(lefts), np.concatenate(rights)
