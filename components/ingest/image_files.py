"""Finding and checking image files: every file ends ingested or rejected with a reason.

Pure Python (Pillow), used by the ImageFolder ExampleGen executor and by the CLI's
pre-flight check, so that a data root with no images fails before any Beam or
training work starts.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import posixpath
import re
from collections.abc import Iterable, Iterator

import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from components.ingest import duplicates

# Formats TensorFlow's decode_image reads directly; anything else Pillow can
# read is converted to PNG at ingest time.
NATIVE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 8
_GLOB_CHARS = re.compile(r"[*?\[{]")

# Rejection reasons (stable strings: they appear in reports and tests).
REASON_EMPTY = "empty file"
REASON_NOT_IMAGE = "not an image"
REASON_CORRUPT = "corrupt or unreadable"
REASON_TRUNCATED = "truncated"
REASON_TOO_SMALL = "too small"
REASON_TOO_LARGE = "decoding bomb (too many pixels)"
REASON_TOP_LEVEL = "not inside a class folder"
REASON_HIDDEN = "hidden file"
REASON_UNREADABLE_PATH = "cannot be read"
REASON_LABEL_CONFLICT = "label conflict"
REASON_CHANGED = "changed while being ingested"


class NoImagesError(ValueError):
    """The data root holds no class folder with an image file."""


@dataclasses.dataclass(frozen=True)
class FoundFile:
    """A file under the data root, with its class (empty if at the top level)."""

    path: str
    relative_path: str
    label: str


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    """The outcome for one file: encoded bytes to store, or a rejection reason.

    ``fingerprint`` is set on accepted images when :func:`check_image` was asked for
    it; ``stored_as_is`` says that ``encoded`` is the file's own bytes.
    """

    encoded: bytes | None
    reason: str = ""
    detail: str = ""
    image_format: str = ""
    width: int = 0
    height: int = 0
    fingerprint: duplicates.Fingerprint | None = None
    stored_as_is: bool = False


@dataclasses.dataclass(frozen=True)
class IngestLimits:
    """The ingest's settings: per-file acceptance limits, and how close two images are to count as copies.

    ``near_duplicate_distance``: perceptual-hash bits (``components/ingest/duplicates.py``);
    negative turns near-duplicate grouping off (exact duplicates are always grouped).
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    near_duplicate_distance: int = duplicates.DEFAULT_NEAR_DUPLICATE_DISTANCE

    def __post_init__(self) -> None:
        duplicates.validate_distance(self.near_duplicate_distance)


def class_root(input_base: str, pattern: str) -> str:
    """The folder holding the class folders.

    The pattern's last two components are the class folder and the file (``*/*``);
    what comes before them (e.g. ``span-0007`` once TFX has resolved ``{SPAN}``)
    must name one folder.

    Raises:
      ValueError: If the pattern has fewer than two components or globs above
        the class level.
    """
    parts = pattern.strip("/").split("/")
    if len(parts) < 2:
        raise ValueError(f"input_pattern must end in '<class folder>/<file>', e.g. '*/*'. Received: {pattern!r}")
    prefix = parts[:-2]
    if any(_GLOB_CHARS.search(part) for part in prefix):
        raise ValueError(
            f"input_pattern may only use {{SPAN}} or {{VERSION}} above the class folders. Received: {pattern!r}"
        )
    return posixpath.join(input_base, *prefix) if prefix else input_base


def list_files(root: str) -> list[FoundFile]:
    """Every file below ``root``, sorted, with its class folder as label.

    Files directly in ``root`` get an empty label (they are rejected later as
    "not inside a class folder"): they are listed so that nothing is lost.

    Raises:
      NoImagesError: If ``root`` does not exist or is not a folder.
    """
    if not tf.io.gfile.isdir(root):
        raise NoImagesError(f"Data root {root!r} does not exist or is not a folder.")
    found = []
    for folder, files in _walk(root):
        for name in files:
            path = posixpath.join(folder, name)
            relative = posixpath.relpath(path, root)
            parts = relative.split("/")
            label = parts[0] if len(parts) > 1 else ""
            found.append(FoundFile(path=path, relative_path=relative, label=label))
    return sorted(found, key=lambda item: item.relative_path)


