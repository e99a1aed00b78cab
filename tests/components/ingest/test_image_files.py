"""Per-file checks: what is ingested as is, converted, or rejected and why."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from components.ingest import image_files
from tests.helpers import encode, solid, write

LIMITS = image_files.IngestLimits(max_pixels=10_000, min_side=8)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "BMP"])
def test_native_formats_are_kept_byte_for_byte(image_format: str) -> None:
    data = encode(solid((200, 30, 30)), image_format)
    checked = image_files.check_image(data, LIMITS)
    assert checked.reason == ""
    assert checked.encoded == data
    assert (checked.image_format, checked.width, checked.height) == (image_format, 24, 24)


def test_animated_gif_is_accepted() -> None:
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert image_files.check_image(buffer.getvalue(), LIMITS).encoded == buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "image_format"),
    [(solid((10, 200, 10), mode="CMYK"), "JPEG"), (solid((10, 200, 10)), "TIFF"), (solid((10, 200, 10)), "WEBP")],
)
def test_cmyk_and_other_formats_become_rgb_png(image: Image.Image, image_format: str) -> None:
    checked = image_files.check_image(encode(image, image_format), LIMITS)
    assert checked.reason == ""
    converted = Image.open(io.BytesIO(checked.encoded))
    assert (converted.format, converted.mode, converted.size) == ("PNG", "RGB", (24, 24))


def test_exif_orientation_is_applied() -> None:
    wide = solid((50, 50, 50)).resize((30, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    checked = image_files.check_image(encode(wide, "JPEG", exif=exif.tobytes()), LIMITS)
    assert Image.open(io.BytesIO(checked.encoded)).size == (20, 30)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", image_files.REASON_EMPTY),
        (b"hello, I am a text file", image_files.REASON_NOT_IMAGE),
        (encode(solid((1, 2, 3)), "PNG")[:60], image_files.REASON_TRUNCATED),
        (encode(solid((1, 2, 3), size=4), "PNG"), image_files.REASON_TOO_SMALL),
        (encode(solid((1, 2, 3), size=200), "PNG"), image_files.REASON_TOO_LARGE),
    ],
)
def test_rejections_have_reasons(data: bytes, reason: str) -> None:
    checked = image_files.check_image(data, LIMITS)
    assert checked.encoded is None
    assert checked.reason == reason


def test_corrupt_jpeg_body_is_rejected() -> None:
    data = bytearray(encode(solid((90, 90, 90), size=64), "JPEG"))
    data[300:600] = b"\xff" * 300
    checked = image_files.check_image(bytes(data[:700]), LIMITS)
    assert checked.encoded is None
    assert checked.reason in (image_files.REASON_TRUNCATED, image_files.REASON_CORRUPT)


def test_list_files_labels_and_top_level(tmp_path: object) -> None:
    root = str(tmp_path)
    write(os.path.join(root, "cats", "a.jpg"), b"x")
    write(os.path.join(root, "cats", "nested", "b.png"), b"x")
    write(os.path.join(root, "dögs", "ç.png"), b"x")
    write(os.path.join(root, "README.txt"), b"x")
    write(os.path.join(root, "cats", ".DS_Store"), b"x")
    found = {item.relative_path: item for item in image_files.list_files(root)}
    assert sorted(found) == ["README.txt", "cats/.DS_Store", "cats/a.jpg", "cats/nested/b.png", "dögs/ç.png"]
    assert found["cats/nested/b.png"].label == "cats"
    assert image_files.precheck_reason(found["README.txt"]) == image_files.REASON_TOP_LEVEL
    assert image_files.precheck_reason(found["cats/.DS_Store"]) == image_files.REASON_HIDDEN
    assert image_files.precheck_reason(found["dögs/ç.png"]) == ""


def test_no_images_is_a_clear_error(tmp_path: object) -> None:
    root = str(tmp_path)
    write(os.path.join(root, "notes.txt"), b"x")
    os.makedirs(os.path.join(root, "empty_class"))
    with pytest.raises(image_files.NoImagesError, match="No images found under"):
        image_files.require_images(root, image_files.list_files(root))
    with pytest.raises(image_files.NoImagesError, match="does not exist"):
        image_files.list_files(os.path.join(root, "missing"))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("*/*", "/base"), ("span-0007/*/*", "/base/span-0007"), ("a/b/*/*", "/base/a/b")],
)
def test_class_root(pattern: str, expected: str) -> None:
    assert image_files.class_root("/base", pattern) == expected


def test_class_root_rejects_globs_above_classes() -> None:
    with pytest.raises(ValueError, match="above the class folders"):
        image_files.class_root("/base", "span-*/*/*")
    with pytest.raises(ValueError, match="must end in"):
        image_files.class_root("/base", "*")


def test_class_counts_and_warnings(tmp_path: object) -> None:
    root = str(tmp_path)
    for index in range(12):
        write(os.path.join(root, "big", f"{index}.png"), b"x")
    write(os.path.join(root, "small", "0.png"), b"x")
    os.makedirs(os.path.join(root, "empty"))
    counts = image_files.class_file_counts(root, image_files.list_files(root))
    assert counts == {"big": 12, "empty": 0, "small": 1}
    warnings_found = image_files.check_classes(root, counts, min_per_class=10)
    assert "class folder 'empty' is empty" in warnings_found
    assert "class 'small' has only 1 files (fewer than 10)" in warnings_found
    assert any("imbalanced" in warning for warning in warnings_found)


def test_a_single_class_is_a_clear_error(tmp_path: object) -> None:
    root = str(tmp_path)
    write(os.path.join(root, "only", "0.png"), b"x")
    with pytest.raises(image_files.NoImagesError, match="at least two class folders"):
        image_files.check_classes(root, image_files.class_file_counts(root, image_files.list_files(root)), 10)


def test_symlinks_are_followed_once_and_broken_ones_listed(tmp_path: object) -> None:
    root, outside = os.path.join(str(tmp_path), "root"), os.path.join(str(tmp_path), "outside")
    write(os.path.join(outside, "linked.png"), b"x")
    write(os.path.join(root, "cats", "real.png"), b"x")
    os.symlink(os.path.join(outside, "linked.png"), os.path.join(root, "cats", "file_link.png"))
    os.symlink(os.path.join(outside, "missing.png"), os.path.join(root, "cats", "broken.png"))
    os.symlink(outside, os.path.join(root, "dogs"))  # a class folder that is a link
    os.symlink(root, os.path.join(root, "cats", "loop"))  # a loop back to the root
    found = sorted(item.relative_path for item in image_files.list_files(root))
    assert found == ["cats/broken.png", "cats/file_link.png", "cats/real.png", "dogs/linked.png"]
