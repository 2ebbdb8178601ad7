"""Reading and writing the AVA annotation formats (v2.1 / v2.2).

Formats (https://research.google.com/ava/download.html, and the ActivityNet
evaluator ``Evaluation/get_ava_performance.py`` that reads them):

* Box CSV, no header, one row per (person box, action)::

      video_id,timestamp,x1,y1,x2,y2,action_id,person_id_or_score

  ``timestamp`` is an integer second (keyframe), written zero padded as ``0902``
  in the official files; ``x1, y1, x2, y2`` are normalized to [0, 1] with
  (0, 0) the top-left and (1, 1) the bottom-right corner of the frame.  The
  last column is the person (track) id in ground-truth files and the score in
  detection files.  Person-detector CSVs leave ``action_id`` empty.
* Excluded-timestamps CSV: ``video_id,timestamp`` rows.
* Label map ``.pbtxt``: ``item { name: "..." id: N }`` blocks (the 2018/2019
  ActivityNet lists) or ``label { name: "..." label_id: N label_type: ... }``
  blocks (the full ``ava_action_list_v2.x.pbtxt``).

Choices made here (the official readers are plain ``csv.reader`` loops):

* A 7-column row (no last column) is accepted, as the official reader does;
  its ``extra`` is 1.0, the score the official reader gives such a row.
* The reader accepts timestamps with or without zero padding (``902`` and
  ``0902`` are the same keyframe, as in the official ``"%s,%04d"`` key); the
  writer zero pads to 4 digits like the official ground-truth files.
* Fields are not quoted (AVA files never are); blank lines are skipped.
* Bad input raises :class:`AvaFormatError` whose message is
  ``<file>:<line>: <what was expected>`` (1-based line numbers).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from stal.errors import DataError
from stal.formats.ava_csv import (AvaFormatError, VideoVocab, boxes_valid, parse_int_field, read_box_csv,
                                   read_error, valid_video_id)
from stal.io.atomic import atomic_write_text
from stal.io.safe_pickle import load_pickle

PathLike = Union[str, "os.PathLike[str]"]

CSV_COLUMNS: tuple[str, ...] = (
    "video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id_or_score",
)


# ----------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------


@dataclass
class AvaTable:
    """Rows of an AVA box CSV as column arrays (N rows).

    Attributes:
        video: object array (N,) of video id strings.
        timestamp: int64 (N,), keyframe second.
        boxes: float (N, 4), normalized ``x1, y1, x2, y2`` in [0, 1], (0, 0) the
            top-left corner of the frame; no +1 pixel convention.  float32 by
            default; float64 when read with ``float_dtype=np.float64`` (the
            evaluator does this to reproduce the official numbers bit for bit).
        action: int64 (N,), action id; -1 where the CSV column is empty
            (person-detector CSVs).
        extra: float (N,), person id for ground truth, score for detections;
            same float dtype as ``boxes``.
    """

    video: np.ndarray
    timestamp: np.ndarray
    boxes: np.ndarray
    action: np.ndarray
    extra: np.ndarray

    def __post_init__(self) -> None:
        # Coerce to the documented dtypes so code that builds tables from lists works,
        # and check shapes once here instead of in every consumer.
        self.video = np.asarray(self.video, dtype=object).reshape(-1)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64).reshape(-1)
        float_dtype = _float_dtype_of(self.boxes)
        self.boxes = np.asarray(self.boxes, dtype=float_dtype).reshape(-1, 4)
        self.action = np.asarray(self.action, dtype=np.int64).reshape(-1)
        self.extra = np.asarray(self.extra, dtype=float_dtype).reshape(-1)
        n = len(self.video)
        sizes = {
            "timestamp": len(self.timestamp), "boxes": len(self.boxes),
            "action": len(self.action), "extra": len(self.extra),
        }
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"AvaTable columns differ in length: video has {n} rows, {wrong}")

    def __len__(self) -> int:
        return len(self.video)

    @classmethod
    def empty(cls, float_dtype: type = np.float32) -> "AvaTable":
        """A table with no rows."""
        return cls(
            video=np.empty(0, dtype=object),
            timestamp=np.empty(0, dtype=np.int64),
            boxes=np.empty((0, 4), dtype=float_dtype),
            action=np.empty(0, dtype=np.int64),
            extra=np.empty(0, dtype=float_dtype),
        )

    def take(self, index: np.ndarray) -> "AvaTable":
        """Rows selected by an integer index array or a boolean mask of length N."""
        return AvaTable(
            video=self.video[index],
            timestamp=self.timestamp[index],
            boxes=self.boxes[index],
            action=self.action[index],
            extra=self.extra[index],
        )

    @classmethod
    def concatenate(cls, tables: Sequence["AvaTable"]) -> "AvaTable":
        """Rows of all ``tables`` in order (float dtype of the first table)."""
        if not tables:
            return cls.empty()
        float_dtype = tables[0].boxes.dtype
        return cls(
            video=np.concatenate([t.video for t in tables]),
            timestamp=np.concatenate([t.timestamp for t in tables]),
            boxes=np.concatenate([t.boxes.astype(float_dtype) for t in tables]),
            action=np.concatenate([t.action for t in tables]),
            extra=np.concatenate([t.extra.astype(float_dtype) for t in tables]),
        )


def _float_dtype_of(array: object) -> np.dtype:
    """float64 when given float64 data, float32 otherwise (the documented default)."""
    dtype = getattr(array, "dtype", None)
    if dtype is not None and dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def frame_key(video: str, timestamp: int) -> str:
    """The official keyframe key ``"<video_id>,<%04d timestamp>"``, e.g. ``"abc,0902"``."""
    return "%s,%04d" % (video, int(timestamp))


# ----------------------------------------------------------------------------------------
# Files: reading text and writing atomically
# ----------------------------------------------------------------------------------------


def _read_text(path: PathLike) -> str:
    """Whole file as text, newlines normalized to ``\\n``; a missing file is a DataError."""
    try:
        # utf-8-sig: tolerate a byte-order mark written by spreadsheet programs.
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise read_error(path, e) from None
    return text.replace("\r\n", "\n")


# ----------------------------------------------------------------------------------------
# Box CSV: reading
# ----------------------------------------------------------------------------------------


def read_ava_csv(path: PathLike, *, float_dtype: type = np.float32) -> AvaTable:
    """Read an AVA box CSV (ground truth, detections or person-detector boxes).

    Args:
        path: CSV without header, rows ``video_id,timestamp,x1,y1,x2,y2,action_id,
            person_id_or_score`` (the last column may be missing: ``extra`` = 1.0).
        float_dtype: dtype of ``boxes`` and ``extra``; ``np.float64`` keeps the exact
            values the official evaluator parses.

    Returns:
        AvaTable with N rows in file order (blank lines skipped).

    Raises:
        DataError: the file cannot be read.
        AvaFormatError: a row has the wrong number of columns, a non-numeric value, a
            timestamp that is not a non-negative integer, a coordinate outside [0, 1],
            x2 < x1 or y2 < y1, or a non-finite last column.  The message names the
            file and the 1-based line number.
    """
    vocab = VideoVocab()
    batch = read_box_csv(path, vocab=vocab)
    if not len(batch):
        return AvaTable.empty(float_dtype)
    return AvaTable(video=np.array(vocab.names, dtype=object)[batch.video], timestamp=batch.timestamp,
                    boxes=batch.boxes.astype(float_dtype), action=batch.action, extra=batch.extra.astype(float_dtype))


# ----------------------------------------------------------------------------------------
# Box CSV: writing
# ----------------------------------------------------------------------------------------


def write_ava_csv(
    path: PathLike,
    table: AvaTable,
    *,
    score: bool = False,
    box_decimals: int = 3,
    score_decimals: int = 6,
) -> None:
    """Write ``table`` as an AVA box CSV, atomically.

    Args:
        path: destination file.
        table: rows to write, in order (detections: see ``score``).
        score: False for ground truth (last column = integer person id), True for
            detections (last column = score with ``score_decimals`` decimals), written
            keyframe by keyframe in order of first appearance, each keyframe's rows by
            descending score (stable): PySlowFast's evaluator matches a keyframe's
            detections in file order, the official one by score; on such a file they agree.
        box_decimals: decimals of the normalized coordinates (AVA files use 3).
        score_decimals: decimals of the score (AVA prediction files use 6).

    Timestamps are zero padded to 4 digits (``0902``) like the official files; an
    action id of -1 is written as an empty field (person-detector CSV layout).

    Raises:
        ValueError: the table holds something the reader would reject (a box outside
            [0, 1] or with x2 < x1 / y2 < y1, a negative timestamp, a non-finite last
            column, a video id with a comma or a newline), or ``score`` is False and
            a person id is not an integer.
    """
    for video in set(table.video.tolist()):
        if not isinstance(video, str) or "," in video or "\n" in video or not video:
            raise ValueError(f"video id {video!r} cannot be written to a CSV row")
    # Refuse to write a file that read_ava_csv would reject.
    bad = np.flatnonzero(~boxes_valid(table.boxes.astype(np.float64)))
    if len(bad):
        raise ValueError(
            f"row {bad[0]} has box {table.boxes[bad[0]].tolist()}: expected normalized "
            f"x1 <= x2, y1 <= y2 in [0, 1] ({len(bad)} such rows)"
        )
    if len(table) and (table.timestamp.min() < 0 or not np.isfinite(table.extra).all()):
        raise ValueError("timestamps must be non-negative and person ids / scores finite")
    extra = table.extra.astype(np.float64)
    if not score and not np.array_equal(extra, np.round(extra)):
        raise ValueError("person ids must be integers; pass score=True to write scores")
    if score:
        table = table.take(keyframe_score_order(table))
        extra = table.extra.astype(np.float64)
    box_format = ",".join([f"%.{box_decimals}f"] * 4)
    last_format = f"%.{score_decimals}f" if score else "%d"
    row_format = f"%s,%04d,{box_format},%s,{last_format}\n"
    boxes = table.boxes.astype(np.float64).tolist()
    last = extra.tolist() if score else np.round(extra).astype(np.int64).tolist()
    actions = ["" if a == -1 else str(a) for a in table.action.tolist()]
    text = "".join(
        row_format % (v, t, b[0], b[1], b[2], b[3], a, e)
        for v, t, b, a, e in zip(table.video.tolist(), table.timestamp.tolist(), boxes, actions, last)
    )
    atomic_write_text(path, text)


def keyframe_score_order(table: AvaTable) -> np.ndarray:
    """int64 (N,) row order: keyframes in order of first appearance, rows of a keyframe by
    descending ``extra`` (the score); stable, so equal scores keep table order."""
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    _, video_code = np.unique(table.video.astype(str), return_inverse=True)
    keys = np.stack([video_code.reshape(-1), table.timestamp], axis=1)
    _, first, frame = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    first_seen = np.argsort(np.argsort(first, kind="stable"), kind="stable")[frame.reshape(-1)]
    return np.lexsort((-table.extra.astype(np.float64), first_seen))


# ----------------------------------------------------------------------------------------
# Excluded timestamps
# ----------------------------------------------------------------------------------------


def read_excluded(path: PathLike) -> set[tuple[str, int]]:
    """Read an excluded-timestamps CSV (``video_id,timestamp`` rows, no header).

    Returns:
        Set of ``(video_id, timestamp)``.

    Raises:
        DataError / AvaFormatError naming the file and line.
    """
    excluded: set[tuple[str, int]] = set()
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 2:
            raise AvaFormatError(
                f"{path}:{lineno}: expected 2 columns (video_id,timestamp), got {len(fields)}"
            )
        video, timestamp_field = fields
        if not valid_video_id(video):
            raise AvaFormatError(
                f"{path}:{lineno}: column 1 (video_id): expected a non-empty id without "
                f"surrounding spaces, got {video!r}"
            )
        timestamp = parse_int_field(timestamp_field)
        if timestamp is None or timestamp < 0:
            raise AvaFormatError(
                f"{path}:{lineno}: column 2 (timestamp): expected a non-negative integer "
                f"number of seconds, got {timestamp_field!r}"
            )
        excluded.add((video, timestamp))
    return excluded


# ----------------------------------------------------------------------------------------
# Label map (.pbtxt)
# ----------------------------------------------------------------------------------------

# One token of the protobuf text format: a quoted string, a brace, a colon, or a bare word
# (identifier or number). "#" starts a comment; "," and ";" are optional field separators.
_PBTXT_TOKEN = re.compile(
    r"""\s*(?:(?P<comment>\#.*)
          |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
          |(?P<punct>[{}:,;])
          |(?P<word>[^\s{}:,;"'\#]+))""",
    re.VERBOSE,
)
_BLOCK_NAMES = ("item", "label")
_NAME_KEYS = ("name", "display_name")
_ID_KEYS = ("id", "label_id")


def _tokenize_pbtxt(path: PathLike, text: str) -> list[tuple[str, str, int]]:
    """(kind, value, line) tokens; kind is 'string', 'punct' or 'word'."""
    tokens: list[tuple[str, str, int]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        pos = 0
        while pos < len(line):
            if not line[pos:].strip():
                break
            match = _PBTXT_TOKEN.match(line, pos)
            if match is None:
                raise AvaFormatError(
                    f"{path}:{lineno}: cannot read label map text at {line[pos:].strip()[:20]!r} "
                    f"(unterminated string?)"
                )
            pos = match.end()
            kind = match.lastgroup
            if kind == "comment":
                break
            value = match.group(kind)
            if kind == "punct" and value in ",;":
                continue
            tokens.append((kind, value, lineno))
    return tokens


def _unquote(token: str) -> str:
    """Body of a quoted pbtxt string with the usual backslash escapes resolved."""
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def read_labelmap(path: PathLike) -> dict[int, str]:
    """Read an AVA label map ``.pbtxt``.

    Accepts ``item { name: "..." id: N }`` and ``label { name: "..." label_id: N
    label_type: ... }`` blocks, on one line or several; ``display_name`` is used
    when ``name`` is absent; other fields (and nested blocks) are ignored.

    Returns:
        ``{class_id: name}`` in file order.

    Raises:
        DataError / AvaFormatError naming the file and line (syntax error, block
        without id or name, non-integer or duplicate id).
    """
    tokens = _tokenize_pbtxt(path, _read_text(path))
    labelmap: dict[int, str] = {}
    i = 0
    while i < len(tokens):
        kind, value, lineno = tokens[i]
        if kind != "word" or value not in _BLOCK_NAMES:
            raise AvaFormatError(
                f"{path}:{lineno}: expected a label block 'item {{ name: \"...\" id: N }}', "
                f"got {value!r}"
            )
        i = _expect_open_brace(path, tokens, i + 1, lineno)
        fields, i = _read_pbtxt_block(path, tokens, i, lineno)
        class_id, name = _labelmap_entry(path, lineno, fields)
        if class_id in labelmap:
            raise AvaFormatError(f"{path}:{lineno}: duplicate class id {class_id}")
        labelmap[class_id] = name
    if not labelmap:  # no format reader accepts an empty map: nothing could be trained or scored
        raise AvaFormatError(f"{path}: no label blocks; expected 'item {{ name: \"...\" id: N }}' entries")
    return labelmap


def _expect_open_brace(path: PathLike, tokens: list[tuple[str, str, int]], i: int, lineno: int) -> int:
    """Index after ``{`` (an optional ``:`` before it is allowed by the text format)."""
    if i < len(tokens) and tokens[i][1] == ":" and tokens[i][0] == "punct":
        i += 1
    if i >= len(tokens) or tokens[i][:2] != ("punct", "{"):
        got = tokens[i][1] if i < len(tokens) else "end of file"
        line = tokens[i][2] if i < len(tokens) else lineno
        raise AvaFormatError(f"{path}:{line}: expected '{{', got {got!r}")
    return i + 1


def _read_pbtxt_block(
    path: PathLike, tokens: list[tuple[str, str, int]], i: int, start_line: int
) -> tuple[dict[str, tuple[str, str, int]], int]:
    """Scalar fields of one block up to its ``}`` -> ({key: (kind, value, line)}, next index)."""
    fields: dict[str, tuple[str, str, int]] = {}
    while True:
        if i >= len(tokens):
            raise AvaFormatError(f"{path}:{start_line}: block is not closed with '}}'")
        kind, key, lineno = tokens[i]
        if (kind, key) == ("punct", "}"):
            return fields, i + 1
        if kind != "word":
            raise AvaFormatError(f"{path}:{lineno}: expected a field name, got {key!r}")
        i += 1
        if i < len(tokens) and tokens[i][:2] == ("punct", ":"):
            i += 1
        if i < len(tokens) and tokens[i][:2] == ("punct", "{"):
            # A nested message (e.g. keypoints in TF label maps): skip it.
            _, i = _read_pbtxt_block(path, tokens, i + 1, lineno)
            continue
        if i >= len(tokens) or tokens[i][0] == "punct":
            got = tokens[i][1] if i < len(tokens) else "end of file"
            raise AvaFormatError(f"{path}:{lineno}: expected a value for {key!r}, got {got!r}")
        fields[key] = tokens[i]
        i += 1


def _labelmap_entry(
    path: PathLike, lineno: int, fields: dict[str, tuple[str, str, int]]
) -> tuple[int, str]:
    id_key = next((k for k in _ID_KEYS if k in fields), None)
    if id_key is None:
        raise AvaFormatError(f"{path}:{lineno}: label block has no 'id' (or 'label_id') field")
    kind, value, id_line = fields[id_key]
    try:
        class_id = int(value) if kind == "word" and "_" not in value else None
    except ValueError:
        class_id = None
    if class_id is None:
        raise AvaFormatError(f"{path}:{id_line}: {id_key}: expected an integer, got {value!r}")
    name_key = next((k for k in _NAME_KEYS if k in fields), None)
    if name_key is None:
        raise AvaFormatError(f"{path}:{lineno}: label block has no 'name' (or 'display_name') field")
    kind, value, name_line = fields[name_key]
    if kind != "string":
        raise AvaFormatError(f"{path}:{name_line}: {name_key}: expected a quoted string, got {value!r}")
    return class_id, _unquote(value)


def write_labelmap(path: PathLike, names: dict[int, str]) -> None:
    """Write ``{class_id: name}`` as ``item { name: "..." id: N }`` blocks, atomically.

    Uses the multi-line layout of the official ActivityNet lists, which the
    reference line-based parsers (``line.startswith("  name:")``) also read.
    """
    blocks = []
    for class_id, name in names.items():
        escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        blocks.append(f'item {{\n  name: "{escaped}"\n  id: {int(class_id)}\n}}\n')
    atomic_write_text(path, "".join(blocks))


# ----------------------------------------------------------------------------------------
# Person-box proposals as mmaction2 stores them
# ----------------------------------------------------------------------------------------


def read_proposals_pickle(path: PathLike) -> AvaTable:
    """Person boxes from an mmaction2 proposal pickle, as detection rows (action -1, score).

    Format: ``{"<video_id>,<%04d second>": ndarray (N, 5) rows x1, y1, x2, y2, score}``
    with normalized boxes (e.g. ``ava_dense_proposals_val.FAIR.recall_93.9.pkl``).
    Raises AvaFormatError naming the file and the key on anything else.
    """
    raw = load_pickle(path, what="an mmaction2 proposal pickle", error=AvaFormatError)
    if not isinstance(raw, dict):
        raise AvaFormatError(f"{path}: top level is {type(raw).__name__}; expected {{'video,second': (N, 5) array}}")
    tables = [_proposal_rows(path, key, value) for key, value in raw.items()]
    return AvaTable.concatenate(tables) if tables else AvaTable.empty()


def _proposal_rows(path: PathLike, key: object, value: object) -> AvaTable:
    video, _, second = str(key).rpartition(",")
    array = np.asarray(value, dtype=np.float64) if isinstance(value, (np.ndarray, list)) else None
    if not video or not second.isdigit():
        raise AvaFormatError(f"{path}: key {key!r}; expected '<video_id>,<second>'")
    if array is None or array.ndim != 2 or array.shape[1] != 5:
        raise AvaFormatError(f"{path}: [{key!r}] has shape {getattr(array, 'shape', None)}; expected (N, 5) "
                             f"rows x1, y1, x2, y2, score")
    if len(array) and not boxes_valid(array[:, :4]).all():
        raise AvaFormatError(f"{path}: [{key!r}] has a box outside [0, 1] or with x2 < x1 / y2 < y1")
    n = len(array)
    return AvaTable(video=np.array([video] * n, dtype=object), timestamp=np.full(n, int(second), np.int64),
                    boxes=array[:, :4].astype(np.float32), action=np.full(n, -1, np.int64),
                    extra=array[:, 4].astype(np.float32))


def read_box_list(path: PathLike) -> AvaTable:
    """An AVA box CSV, or an mmaction2 proposal pickle when the name ends in ``.pkl``."""
    return read_proposals_pickle(path) if str(path).endswith(".pkl") else read_ava_csv(path)


# ----------------------------------------------------------------------------------------
# Frame lists (PySlowFast ``frame_lists/train.csv`` / ``val.csv``)
# ----------------------------------------------------------------------------------------

FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels"  # sic: PySlowFast's spelling


def write_frame_list(path: PathLike, videos: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Write a PySlowFast frame list: ``[(video_id, [frame path relative to the frame dir])]``.

    Space separated, one row per frame: ``original_vido_id video_id frame_id path labels``
    with ``video_id`` the 0-based video position, ``frame_id`` the 0-based frame index and
    ``labels`` ``""`` (AVA frame lists carry no labels). Written atomically.
    """
    lines = [FRAME_LIST_HEADER]
    for video_index, (video, paths) in enumerate(videos):
        if not valid_video_id(video) or " " in video:
            raise AvaFormatError(f"{path}: video id {video!r} cannot be written (empty or has spaces)")
        lines += [f'{video} {video_index} {i} {p} ""' for i, p in enumerate(paths)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_frame_list(path: PathLike) -> dict[str, list[str]]:
    """``{video_id: [frame paths in frame_id order]}`` from a PySlowFast frame list.

    Raises AvaFormatError ``<file>:<line>: ...`` on a missing header, a row without 5
    fields, a non-integer frame id, or frame ids that do not run 0, 1, 2, ... per video.
    """
    lines = _read_text(path).splitlines()
    if not lines or lines[0].split() != FRAME_LIST_HEADER.split():
        raise AvaFormatError(f"{path}:1: expected the header '{FRAME_LIST_HEADER}'")
    videos: dict[str, list[str]] = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 5:
            raise AvaFormatError(f"{path}:{lineno}: expected 5 space-separated fields "
                                 f"({FRAME_LIST_HEADER}), got {len(fields)}")
        video, _, frame_id, frame_path, _ = fields
        paths = videos.setdefault(video, [])
        if frame_id != str(len(paths)):
            raise AvaFormatError(f"{path}:{lineno}: frame_id {frame_id!r} of {video}; expected {len(paths)}")
        paths.append(frame_path)
    return videos


__all__ = [
    "AvaFormatError",
    "AvaTable",
    "CSV_COLUMNS",
    "frame_key",
    "keyframe_score_order",
    "read_box_list",
    "read_proposals_pickle",
    "read_ava_csv",
    "read_excluded",
    "read_frame_list",
    "read_labelmap",
    "write_ava_csv",
    "write_frame_list",
    "write_labelmap",
]
