"""Scoring a folder: one row per file (scored or refused with the ingest's reason), in batches, nothing lost."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from components import signatures
from components.ingest import image_files
from components.serving import model_config
from pipeline.predict import outcomes, score, score_rows
from tests.helpers import encode, solid, write

CLASSES = ("red", "green", "blue")
BLACK_REFUSAL = "the model refuses all-black images"


class _ColourModel(tf.Module):
    """The serving contract on encoded images: all 3 colour classes ranked, and all-black images refused."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)])
    def serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def mean_colour(data: tf.Tensor) -> tf.Tensor:
            image = tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)
            with tf.control_dependencies([tf.debugging.assert_greater(tf.reduce_max(image), 20.0, BLACK_REFUSAL)]):
                return tf.reduce_mean(image, axis=[0, 1]) / 255.0

        colours = tf.map_fn(mean_colour, image_bytes, fn_output_signature=tf.TensorSpec([3], tf.float32))
        scores, ids = tf.math.top_k(tf.nn.softmax(colours * 10.0), k=3)
        return {
            signatures.CLASSES_OUTPUT: tf.gather(tf.constant(CLASSES), ids),
            signatures.SCORES_OUTPUT: scores,
        }


def save_colour_model(base: str, version: int = 1700000000) -> str:
    """Saves the colour model as ``<base>/<version>`` (a pushed version) and returns that folder."""
    model = _ColourModel()
    path = os.path.join(base, str(version))
    tf.saved_model.save(model, path, signatures={signatures.DEFAULT_SIGNATURE: model.serve})
    return path


