"""The AVA box CSV reader: columnar and streaming (pyarrow), with one row parser behind it.

Every AVA box CSV stal reads goes through here: :func:`stal.formats.ava.read_ava_csv`
(datasets, data preparation) and the evaluator (:mod:`stal.evaluation.frame_map`), so both
accept and reject exactly the same files with the same messages.

The AVA validation detection file of a SlowFast-style model holds about 69 million
rows (one per person box and class).  Parsing it line by line in Python costs more than
the whole evaluation should; numpy string splitting still needs every field as a
Python string.  pyarrow's CSV reader converts whole columns in C++; the file is read in
line-aligned byte ranges (each parsed on all cores), so memory stays bounded whatever
the file size.

Format (see :mod:`stal.formats.ava`): no header; ``video_id,timestamp,x1,y1,x2,y2,
action_id[,person_id_or_score]``.  A file has 7 or 8 columns (7: the last column is
taken as 1.0, as the official reader does); ``0902`` and ``902`` are the same
timestamp; an empty action field reads as -1 (person-detector CSVs); blank lines are
skipped.  Floats are parsed to float64 with correct rounding, i.e. to exactly the
values Python's ``float()`` (and so the official evaluator) gives.

Anything the columnar path does not accept (a wrong column count, a non-numeric
field, a box outside [0, 1], x2 < x1, a non-finite score, a mixed 7/8-column layout,
odd spacing) hands the rest of the file, from the first row of the offending block,
to a line-by-line parser: it either raises :class:`stal.errors.DataError` naming the
file, the 1-based line and what was expected, or reads the rows the format allows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np

from stal.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


class AvaFormatError(DataError):
    """A file does not follow the AVA format; the message names the file and the line."""


_COLUMNS_8 = ("video", "timestamp", "x1", "y1", "x2", "y2", "action", "extra")
_LAYOUT = "video_id,timestamp,x1,y1,x2,y2,action_id,person_id_or_score"
# Bytes per pyarrow block: about 300k AVA rows; large enough to amortise the per-block
# numpy work, small enough that the reader's buffers stay a few tens of MB.
DEFAULT_BLOCK_BYTES = 16 << 20
_SLOW_BATCH_ROWS = 1 << 20
# Below this size the line parser is faster than importing pyarrow (about 0.2 s).
SMALL_FILE_BYTES = 1 << 20
# Files are parsed in line-aligned byte ranges of this size, each by pyarrow's
# multi-threaded read_csv (0: one streaming reader, blocks parsed one after another).
PARALLEL_CHUNK_BYTES = 64 << 20


class VideoVocab:
    """Video id strings <-> dense int32 codes, shared by every table of one evaluation."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        """Code of ``name``, adding it when new."""
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def codes(self, names: "list[str] | np.ndarray") -> np.ndarray:
        """int32 (N,) codes of the strings ``names`` (a Python loop: use on small arrays)."""
        return np.fromiter(map(self.code, names), dtype=np.int32, count=len(names))


@dataclass
class BoxBatch:
    """Consecutive data rows of a box CSV (or of an in-memory table), as columns.

    Attributes:
        video: int32 (N,) codes of a :class:`VideoVocab`.
        timestamp: int64 (N,) keyframe seconds (>= 0).
        boxes: float64 (N, 4) normalized ``x1, y1, x2, y2`` in [0, 1], x1 <= x2, y1 <= y2.
        action: int64 (N,) action ids; -1 for an empty field.
        extra: float64 (N,) score (detections) or person id (ground truth); finite.
        first_row: 0-based index of the first row among the file's data rows (blank
            lines do not count); :func:`line_of_row` turns a row into a line number.
    """

    video: np.ndarray
    timestamp: np.ndarray
    boxes: np.ndarray
    action: np.ndarray
    extra: np.ndarray
    first_row: int = 0

    def __len__(self) -> int:
        return len(self.video)

    def take(self, index: np.ndarray) -> "BoxBatch":
        """Rows selected by a boolean mask or an index array (first_row kept)."""
        return BoxBatch(self.video[index], self.timestamp[index], self.boxes[index],
                        self.action[index], self.extra[index], self.first_row)

    @classmethod
    def concatenate(cls, batches: list["BoxBatch"]) -> "BoxBatch":
        if not batches:
            return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty((0, 4)),
                       np.empty(0, np.int64), np.empty(0))
        return cls(*(np.concatenate([getattr(b, f) for b in batches])
                     for f in ("video", "timestamp", "boxes", "action", "extra")),
                   first_row=batches[0].first_row)


# ----------------------------------------------------------------------------------------
# Columnar path
# ----------------------------------------------------------------------------------------


def iter_box_csv(
    path: PathLike, *, vocab: VideoVocab, block_bytes: Optional[int] = None
) -> Iterator[BoxBatch]:
    """Stream an AVA box CSV as :class:`BoxBatch` blocks, in file order.

    Args:
        path: the CSV (module doc for the format).
        vocab: video ids are coded with (and added to) this vocabulary.
        block_bytes: bytes of text per block (None: DEFAULT_BLOCK_BYTES).

    Raises:
        DataError: missing/unreadable file, or a bad row (file, line, what was expected).
    """
    num_columns = sniff_columns(path)
    if num_columns is None:
        return
    if num_columns not in (7, 8) or os.path.getsize(path) < SMALL_FILE_BYTES:
        yield from _iter_slow(path, vocab=vocab, start_row=0)
        return
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = list(_COLUMNS_8[:num_columns])
    types = {"video": pa.dictionary(pa.int32(), pa.string()), "timestamp": pa.int64(),
             "action": pa.int64(), **{n: pa.float64() for n in names[2:6]}}
    if num_columns == 8:
        types["extra"] = pa.float64()
    options = dict(
        read_options=pacsv.ReadOptions(column_names=names, block_size=block_bytes or DEFAULT_BLOCK_BYTES),
        # AVA fields are never quoted; no quoting makes the tokenizer faster.
        parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False,
                                          newlines_in_values=False),
        # Only an empty field is null ("NA", "nan" in an id column are errors).
        convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                             quoted_strings_can_be_null=False),
    )
    source = _chunked_batches(path, options) if PARALLEL_CHUNK_BYTES else _streaming_batches(path, options)
    rows_done = 0
    try:
        for record_batch in source:
            batch = _convert_batch(record_batch, vocab=vocab, first_row=rows_done)
            if batch is None:
                break
            rows_done += len(batch)
            yield batch
        else:
            return
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    finally:
        source.close()
    # Something in the block starting at rows_done is not plain AVA: the line parser
    # explains it (or reads it, for layouts it allows).
    yield from _iter_slow(path, vocab=vocab, start_row=rows_done)


def _streaming_batches(path: PathLike, options: dict) -> Iterator:
    """pyarrow record batches of one streaming reader (blocks parsed one after the other)."""
    import pyarrow.csv as pacsv

    yield from pacsv.open_csv(os.fspath(path), **options)


def _chunked_batches(path: PathLike, options: dict) -> Iterator:
    """pyarrow record batches of the file read in line-aligned byte ranges of
    PARALLEL_CHUNK_BYTES, each parsed by ``read_csv`` on all cores."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # A plain file, not a memory map: mapped pages of a 4 GB file would count as resident.
    with pa.OSFile(os.fspath(path), "r") as file:
        size, start = file.size(), 0
        while start < size:
            end = _line_end(file, min(start + PARALLEL_CHUNK_BYTES, size), size)
            file.seek(start)
            table = pacsv.read_csv(pa.BufferReader(file.read_buffer(end - start)), **options)
            yield from table.to_batches()
            start = end


