"""Scores every file under a folder with a pushed model: one CSV or JSONL row per file, written as it goes.

Each file ends in exactly one row: its top classes with their probabilities, or
the reason it was refused. Files are checked first as the ingest checks them
(``components/ingest/image_files.py``: hidden, unreadable, empty, not an image,
truncated, corrupt, too small, decoding bomb), so a file gets the reason it would
get at ingest, and the model sees the bytes ingest would store (formats
TensorFlow cannot decode are converted to PNG). The rest go through the model's
``serving_default`` signature in batches; when the model refuses a batch, each of
its files is tried alone, so one bad file costs only its own row ("refused by the
model", with the model's message). Rows are flushed after every batch: a crash
loses nothing already written.

The row format lives in ``score_rows.py``, with its one writer (``RowWriter``)
and reader (``read_rows``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf

from components import signatures
from components.ingest import image_files
from components.serving import labels, repository
from pipeline.predict import predict
from pipeline.predict.outcomes import ImageError, Prediction
from pipeline.predict.score_rows import DIGITS, REFUSED, SCORED, RowWriter, ScoreRow, ScoreSummary, output_format

DEFAULT_TOP_K = 3
DEFAULT_BATCH_SIZE = 64
# Threads that read and check the next batch's files while the model runs this one.
DEFAULT_READERS = 2
REASON_MODEL = "refused by the model"

# Classifies encoded images in one call, one Prediction per image in order;
# raises ImageError when the model refuses the call.
BatchClassifier = Callable[[Sequence[str], Sequence[bytes]], list[Prediction]]


@dataclasses.dataclass(frozen=True)
class CheckedFile:
    """A file after the ingest's checks: the bytes to classify, or its refusal row."""

    path: str
    encoded: bytes | None
    refusal: ScoreRow | None


def resolve_served_model(model_dir: str) -> tuple[str, str]:
    """The SavedModel to score with, and why: a SavedModel folder, or the served version of a model base path.

    A model base path (``<serving_dir>/<model_name>``) gives the version TF Serving
    answers from: the ``stable`` label of the serving directory's model config,
    else the newest complete version (``labels.served_version``).

    Raises:
      FileNotFoundError: If there is no SavedModel there (with a hint when it is a serving directory).
    """
    model_dir = model_dir.rstrip("/") or "/"
    if repository.is_complete(model_dir):
        return model_dir, "SavedModel folder"
    served = labels.served_version(os.path.dirname(model_dir), os.path.basename(model_dir))
    if served is None:
        return predict.resolve_model_dir(model_dir), "newest version"  # raises, naming what is there
    version, why = served
    return repository.version_path(model_dir, version), why


def local_batch_classifier(version_dir: str) -> BatchClassifier:
    """Runs ``serving_default`` of the SavedModel at ``version_dir`` on a batch of encoded images.

    Raises:
      ValueError: If the model has no ``serving_default`` signature taking ``image_bytes``.
    """
    loaded = tf.saved_model.load(version_dir)
    serve = loaded.signatures.get(signatures.DEFAULT_SIGNATURE)
    if serve is None:
        raise ValueError(
            f"The SavedModel at {version_dir} has no {signatures.DEFAULT_SIGNATURE!r} signature (it has "
            f"{sorted(loaded.signatures) or 'none'}): score needs the Trainer's serving export."
        )
    inputs = serve.structured_input_signature[1]
    if signatures.IMAGE_BYTES_INPUT not in inputs:
        raise ValueError(
            f"{signatures.DEFAULT_SIGNATURE!r} of {version_dir} takes {sorted(inputs)}, not "
            f"{signatures.IMAGE_BYTES_INPUT!r} (encoded images): score needs the Trainer's serving export."
        )

    def classify(paths: Sequence[str], images: Sequence[bytes]) -> list[Prediction]:
        return predict.serving_predictions(serve, paths, images)

    return classify


def list_folder(folder: str, skip: str = "") -> list[image_files.FoundFile]:
    """Every file under ``folder``, sorted, as the ingest lists them (hidden ones included, to be refused).

    Args:
      folder: The folder to score.
      skip: A file to leave out (the output itself, when it is under ``folder``).

    Raises:
      image_files.NoImagesError: If ``folder`` does not exist or is not a folder.
    """
    found = image_files.list_files(folder)
    if not skip or "://" in skip:
        return found
    real_skip = os.path.realpath(skip)
    kept = [item for item in found if os.path.realpath(item.path) != real_skip]
    if len(kept) < len(found):
        logging.info("Not scoring %s: it is the output file.", skip)
    return kept