def mixed_folder(root: str) -> dict[str, str]:
    """A folder with good images (nested, several formats) and one bad file of each kind: path -> expected reason."""
    red, green, blue = (encode(solid(colour), "PNG") for colour in ((250, 10, 10), (10, 250, 10), (10, 10, 250)))
    good_jpeg = encode(solid((10, 10, 250)), "JPEG")
    return {
        write(f"{root}/a/red.png", red): "",
        write(f"{root}/a/green.png", green): "",
        write(f"{root}/b/deep/blue.jpg", good_jpeg): "",
        write(f"{root}/top.tiff", encode(solid((10, 250, 10)), "TIFF")): "",  # converted to PNG, as ingest does
        write(f"{root}/b/blue.png", blue): "",
        write(f"{root}/a/empty.png", b""): image_files.REASON_EMPTY,
        write(f"{root}/a/notes.jpg", b"a text file, not a JPEG"): image_files.REASON_NOT_IMAGE,
        write(f"{root}/a/cut.jpg", good_jpeg[: len(good_jpeg) // 2]): image_files.REASON_TRUNCATED,
        write(f"{root}/a/tiny.png", encode(solid((250, 10, 10), size=4), "PNG")): image_files.REASON_TOO_SMALL,
        write(f"{root}/a/.hidden.png", red): image_files.REASON_HIDDEN,
        write(f"{root}/.cache/x.png", red): image_files.REASON_HIDDEN,
        write(f"{root}/a/black.png", encode(solid((0, 0, 0)), "PNG")): score.REASON_MODEL,
    }


@pytest.fixture(scope="module")
def classify(tmp_path_factory: pytest.TempPathFactory) -> score.BatchClassifier:
    base = str(tmp_path_factory.mktemp("serving") / "image_classifier")
    return score.local_batch_classifier(save_colour_model(base))


@pytest.mark.parametrize("extension", [".jsonl", ".csv"])
def test_every_file_gets_one_row_with_its_classes_or_its_reason(
    classify: score.BatchClassifier, tmp_path: object, extension: str
) -> None:
    expected = mixed_folder(str(tmp_path / "photos"))
    output = str(tmp_path / f"scores{extension}")
    progress: list[int] = []
    summary = score.score_folder(
        str(tmp_path / "photos"), classify, output, batch_size=4, on_start=progress.append, on_progress=progress.append
    )
    rows = score_rows.read_rows(output)
    assert sorted(row.path for row in rows) == sorted(expected)
    assert {row.path: row.reason for row in rows} == expected
    by_path = {row.path: row for row in rows}
    assert by_path[f"{tmp_path}/photos/a/red.png"].classes[0] == "red"
    assert by_path[f"{tmp_path}/photos/b/deep/blue.jpg"].classes[0] == "blue"
    assert by_path[f"{tmp_path}/photos/top.tiff"].classes[0] == "green"
    for row in rows:
        if row.status == score_rows.SCORED:
            assert len(row.classes) == 3 and sum(row.probabilities) == pytest.approx(1.0, abs=1e-5)
            assert row.probabilities == sorted(row.probabilities, reverse=True)
        else:
            assert row.classes == [] and row.reason
    assert BLACK_REFUSAL in by_path[f"{tmp_path}/photos/a/black.png"].detail
    assert "Traceback" not in by_path[f"{tmp_path}/photos/a/black.png"].detail
    # The counts are the rows' own; progress covers every file, after "start" gave the total.
    assert (summary.files, summary.rows, summary.scored) == (12, 12, 5)
    assert summary.refused == {image_files.REASON_HIDDEN: 2} | {
        reason: 1 for reason in expected.values() if reason and reason != image_files.REASON_HIDDEN
    }
    assert progress[0] == 12 and sum(progress[1:]) == 12 and max(progress[1:]) <= 4


def test_rows_come_in_the_listing_order(classify: score.BatchClassifier, tmp_path: object) -> None:
    expected = mixed_folder(str(tmp_path / "photos"))
    output = str(tmp_path / "scores.jsonl")
    score.score_folder(str(tmp_path / "photos"), classify, output, batch_size=3)
    listed = [found.path for found in image_files.list_files(str(tmp_path / "photos"))]
    assert [row.path for row in score_rows.read_rows(output)] == listed and len(listed) == len(expected)


def test_a_file_that_cannot_be_read_gets_the_ingest_reason(classify: score.BatchClassifier, tmp_path: object) -> None:
    write(f"{tmp_path}/in/red.png", encode(solid((250, 10, 10)), "PNG"))
    os.symlink(f"{tmp_path}/gone.png", f"{tmp_path}/in/link.png")  # a broken link is listed, then unreadable
    output = str(tmp_path / "scores.jsonl")
    summary = score.score_folder(f"{tmp_path}/in", classify, output)
    link, red = score_rows.read_rows(output)
    assert (link.status, link.reason) == (score_rows.REFUSED, image_files.REASON_UNREADABLE_PATH)
    assert link.detail.endswith("link.png; No such file or directory")
    assert red.classes[0] == "red" and summary.refused == {image_files.REASON_UNREADABLE_PATH: 1}


def test_csv_and_jsonl_hold_the_same_rows(classify: score.BatchClassifier, tmp_path: object) -> None:
    mixed_folder(str(tmp_path / "photos"))
    rows = {}
    for extension in ("csv", "jsonl"):
        output = str(tmp_path / f"scores.{extension}")
        score.score_folder(str(tmp_path / "photos"), classify, output, top_k=2)
        rows[extension] = score_rows.read_rows(output)
    assert rows["csv"] == rows["jsonl"]
    assert all(len(row.classes) == 2 for row in rows["csv"] if row.status == score_rows.SCORED)
    with open(tmp_path / "scores.csv") as handle:
        header, first = handle.readline().strip(), handle.readline().strip()
    assert header == "path,status,reason,detail,class_1,probability_1,class_2,probability_2"
    assert first.split(",")[1] in (score_rows.SCORED, score_rows.REFUSED)


def test_a_refused_batch_falls_back_to_one_call_per_file(tmp_path: object) -> None:
    files = [write(f"{tmp_path}/in/{index}.png", encode(solid((250, 10, index * 40)), "PNG")) for index in range(6)]
    calls: list[int] = []

    def fussy(paths: list[str], images: list[bytes]) -> list[outcomes.Prediction]:
        calls.append(len(paths))
        if files[2] in paths:
            raise outcomes.ImageError("cannot read this one")
        return [outcomes.Prediction(path, ["red", "blue"], [0.75, 0.25]) for path in paths]

    output = str(tmp_path / "scores.csv")
    summary = score.score_folder(f"{tmp_path}/in", fussy, output, batch_size=3)
    rows = score_rows.read_rows(output)
    assert calls == [3, 1, 1, 1, 3]  # the first batch, its files one by one, then the second batch
    assert [row.status for row in rows] == ["scored", "scored", "refused", "scored", "scored", "scored"]
    assert (rows[2].reason, rows[2].detail) == (score.REASON_MODEL, "cannot read this one")
    assert rows[0].classes == ["red", "blue"] and rows[0].probabilities == [0.75, 0.25]
    assert summary.refused == {score.REASON_MODEL: 1} and summary.scored == 5


def test_a_crash_keeps_the_rows_written_before_it_and_says_how_many(tmp_path: object) -> None:
    for index in range(5):
        write(f"{tmp_path}/in/{index}.png", encode(solid((10, 250, 10)), "PNG"))
    batches = []

    def breaks_on_the_second_batch(paths: list[str], images: list[bytes]) -> list[outcomes.Prediction]:
        batches.append(paths)
        if len(batches) == 2:
            raise RuntimeError("device lost")
        return [outcomes.Prediction(path, ["green"], [1.0]) for path in paths]

    output = str(tmp_path / "scores.jsonl")
    with pytest.raises(score.ScoringStoppedError, match=r"after 2 of 5 files \(RuntimeError: device lost\)"):
        score.score_folder(f"{tmp_path}/in", breaks_on_the_second_batch, output, batch_size=2)
    assert [row.path for row in score_rows.read_rows(output)] == batches[0]


def test_the_summary_line_counts_refusals_by_reason(tmp_path: object) -> None:
    summary = score_rows.ScoreSummary(
        folder="in",
        output="scores.csv",
        model="m",
        files=10,
        rows=10,
        scored=7,
        refused={"empty file": 2, "hidden file": 1},
        seconds=2.0,
    )
    assert score_rows.format_summary(summary) == (
        "Scored 7 of 10 files, refused 3 (empty file 2, hidden file 1); 10 rows in scores.csv (2.0 s, 5 files/s)."
    )
    nothing = summary.model_copy(update={"scored": 0, "refused": {"not an image": 10}})
    assert score_rows.format_summary(nothing).endswith("No file could be scored: every row gives its reason.")
    empty = summary.model_copy(update={"files": 0, "rows": 0, "scored": 0, "refused": {}})
    assert score_rows.format_summary(empty).endswith("in holds no files.")


def test_an_empty_folder_writes_only_the_header(classify: score.BatchClassifier, tmp_path: object) -> None:
    os.makedirs(tmp_path / "empty")
    summary = score.score_folder(str(tmp_path / "empty"), classify, str(tmp_path / "scores.csv"))
    assert (summary.files, summary.rows) == (0, 0) and score_rows.read_rows(str(tmp_path / "scores.csv")) == []


def test_the_output_is_never_scored_and_never_silently_replaced(
    classify: score.BatchClassifier, tmp_path: object
) -> None:
    folder = str(tmp_path / "photos")
    write(f"{folder}/red.png", encode(solid((250, 10, 10)), "PNG"))
    output = f"{folder}/scores.jsonl"
    score.score_folder(folder, classify, output)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        score.score_folder(folder, classify, output)
    summary = score.score_folder(folder, classify, output, overwrite=True)
    assert summary.files == 1 and [row.path for row in score_rows.read_rows(output)] == [f"{folder}/red.png"]
    with pytest.raises(ValueError, match=r"name it \*\.csv or \*\.jsonl"):
        score.score_folder(folder, classify, str(tmp_path / "scores.txt"))
    with pytest.raises(image_files.NoImagesError, match="does not exist"):
        score.score_folder(str(tmp_path / "missing"), classify, str(tmp_path / "other.csv"))


def test_the_served_version_is_the_stable_label_else_the_newest(tmp_path: object) -> None:
    serving_dir = str(tmp_path / "serving")
    base = os.path.join(serving_dir, "image_classifier")
    old = save_colour_model(base, 1700000000)
    new = os.path.join(base, "1800000000")
    shutil.copytree(old, new)
    os.makedirs(os.path.join(base, "1900000000"))  # incomplete: never chosen
    assert score.resolve_served_model(base) == (new, "newest version")
    assert score.resolve_served_model(old + "/") == (old, "SavedModel folder")
    with open(model_config.model_config_path(serving_dir), "w") as handle:
        handle.write(
            f'model_config_list {{ config {{ name: "image_classifier" base_path: "{base}" model_platform: '
            '"tensorflow" model_version_policy { specific { versions: 1700000000 } } '
            'version_labels { key: "stable" value: 1700000000 } } }'
        )
    assert score.resolve_served_model(base) == (old, "stable label")
    with pytest.raises(FileNotFoundError, match="did you mean --model-dir"):
        score.resolve_served_model(serving_dir)


def test_a_model_without_the_image_signature_is_refused_by_name(tmp_path: object) -> None:
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"double_it": module.double})
    with pytest.raises(ValueError, match=r"no 'serving_default' signature \(it has \['double_it'\]\)"):
        score.local_batch_classifier(str(tmp_path / "other"))