def _line_end(file, position: int, size: int) -> int:
    """Offset just past the first newline at or after ``position`` (``size`` if none)."""
    while position < size:
        window = file.read_at(min(1 << 16, size - position), position)
        found = window.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(window)
    return size


def _convert_batch(record_batch, *, vocab: VideoVocab, first_row: int) -> Optional[BoxBatch]:
    """numpy columns of one pyarrow batch, or None when a row needs the line parser."""
    columns = record_batch.columns
    if any(c.null_count for i, c in enumerate(columns) if i != 6):
        return None
    video_column = columns[0]
    dictionary = video_column.dictionary.to_pylist()
    if not all(valid_video_id(v) for v in dictionary):
        return None
    codes = np.fromiter(map(vocab.code, dictionary), dtype=np.int32, count=len(dictionary))
    video = codes[video_column.indices.to_numpy(zero_copy_only=False)]
    timestamp = columns[1].to_numpy()
    boxes = np.stack([c.to_numpy() for c in columns[2:6]], axis=1)
    action_column = columns[6]
    if action_column.null_count:
        action_column = action_column.fill_null(-1)
    action = action_column.to_numpy()
    n = len(video)
    extra = columns[7].to_numpy() if len(columns) == 8 else np.ones(n)
    if n and not _batch_ok(timestamp, boxes, extra):
        return None
    return BoxBatch(video, timestamp, boxes, action, extra, first_row)