def _walk(root: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) below ``root``.

    Local trees follow symbolic links (a link to a file is read as that file; a
    broken link is listed and later rejected as unreadable) but enter each real
    folder once, so link loops end. Remote URIs (gs://, s3://) have no links.
    """
    if "://" in root:
        for folder, _, files in tf.io.gfile.walk(root):
            yield folder, files
        return
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            logging.warning("Not entering %s again: it links to %s, which was already read.", folder, real)
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        yield folder, files


def precheck_reason(found: FoundFile) -> str:
    """A rejection reason known from the path alone, or ``""``; a hidden file is hidden wherever it is."""
    if any(part.startswith(".") for part in found.relative_path.split("/")):
        return REASON_HIDDEN
    if not found.label:
        return REASON_TOP_LEVEL
    return ""


def nested_folder(relative_path: str) -> str:
    """The sub-folder of a class folder that holds this file (``squares/extra``), or ``""``.

    Files in sub-folders of a class folder are ingested under the top class folder
    (``squares/extra/x.png`` is a ``squares`` image): sorting one class into
    sub-folders (by date, by source) is common. The ingest summary and the preflight
    list those folders, so a sub-folder meant as a class of its own is seen.
    """
    folder = posixpath.dirname(relative_path)
    return folder if "/" in folder else ""


def require_images(root: str, files: Iterable[FoundFile]) -> None:
    """Raises NoImagesError unless some file is inside a class folder."""
    if not any(not precheck_reason(found) for found in files):
        raise NoImagesError(
            f"No images found under {root!r}. Expected one sub-folder per class, e.g. "
            f"{root}/cats/001.jpg and {root}/dogs/002.png."
        )


def class_file_counts(root: str, files: Iterable[FoundFile]) -> dict[str, int]:
    """Candidate files per class folder, empty class folders included (count 0)."""
    counts = {
        name.rstrip("/"): 0
        for name in tf.io.gfile.listdir(root)
        if not name.startswith(".") and tf.io.gfile.isdir(posixpath.join(root, name))
    }
    for found in files:
        if not precheck_reason(found):
            counts[found.label] = counts.get(found.label, 0) + 1
    return dict(sorted(counts.items()))


def check_classes(root: str, counts: dict[str, int], min_per_class: int) -> list[str]:
    """Warnings about empty or small classes.

    Raises:
      NoImagesError: If fewer than two class folders hold files.
    """
    non_empty = [label for label, count in counts.items() if count]
    if len(non_empty) < 2:
        raise NoImagesError(
            f"A classifier needs at least two class folders with images under {root!r}; found {non_empty or 'none'} "
            f"(files per class folder: {counts})."
        )
    warnings_found = [f"class folder {label!r} is empty" for label, count in counts.items() if not count]
    warnings_found += [
        f"class {label!r} has only {count} files (fewer than {min_per_class})"
        for label, count in counts.items()
        if 0 < count < min_per_class
    ]
    largest, smallest = max(counts.values()), min(count for count in counts.values() if count)
    if largest > 5 * smallest:
        warnings_found.append(f"classes are imbalanced: largest {largest} files, smallest {smallest}")
    return warnings_found


def check_image(data: bytes, limits: IngestLimits, fingerprint: bool = False, pixels: bool = False) -> CheckedImage:
    """Decodes ``data`` fully and decides whether it can be ingested.

    Images TensorFlow can decode as they are (RGB or grayscale JPEG/PNG/GIF/BMP
    without an EXIF rotation) are stored byte for byte; others (CMYK, 16-bit, EXIF
    rotated, TIFF, WebP, ...) are converted to an RGB PNG first. With
    ``fingerprint``, an accepted image also gets its duplicates.Fingerprint, taken
    on the rotated RGB pixels (those the model reads); ``pixels`` adds its pixel digest.
    """
    if not data:
        return CheckedImage(None, REASON_EMPTY)
    # Pillow's own limit (Image.MAX_IMAGE_PIXELS) is process-wide: setting it per image raced
    # between Beam's worker threads, so the configured limit is checked here, on the header,
    # before anything is decoded. Pillow still refuses images over twice its default.
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            width, height = image.size
            if width * height > limits.max_pixels:
                return CheckedImage(None, REASON_TOO_LARGE, f"{width}x{height}", image_format, width, height)
            image.load()
            return _accept(data, image, image_format, limits, (fingerprint, pixels))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return CheckedImage(None, REASON_TOO_LARGE, str(error))
    except UnidentifiedImageError:
        return CheckedImage(None, REASON_NOT_IMAGE)
    except OSError as error:
        reason = REASON_TRUNCATED if "truncated" in str(error).lower() else REASON_CORRUPT
        return CheckedImage(None, reason, str(error))
    except (ValueError, SyntaxError) as error:  # Pillow raises these on some malformed headers.
        return CheckedImage(None, REASON_CORRUPT, str(error))


def _decodes_natively(image_format: str, mode: str) -> bool:
    """Whether tf.io.decode_image reads these bytes as the right RGB image as they are."""
    if image_format == "JPEG":
        return mode in ("RGB", "L")  # CMYK/YCCK JPEGs decode wrongly
    return image_format in NATIVE_FORMATS and mode in ("RGB", "L", "P", "RGBA", "LA")


def _accept(
    data: bytes, image: Image.Image, image_format: str, limits: IngestLimits, prints: tuple[bool, bool]
) -> CheckedImage:
    """Accepts (or rejects as too small) a decoded image; ``prints``: (fingerprint it, with its pixel digest)."""
    fingerprint, pixels = prints
    width, height = image.size
    if min(width, height) < limits.min_side:
        return CheckedImage(None, REASON_TOO_SMALL, f"{width}x{height}", image_format, width, height)
    orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
    if orientation == 1 and _decodes_natively(image_format, image.mode):
        rgb = (image if image.mode == "RGB" else image.convert("RGB")) if fingerprint else None
        found = duplicates.fingerprint(rgb, pixels) if rgb is not None else None
        return CheckedImage(data, "", "", image_format, width, height, found, stored_as_is=True)
    converted = ImageOps.exif_transpose(image).convert("RGB")
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG")
    logging.debug("Converted %s %s image to RGB PNG.", image_format, image.mode)
    found = duplicates.fingerprint(converted, pixels) if fingerprint else None
    return CheckedImage(buffer.getvalue(), "", "converted to RGB PNG", image_format, *converted.size, found)