def check_file(found: image_files.FoundFile, limits: image_files.IngestLimits) -> CheckedFile:
    """Reads one file and runs the ingest's checks: the bytes the ingest would store, or the refusal row."""
    if any(part.startswith(".") for part in found.relative_path.split("/")):
        return _refused(found.path, image_files.REASON_HIDDEN)
    try:
        with tf.io.gfile.GFile(found.path, "rb") as handle:
            data = handle.read()
    except (OSError, tf.errors.OpError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        return _refused(found.path, image_files.REASON_UNREADABLE_PATH, predict.model_error_reason(message))
    checked = image_files.check_image(data, limits)
    if checked.reason:
        return _refused(found.path, checked.reason, checked.detail)
    return CheckedFile(found.path, checked.encoded, None)


def _refused(path: str, reason: str, detail: str = "") -> CheckedFile:
    return CheckedFile(path, None, ScoreRow(path=path, status=REFUSED, reason=reason, detail=detail))


def classify_batch(checked: Sequence[CheckedFile], classify: BatchClassifier, top_k: int) -> list[ScoreRow]:
    """Rows for a batch in file order: one model call for its images, or one call per image if the model refuses.

    Errors other than ``ImageError`` (the model refusing an image) propagate.
    """
    images = [item for item in checked if item.refusal is None]
    rows = {}
    try:
        predictions = classify([item.path for item in images], [item.encoded for item in images]) if images else []
    except ImageError as error:
        logging.debug("The model refused a batch of %d (%s); classifying its files one by one.", len(images), error)
        for item in images:
            rows[item.path] = _one_by_one(item, classify, top_k)
    else:
        for prediction in predictions:
            rows[prediction.path] = _scored(prediction, top_k)
    return [item.refusal or rows[item.path] for item in checked]


def _one_by_one(item: CheckedFile, classify: BatchClassifier, top_k: int) -> ScoreRow:
    try:
        return _scored(classify([item.path], [item.encoded])[0], top_k)
    except ImageError as error:
        return ScoreRow(path=item.path, status=REFUSED, reason=REASON_MODEL, detail=str(error))


def _scored(prediction: Prediction, top_k: int) -> ScoreRow:
    return ScoreRow(
        path=prediction.path,
        status=SCORED,
        classes=prediction.classes[:top_k],
        probabilities=[round(score, DIGITS) for score in prediction.scores[:top_k]],
    )


def _checked_batches(
    files: Sequence[image_files.FoundFile], limits: image_files.IngestLimits, batch_size: int, readers: int
) -> Iterator[list[CheckedFile]]:
    """Batches of checked files, in order; the next batch is read and checked while the caller works on this one."""
    chunks = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, readers)) as pool:
        pending = [pool.submit(check_file, found, limits) for found in chunks[0]] if chunks else []
        for chunk in chunks[1:]:
            current = [future.result() for future in pending]
            pending = [pool.submit(check_file, found, limits) for found in chunk]
            yield current
        if pending:
            yield [future.result() for future in pending]


def score_files(
    files: Sequence[image_files.FoundFile],
    classify: BatchClassifier,
    writer: RowWriter,
    limits: image_files.IngestLimits | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    readers: int = DEFAULT_READERS,
) -> collections.Counter:
    """Writes one row per file, in order, flushing after each batch.

    Args:
      files: From ``list_folder``.
      classify: ``local_batch_classifier(...)``.
      writer: Where the rows go (its ``top_k`` caps the classes per row).
      limits: The ingest's per-file limits (its defaults if None).
      batch_size: Files per batch (a batch holds at most this many model inputs).
      on_progress: Called with the number of files each batch finished.
      readers: Threads reading and checking files ahead of the model.

    Returns:
      Rows per outcome: ``scored``, or the refusal reason.
    """
    counts: collections.Counter = collections.Counter()
    for batch in _checked_batches(files, limits or image_files.IngestLimits(), batch_size, readers):
        for row in classify_batch(batch, classify, writer.top_k):
            writer.write(row)
            counts[row.reason or SCORED] += 1
        writer.flush()
        if on_progress:
            on_progress(len(batch))
    return counts


class ScoringStoppedError(RuntimeError):
    """An error stopped the run; the rows written before it are in the output file."""


def score_folder(
    folder: str,
    classify: BatchClassifier,
    output: str,
    model: str = "",
    top_k: int = DEFAULT_TOP_K,
    overwrite: bool = False,
    limits: image_files.IngestLimits | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Scores every file under ``folder`` into ``output`` (``.csv`` or ``.jsonl``).

    Args:
      folder: The folder (searched recursively; hidden files get a "hidden file" row).
      classify: ``local_batch_classifier(...)``.
      output: The rows file; its extension picks the format.
      model: What the summary names as the model (e.g. the version folder and why).
      top_k: Classes per row (fewer if the model returns fewer).
      overwrite: Replace ``output`` if it exists.
      limits: The ingest's per-file limits (its defaults if None).
      batch_size: Files per batch.
      on_start: Called with the number of files found, before the first batch.
      on_progress: Called with the number of files each batch finished.

    Raises:
      image_files.NoImagesError: If ``folder`` is not a folder.
      ValueError: If ``output`` is neither .csv nor .jsonl.
      FileExistsError: If ``output`` exists and ``overwrite`` is False.
      ScoringStoppedError: If an error other than a refused file stopped the run (e.g. the
        model failing on every input), naming how many rows were written.
    """
    started = time.monotonic()
    output_format(output)
    files = list_folder(folder, skip=output)
    if on_start:
        on_start(len(files))
    with RowWriter(output, top_k, overwrite) as writer:
        try:
            counts = score_files(files, classify, writer, limits, batch_size, on_progress)
        except Exception as error:
            raise ScoringStoppedError(
                f"Scoring stopped after {writer.rows} of {len(files)} files ({type(error).__name__}: "
                f"{predict.model_error_reason(str(error))}); their rows are in {output}."
            ) from error
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    refused = {reason: count for reason, count in by_count if reason != SCORED}
    return ScoreSummary(
        folder=folder,
        output=output,
        model=model,
        files=len(files),
        rows=writer.rows,
        scored=counts[SCORED],
        refused=refused,
        seconds=time.monotonic() - started,
    )
