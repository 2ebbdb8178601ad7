"""Reading and writing AVA CSVs, label maps and excluded-timestamp files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stal.formats.ava import (
    AvaFormatError,
    AvaTable,
    frame_key,
    read_ava_csv,
    read_excluded,
    read_labelmap,
    keyframe_score_order,
    write_ava_csv,
    write_labelmap,
)
from stal.errors import DataError
from stal.io.atomic import atomic_write_text

GOOD_ROWS = [
    "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1",
    "-5KQ66BBWC4,0902,0.226,0.032,0.366,0.497,12,0",
    "a_b-c,1798,0.000,0.000,1.000,1.000,1,7",
]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _table(rows: int = 5, seed: int = 0) -> AvaTable:
    """Random table whose values survive the 3-decimal / 6-decimal CSV text exactly."""
    rng = np.random.default_rng(seed)
    x1y1 = rng.integers(0, 500, (rows, 2))
    wh = rng.integers(0, 500, (rows, 2))
    boxes = np.concatenate([x1y1, x1y1 + wh], axis=1) / 1000.0
    return AvaTable(
        video=np.array([f"vid{i % 2}" for i in range(rows)], dtype=object),
        timestamp=rng.integers(902, 1799, rows),
        boxes=boxes,
        action=rng.integers(1, 81, rows),
        extra=rng.integers(0, 20, rows).astype(np.float64),
    )


def _assert_tables_equal(a: AvaTable, b: AvaTable) -> None:
    assert len(a) == len(b)
    assert a.video.tolist() == b.video.tolist()
    np.testing.assert_array_equal(a.timestamp, b.timestamp)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.extra, b.extra)


# ---------------------------------------------------------------------------- reading


def test_read_ground_truth_rows(tmp_path: Path) -> None:
    table = read_ava_csv(_write(tmp_path, "gt.csv", "\n".join(GOOD_ROWS) + "\n"))
    assert len(table) == 3
    assert table.video.dtype == object and table.video.tolist()[2] == "a_b-c"
    assert table.timestamp.dtype == np.int64 and table.timestamp.tolist() == [902, 902, 1798]
    assert table.boxes.dtype == np.float32 and table.boxes.shape == (3, 4)
    np.testing.assert_allclose(table.boxes[0], [0.077, 0.151, 0.283, 0.811], rtol=1e-6)
    assert table.action.tolist() == [80, 12, 1]
    assert table.extra.dtype == np.float32 and table.extra.tolist() == [1.0, 0.0, 7.0]


def test_read_float64_keeps_parsed_values(tmp_path: Path) -> None:
    table = read_ava_csv(_write(tmp_path, "gt.csv", GOOD_ROWS[0]), float_dtype=np.float64)
    assert table.boxes.dtype == np.float64
    assert table.boxes[0].tolist() == [0.077, 0.151, 0.283, 0.811]


def test_read_accepts_variants(tmp_path: Path) -> None:
    # Unpadded timestamp, CRLF, a byte-order mark, a blank line, a 7-column row and an
    # empty action (person-detector layout): the slow path handles the mixed layout.
    text = "\ufeffv,902,0.1,0.2,0.3,0.4,5,0.9\r\n\r\nv,0903,0.1,0.2,0.3,0.4,,0.8\r\nv,0904,0.1,0.2,0.3,0.4,3\r\n"
    table = read_ava_csv(_write(tmp_path, "det.csv", text))
    assert table.video.tolist() == ["v", "v", "v"]
    assert table.timestamp.tolist() == [902, 903, 904]
    assert table.action.tolist() == [5, -1, 3]
    np.testing.assert_allclose(table.extra, [0.9, 0.8, 1.0], rtol=1e-6)


def test_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    rows = "\n".join(GOOD_ROWS)
    fast = read_ava_csv(_write(tmp_path, "fast.csv", rows + "\n"))
    # A blank line in the middle sends the file through the line-by-line pass.
    slow = read_ava_csv(_write(tmp_path, "slow.csv", GOOD_ROWS[0] + "\n\n" + "\n".join(GOOD_ROWS[1:])))
    _assert_tables_equal(fast, slow)


def test_read_empty_file(tmp_path: Path) -> None:
    table = read_ava_csv(_write(tmp_path, "empty.csv", ""))
    assert len(table) == 0 and table.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("v,0902,0.1,0.2,0.3,0.4", "expected 8 columns"),
        ("v,0902,0.1,abc,0.3,0.4,1,1", "column 4 (y1): expected a number"),
        ("v,0902,0.5,0.2,0.3,0.4,1,1", "x1 <= x2"),
        ("v,0902,0.1,0.2,1.3,0.4,1,1", "column 5 (x2): expected a normalized coordinate in [0, 1]"),
        ("v,0902,-0.1,0.2,0.3,0.4,1,1", "column 3 (x1)"),
        ("v,0902,nan,0.2,0.3,0.4,1,1", "column 3 (x1)"),
        ("v,902.5,0.1,0.2,0.3,0.4,1,1", "column 2 (timestamp): expected a non-negative integer"),
        ("v,0902,0.1,0.2,0.3,0.4,walk,1", "column 7 (action_id)"),
        ("v,0902,0.1,0.2,0.3,0.4,1,inf", "column 8 (person_id_or_score)"),
        (",0902,0.1,0.2,0.3,0.4,1,1", "column 1 (video_id)"),
    ],
)
def test_broken_rows_name_file_and_line(tmp_path: Path, bad_row: str, expected: str) -> None:
    path = _write(tmp_path, "broken.csv", "\n".join(GOOD_ROWS[:2] + [bad_row, GOOD_ROWS[2]]) + "\n")
    with pytest.raises(AvaFormatError) as info:
        read_ava_csv(path)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert expected in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)


def test_header_row_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "header.csv", "video_id,timestamp,x1,y1,x2,y2,action_id,person_id\n" + GOOD_ROWS[0])
    with pytest.raises(AvaFormatError, match="no header row") as info:
        read_ava_csv(path)
    assert f"{path}:1:" in str(info.value)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_ava_csv(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize("seed", [0, 1])
def test_csv_round_trip_ground_truth(tmp_path: Path, seed: int) -> None:
    table = _table(rows=20, seed=seed)
    path = tmp_path / "gt.csv"
    write_ava_csv(path, table)
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 8 and len(first[1]) == 4 and first[2].count(".") == 1 and len(first[2]) == 5
    _assert_tables_equal(read_ava_csv(path, float_dtype=np.float64), table)


def test_csv_round_trip_detections(tmp_path: Path) -> None:
    table = _table(rows=10)
    table.extra = np.round(np.linspace(0.0, 1.0, 10), 6)
    table.action[3] = -1  # written as an empty field
    path = tmp_path / "det.csv"
    write_ava_csv(path, table, score=True)
    assert ",," in path.read_text().splitlines()[3]
    _assert_tables_equal(read_ava_csv(path, float_dtype=np.float64), table)


def test_detections_written_score_sorted_within_each_keyframe(tmp_path: Path) -> None:
    # Keyframes keep their order of first appearance (b,0903 before a,0902); inside each, rows go
    # by descending score, equal scores in table order (the two 0.5 rows of b,0903).
    table = AvaTable(video=np.array(["b", "a", "b", "b", "a", "b"], dtype=object),
                     timestamp=np.array([903, 902, 903, 903, 902, 903]),
                     boxes=np.tile([[0.1, 0.1, 0.5, 0.5]], (6, 1)), action=np.array([1, 1, 2, 3, 4, 5]),
                     extra=np.array([0.5, 0.2, 0.9, 0.5, 0.7, 0.1]))
    assert keyframe_score_order(table).tolist() == [2, 0, 3, 5, 4, 1]
    write_ava_csv(tmp_path / "det.csv", table, score=True)
    rows = [line.split(",") for line in (tmp_path / "det.csv").read_text().splitlines()]
    assert [(r[0], r[6], r[7]) for r in rows] == [
        ("b", "2", "0.900000"), ("b", "1", "0.500000"), ("b", "3", "0.500000"), ("b", "5", "0.100000"),
        ("a", "4", "0.700000"), ("a", "1", "0.200000")]
    table.extra = np.array([3.0, 1, 4, 1, 5, 9])
    write_ava_csv(tmp_path / "gt.csv", table)  # ground truth (person ids): table order
    assert [r.split(",")[6] for r in (tmp_path / "gt.csv").read_text().splitlines()] == list("112345")


def test_write_rejects_fractional_person_ids(tmp_path: Path) -> None:
    table = _table(rows=2)
    table.extra = np.array([0.5, 1.0])
    with pytest.raises(ValueError, match="score=True"):
        write_ava_csv(tmp_path / "gt.csv", table)


def test_write_rejects_what_the_reader_would_reject(tmp_path: Path) -> None:
    table = _table(rows=3)
    table.boxes[1] = [0.5, 0.1, 0.4, 0.2]
    with pytest.raises(ValueError, match="row 1"):
        write_ava_csv(tmp_path / "gt.csv", table)
    assert not (tmp_path / "gt.csv").exists()


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


# ---------------------------------------------------------------------------- label map


def test_labelmap_layouts(tmp_path: Path) -> None:
    text = (
        "# AVA v2.2 subset\n"
        "item {\n  name: \"bend/bow (at the waist)\"\n  id: 1\n}\n"
        "item { name: \"crawl\" id: 2 }\n"
        "label {\n  name: \"crouch/kneel\"\n  label_id: 3\n  label_type: PERSON_MOVEMENT\n}\n"
        "item { display_name: \"say \\\"hi\\\"\" id: 17 }\n"
    )
    labelmap = read_labelmap(_write(tmp_path, "map.pbtxt", text))
    assert labelmap == {1: "bend/bow (at the waist)", 2: "crawl", 3: "crouch/kneel", 17: 'say "hi"'}


def test_labelmap_round_trip(tmp_path: Path) -> None:
    names = {1: "bend/bow (at the waist)", 14: 'a "quoted" \\ name', 80: "watch (a person)"}
    path = tmp_path / "map.pbtxt"
    write_labelmap(path, names)
    assert read_labelmap(path) == names
    # The layout the official line-based parser expects.
    assert '  name: "bend/bow (at the waist)"\n  id: 1\n' in path.read_text()


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 1\n}\n', 5, "duplicate class id 1"),
        ('item {\n  name: "a"\n}\n', 1, "no 'id'"),
        ('item {\n  name: "a"\n  id: one\n}\n', 3, "expected an integer"),
        ('item {\n  name: "a"\n  id: 1\n', 1, "not closed"),
        ('item {\n  name: "a\n  id: 1\n}\n', 2, "unterminated string"),
        ('thing { name: "a" id: 1 }\n', 1, "expected a label block"),
    ],
)
def test_labelmap_errors_name_file_and_line(tmp_path: Path, text: str, line: int, expected: str) -> None:
    path = _write(tmp_path, "bad.pbtxt", text)
    with pytest.raises(AvaFormatError) as info:
        read_labelmap(path)
    assert f"{path}:{line}:" in str(info.value)
    assert expected in str(info.value)


# ---------------------------------------------------------------------------- excluded, keys


def test_read_excluded(tmp_path: Path) -> None:
    path = _write(tmp_path, "excl.csv", "vidA,0902\nvidB,1000\n\n")
    assert read_excluded(path) == {("vidA", 902), ("vidB", 1000)}


def test_read_excluded_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "excl.csv", "vidA,0902\nvidB,0903,0.1\n")
    with pytest.raises(AvaFormatError, match="expected 2 columns") as info:
        read_excluded(path)
    assert f"{path}:2:" in str(info.value)


def test_frame_key() -> None:
    assert frame_key("-5KQ66BBWC4", 902) == "-5KQ66BBWC4,0902"
    assert frame_key("v", np.int64(1798)) == "v,1798"


def test_table_checks_lengths() -> None:
    assert len(AvaTable.empty()) == 0
    with pytest.raises(ValueError, match="differ in length"):
        AvaTable(video=["a"], timestamp=[1, 2], boxes=np.zeros((1, 4)), action=[1], extra=[1.0])


def test_frame_list_round_trip_and_errors(tmp_path):
    from stal.formats.ava import read_frame_list, write_frame_list

    path = tmp_path / "train.csv"
    write_frame_list(path, [("vidA", ["vidA/vidA_000001.jpg", "vidA/vidA_000002.jpg"]), ("vidB", ["vidB/vidB_000001.jpg"])])
    assert path.read_text().splitlines()[:3] == [
        "original_vido_id video_id frame_id path labels",
        'vidA 0 0 vidA/vidA_000001.jpg ""', 'vidA 0 1 vidA/vidA_000002.jpg ""']
    assert read_frame_list(path) == {"vidA": ["vidA/vidA_000001.jpg", "vidA/vidA_000002.jpg"],
                                     "vidB": ["vidB/vidB_000001.jpg"]}
    path.write_text("original_vido_id video_id frame_id path labels\nvidA 0 0 vidA/vidA_000001.jpg\n")
    with pytest.raises(AvaFormatError, match=r"train.csv:2: expected 5 space-separated fields"):
        read_frame_list(path)
    path.write_text('original_vido_id video_id frame_id path labels\nvidA 0 1 vidA/vidA_000002.jpg ""\n')
    with pytest.raises(AvaFormatError, match=r"train.csv:2: frame_id '1' of vidA; expected 0"):
        read_frame_list(path)