# ---------------------------------------------------------------- 10k files


def _serving_default_from(tiny: dict, folder: str) -> str:
    """The fixture's trained classifier (``serve_pixels``) behind a ``serving_default`` on encoded images."""
    from components.modules import features

    loaded = tf.saved_model.load(tiny["saved_model"])
    pixels_signature = loaded.signatures[signatures.PIXELS_SIGNATURE]
    module = tf.Module()
    module.loaded = loaded

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)])
    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = pixels_signature(features.model_pixels(image_bytes, tiny["image_size"]))
        probabilities = probabilities[signatures.PROBABILITIES_OUTPUT]
        scores, ids = tf.math.top_k(probabilities, k=len(tiny["classes"]))
        names = tf.gather(tf.constant(tiny["classes"]), ids)
        return {signatures.CLASSES_OUTPUT: names, signatures.SCORES_OUTPUT: scores}

    path = os.path.join(folder, "1700000000")
    tf.saved_model.save(module, path, signatures={signatures.DEFAULT_SIGNATURE: serve})
    return path


def ten_thousand_files(root: str, tiny: dict, count: int = 10_000) -> dict[str, str]:
    """``count`` files, about 2% bad (empty, truncated, text, hidden), in 20 folders: path -> expected reason."""
    images = tiny["eval_images"][:24]
    kinds = [
        (b"", image_files.REASON_EMPTY),
        (images[0][: len(images[0]) // 3], image_files.REASON_TRUNCATED),
        (b"name,label\nx,y\n", image_files.REASON_NOT_IMAGE),
    ]
    expected = {}
    for index in range(count):
        folder = f"{root}/batch_{index % 20:02d}"
        if index % 50 == 7:
            data, reason = kinds[(index // 50) % 3]
            expected[write(f"{folder}/{index:05d}.png", data)] = reason
        elif index % 50 == 31:
            expected[write(f"{folder}/.{index:05d}.png", images[index % 24])] = image_files.REASON_HIDDEN
        else:
            expected[write(f"{folder}/{index:05d}.png", images[index % 24])] = ""
    return expected


@pytest.mark.slow
def test_ten_thousand_files_with_bad_ones_mixed_in_are_all_accounted_for(
    tiny_saved_classifier: dict, tmp_path: object
) -> None:
    model = _serving_default_from(tiny_saved_classifier, str(tmp_path / "serving" / "image_classifier"))
    expected = ten_thousand_files(str(tmp_path / "new_images"), tiny_saved_classifier)
    classify = score.local_batch_classifier(model)
    output = str(tmp_path / "scores.csv")
    started = time.monotonic()
    summary = score.score_folder(str(tmp_path / "new_images"), classify, output)
    seconds = time.monotonic() - started
    rows = score_rows.read_rows(output)
    assert len(rows) == len(expected) == summary.files == summary.rows == 10_000
    assert {row.path: row.reason for row in rows} == expected
    scored = [row for row in rows if row.status == score_rows.SCORED]
    assert summary.scored == len(scored) == sum(1 for reason in expected.values() if not reason)
    sums = np.array([sum(row.probabilities) for row in scored])
    assert np.allclose(sums, 1.0, atol=1e-4) and all(len(row.classes) == 3 for row in scored)
    # The trained model tells the shapes apart: most images get the class they were drawn as.
    labels = {
        index: tiny_saved_classifier["classes"][label]
        for index, label in enumerate(tiny_saved_classifier["eval_labels"][:24])
    }
    right = [row.classes[0] == labels[int(os.path.basename(row.path)[:5]) % 24] for row in scored]
    assert np.mean(right) > 0.6
    print(
        f"\nscore: 10,000 files in {seconds:.1f} s ({10_000 / seconds:.0f} files/s); {score_rows.format_summary(summary)}"
    )
