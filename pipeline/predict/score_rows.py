"""The rows ``image-pipeline score`` writes: one per file, CSV or JSONL, with one writer and one reader.

CSV columns: ``path, status, reason, detail, class_1, probability_1, ...``; JSONL:
one ``ScoreRow`` object per line. ``ScoreSummary`` counts what a run wrote, and
``format_summary`` is its console line.
"""

from __future__ import annotations

import csv
import json
import os
from types import TracebackType
from typing import Literal

import pydantic
import tensorflow as tf

SCORED = "scored"
REFUSED = "refused"
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
_FIXED_COLUMNS = ("path", "status", "reason", "detail")
DIGITS = 6  # probabilities as written: float32 carries about 7 significant digits


class ScoreRow(pydantic.BaseModel):
    """One file's row: its top classes and probabilities (best first), or why it was refused.

    Attributes:
      path: The file, as found under the scored folder.
      status: ``scored`` or ``refused``.
      reason: Why it was refused (an ingest reason, or ``refused by the model``); empty if scored.
      detail: More about the refusal (Pillow's or the model's message), if any.
      classes: The top classes, best first (empty if refused).
      probabilities: Their probabilities, in the same order.
    """

    path: str
    status: Literal["scored", "refused"]
    reason: str = ""
    detail: str = ""
    classes: list[str] = pydantic.Field(default_factory=list)
    probabilities: list[float] = pydantic.Field(default_factory=list)


class ScoreSummary(pydantic.BaseModel):
    """What a scoring run did: every count is counted from the rows written.

    Attributes:
      folder: The scored folder.
      output: The rows file.
      model: The SavedModel version folder used, and why it was chosen.
      files: Files found under the folder.
      rows: Rows written (one per file).
      scored: Rows with a prediction.
      refused: Refused rows per reason, most frequent first (then by name).
      seconds: Wall time from listing to the last row.
    """

    folder: str
    output: str
    model: str
    files: int
    rows: int
    scored: int
    refused: dict[str, int]
    seconds: float

    @property
    def files_per_second(self) -> float:
        """Rows written per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def output_format(path: str) -> str:
    """``csv`` or ``jsonl``, from the output file's extension.

    Raises:
      ValueError: For any other extension.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"Output {path!r}: name it *.csv or *.jsonl (the extension picks the format).")
    return FORMATS[extension]


class RowWriter:
    """Writes rows to a ``.csv`` or ``.jsonl`` file (any ``tf.io.gfile`` path) as they come.

    CSV columns: ``path, status, reason, detail, class_1, probability_1, ...,
    class_<top_k>, probability_<top_k>`` (cells past the classes the model
    returned stay empty). JSONL: one ``ScoreRow`` object per line.
    """

    def __init__(self, path: str, top_k: int, overwrite: bool = False) -> None:
        """Opens ``path`` and writes the CSV header.

        Raises:
          ValueError: If the extension is neither .csv nor .jsonl.
          FileExistsError: If the file exists and ``overwrite`` is False.
        """
        self.path, self.top_k, self.rows = path, top_k, 0
        self._format = output_format(path)
        if tf.io.gfile.exists(path) and not overwrite:
            raise FileExistsError(f"Output {path!r} exists already: pass --overwrite, or name another file.")
        parent = os.path.dirname(path)
        if parent:
            tf.io.gfile.makedirs(parent)
        self._handle = tf.io.gfile.GFile(path, "w")
        self._csv = csv.writer(self._handle, lineterminator="\n") if self._format == "csv" else None
        if self._csv:
            self._csv.writerow(csv_header(top_k))

    def write(self, row: ScoreRow) -> None:
        """Appends one row (flushed with the next ``flush``)."""
        if self._csv:
            self._csv.writerow(_csv_cells(row, self.top_k))
        else:
            self._handle.write(row.model_dump_json() + "\n")
        self.rows += 1

    def flush(self) -> None:
        """Pushes the rows written so far to the file."""
        self._handle.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        self._handle.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def csv_header(top_k: int) -> list[str]:
    """The CSV columns for ``top_k`` classes."""
    ranked = [column for rank in range(1, top_k + 1) for column in (f"class_{rank}", f"probability_{rank}")]
    return [*_FIXED_COLUMNS, *ranked]


def _csv_cells(row: ScoreRow, top_k: int) -> list[str]:
    ranked: list[str] = []
    for rank in range(top_k):
        if rank < len(row.classes):
            ranked += [row.classes[rank], repr(row.probabilities[rank])]
        else:
            ranked += ["", ""]
    return [row.path, row.status, row.reason, row.detail, *ranked]


def read_rows(path: str) -> list[ScoreRow]:
    """The rows of a file ``RowWriter`` wrote (format from the extension).

    Raises:
      ValueError: If the extension is neither .csv nor .jsonl, or a row does not parse.
    """
    with tf.io.gfile.GFile(path, "r") as handle:
        text = handle.read()
    if output_format(path) == "jsonl":
        return [ScoreRow.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]
    rows = []
    for cells in csv.DictReader(text.splitlines()):
        ranks = range(1, (len(cells) - len(_FIXED_COLUMNS)) // 2 + 1)
        ranked = [(cells[f"class_{rank}"], cells[f"probability_{rank}"]) for rank in ranks if cells[f"class_{rank}"]]
        rows.append(
            ScoreRow(
                **{column: cells[column] for column in _FIXED_COLUMNS},
                classes=[name for name, _ in ranked],
                probabilities=[float(probability) for _, probability in ranked],
            )
        )
    return rows


def format_summary(summary: ScoreSummary) -> str:
    """The final line(s): counts of scored and refused files by reason, speed, and where the rows are."""
    refused = sum(summary.refused.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in summary.refused.items())
    line = (
        f"Scored {summary.scored} of {summary.files} files, refused {refused}"
        + (f" ({reasons})" if reasons else "")
        + f"; {summary.rows} rows in {summary.output} ({summary.seconds:.1f} s, {summary.files_per_second:.0f} files/s)."
    )
    if not summary.files:
        line += f" {summary.folder} holds no files."
    elif not summary.scored:
        line += " No file could be scored: every row gives its reason."
    return line