def _batch_ok(timestamp: np.ndarray, boxes: np.ndarray, extra: np.ndarray) -> bool:
    """Whether every row is valid; reductions first (NaN makes min/max NaN and fail)."""
    lo, hi = boxes.min(), boxes.max()
    return bool(timestamp.min() >= 0 and lo >= 0.0 and hi <= 1.0
                and (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
                and np.isfinite(extra.min()) and np.isfinite(extra.max()))


def boxes_valid(coords: np.ndarray) -> np.ndarray:
    """(N,) bool: all coordinates in [0, 1] (NaN fails) and x1 <= x2, y1 <= y2."""
    inside = ((coords >= 0.0) & (coords <= 1.0)).all(axis=1)
    ordered = (coords[:, 0] <= coords[:, 2]) & (coords[:, 1] <= coords[:, 3])
    return inside & ordered


def valid_video_id(video: str) -> bool:
    """Non-empty, no surrounding spaces, no byte-order mark (a leading one is stripped when
    the file is decoded as utf-8-sig; anywhere else it would silently make a new video)."""
    return bool(video) and video == video.strip() and "\ufeff" not in video


def read_error(path: PathLike, exc: OSError, *, expected: str = "a file") -> DataError:
    """The one-line DataError for an OSError raised while opening or reading ``path``."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: file not found")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a directory, expected {expected}")
    return DataError(f"{path}: cannot read ({exc.strerror})")


def sniff_columns(path: PathLike) -> Optional[int]:
    """Columns of the first non-blank line, None for a file without data rows."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    return line.count(b",") + 1
    except OSError as e:
        raise read_error(path, e, expected="a CSV file") from None
    return None


def prefetch(batches: Iterator[BoxBatch], *, depth: int = 2) -> Iterator[BoxBatch]:
    """Iterate ``batches`` in a background thread, ``depth`` blocks ahead.

    pyarrow parses and numpy evaluates with the GIL released, so the next block is read
    on the second core while this one is evaluated.  Exceptions reach the consumer.
    """
    import queue
    import threading

    slots: "queue.Queue[tuple[str, object]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slots.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            else:
                slots.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(("error", exc))
        finally:
            getattr(batches, "close", lambda: None)()  # release the pyarrow reader in this thread

    thread = threading.Thread(target=produce, name="csv-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise item  # type: ignore[misc]
            yield item  # type: ignore[misc]
    finally:
        # The consumer stopped (or failed): let the producer see it, unblock it, wait for
        # it, so no pyarrow call is still running when the interpreter exits.
        stop.set()
        while thread.is_alive():
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def read_box_csv(path: PathLike, *, vocab: VideoVocab) -> BoxBatch:
    """The whole file as one :class:`BoxBatch` (for files that fit in memory)."""
    return BoxBatch.concatenate(list(iter_box_csv(path, vocab=vocab)))


# ----------------------------------------------------------------------------------------
# Line-by-line path: explains bad rows, reads unusual but valid layouts
# ----------------------------------------------------------------------------------------


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield lineno, line.rstrip("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def line_of_row(path: PathLike, row: int) -> int:
    """1-based line number of data row ``row`` (0-based, blank lines not counted)."""
    for index, (lineno, _) in enumerate(iter_lines(path)):
        if index == row:
            return lineno
    raise ValueError(f"{path} has no data row {row}")


def _iter_slow(path: PathLike, *, vocab: VideoVocab, start_row: int) -> Iterator[BoxBatch]:
    rows: list[tuple] = []
    first = start_row
    for index, (lineno, line) in enumerate(iter_lines(path)):
        if index < start_row:
            continue
        rows.append(parse_row(path, lineno, line))
        if len(rows) == _SLOW_BATCH_ROWS:
            yield _rows_to_batch(rows, vocab, first)
            first += len(rows)
            rows = []
    if rows:
        yield _rows_to_batch(rows, vocab, first)


def _rows_to_batch(rows: list[tuple], vocab: VideoVocab, first_row: int) -> BoxBatch:
    video, ts, box, action, extra = zip(*rows)
    return BoxBatch(vocab.codes(video), np.array(ts, np.int64), np.array(box, np.float64),
                    np.array(action, np.int64), np.array(extra, np.float64), first_row)


def parse_row(path: PathLike, lineno: int, line: str) -> tuple[str, int, tuple[float, float, float, float], int, float]:
    """One CSV row -> (video, timestamp, (x1, y1, x2, y2), action, extra); AvaFormatError if bad."""
    fields = line.split(",")
    where = f"{path}:{lineno}"
    if len(fields) not in (7, 8):
        raise AvaFormatError(f"{where}: expected 8 columns ({_LAYOUT}) or 7 (without the last), got {len(fields)}")
    if not valid_video_id(fields[0]):
        raise AvaFormatError(f"{where}: column 1 (video_id): expected a non-empty id without "
                             f"surrounding spaces, got {fields[0]!r}")
    timestamp = parse_int_field(fields[1])
    if timestamp is None or timestamp < 0:
        header = lineno == 1 and not any(ch.isdigit() for ch in fields[1])
        hint = " (AVA CSV files have no header row)" if header else ""
        raise AvaFormatError(f"{where}: column 2 (timestamp): expected a non-negative integer "
                             f"number of seconds, got {fields[1]!r}{hint}")
    box = tuple(_coordinate(where, fields[2 + j], 3 + j, name) for j, name in enumerate(("x1", "y1", "x2", "y2")))
    if box[2] < box[0] or box[3] < box[1]:
        raise AvaFormatError(f"{where}: expected x1 <= x2 and y1 <= y2, got box {box}")
    action = parse_int_field(fields[6]) if fields[6].strip() else -1
    if action is None:
        raise AvaFormatError(f"{where}: column 7 (action_id): expected an integer or an empty field, "
                             f"got {fields[6]!r}")
    extra = _number(where, fields[7], 8, "person_id_or_score") if len(fields) == 8 else 1.0
    if not math.isfinite(extra):
        raise AvaFormatError(f"{where}: column 8 (person_id_or_score): expected a finite number, "
                             f"got {fields[7]!r}")
    return fields[0], timestamp, box, action, extra


def parse_int_field(field: str) -> int | None:
    """int(field), or None when it is not a plain integer that fits int64 (the caller
    words the error). Python's int() accepts "1_000"; the CSV format does not."""
    if "_" in field:
        return None
    try:
        value = int(field)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


def _number(where: str, field: str, column: int, name: str) -> float:
    if "_" not in field:
        try:
            return float(field)
        except ValueError:
            pass
    raise AvaFormatError(f"{where}: column {column} ({name}): expected a number, got {field!r}")


def _coordinate(where: str, field: str, column: int, name: str) -> float:
    value = _number(where, field, column, name)
    if not 0.0 <= value <= 1.0:
        raise AvaFormatError(f"{where}: column {column} ({name}): expected a normalized coordinate "
                             f"in [0, 1], got {field!r}")
    return value


__all__ = ["AvaFormatError", "BoxBatch", "boxes_valid", "VideoVocab", "iter_box_csv", "iter_lines", "line_of_row", "parse_int_field",
           "parse_row", "prefetch", "read_box_csv", "sniff_columns", "valid_video_id"]
