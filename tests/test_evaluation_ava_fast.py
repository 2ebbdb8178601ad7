"""AVA evaluator: streaming CSV reader, AP arithmetic, variants, bad input, the CLI options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stal.formats.ava import AvaTable, write_ava_csv, write_labelmap
from stal.errors import DataError
from stal.evaluation import ava_frame_map, ava_frame_map_files
from stal.formats import ava_csv as fast_csv
from stal.evaluation import frame_map as fm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ava_loop_reference import reference_frame_map  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
A = (0.1, 0.1, 0.4, 0.5)
B = (0.5, 0.1, 0.9, 0.8)


def _table(rows: list[tuple]) -> AvaTable:
    if not rows:
        return AvaTable.empty(np.float64)
    video, ts, x1, y1, x2, y2, action, extra = zip(*rows)
    return AvaTable(video=np.array(video, dtype=object), timestamp=np.array(ts),
                    boxes=np.stack([x1, y1, x2, y2], axis=1).astype(np.float64),
                    action=np.array(action), extra=np.array(extra, dtype=np.float64))


@pytest.fixture
def columnar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read even tiny files with pyarrow (small files otherwise take the line parser)."""
    monkeypatch.setattr(fast_csv, "SMALL_FILE_BYTES", 0)


# The readers: (SMALL_FILE_BYTES, PARALLEL_CHUNK_BYTES) of the line parser, pyarrow's
# streaming reader, read_csv on 64 MB ranges, and on 300-byte ranges (many line-aligned cuts).
READERS = {"line": (1 << 20, 64 << 20), "stream": (0, 0), "chunks": (0, 64 << 20), "tiny-chunks": (0, 300)}


def _use_reader(monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    small, chunk = READERS[reader]
    monkeypatch.setattr(fast_csv, "SMALL_FILE_BYTES", small)
    monkeypatch.setattr(fast_csv, "PARALLEL_CHUNK_BYTES", chunk)


def _random_rows(seed: int, *, distinct_scores: bool) -> tuple[list, list, dict, set]:
    """Ground truth and detections on a few keyframes: hits, near misses, duplicates."""
    rng = np.random.default_rng(seed)
    frames = [(f"vid{rng.integers(3)}", 902 + int(rng.integers(20))) for _ in range(25)]
    gt, det = [], []

    def box() -> tuple:
        x1, y1 = np.round(rng.random(2) * 0.6, 3)
        return (x1, y1, round(x1 + 0.05 + rng.random() * 0.3, 3), round(y1 + 0.05 + rng.random() * 0.3, 3))

    for video, ts in frames:
        persons = [box() for _ in range(rng.integers(0, 4))]
        for pid, b in enumerate(persons):
            for c in rng.choice([1, 2, 3, 7], size=rng.integers(1, 3), replace=False):
                gt.append((video, ts, *b, int(c), float(pid)))
        for _ in range(rng.integers(0, 25)):
            if persons and rng.random() < 0.6:
                b = np.clip(np.array(persons[rng.integers(len(persons))]) + rng.normal(0, 0.04, 4), 0, 1)
                b = tuple(np.round(np.sort(b.reshape(2, 2), axis=0).reshape(-1), 3))  # x1<=x2, y1<=y2
            else:
                b = box()
            det.append((video, ts, *b, int(rng.integers(1, 9)), 0.0))
    scores = rng.permutation(len(det)) / max(len(det), 1) if distinct_scores else rng.integers(0, 5, len(det)) / 4
    det = [(*r[:7], float(s)) for r, s in zip(det, scores)]
    labelmap = {1: "a", 2: "b", 3: "c", 4: "none", 8: "none either"}  # 7 is not evaluated
    return gt, det, labelmap, {frames[0]}


def _write(tmp_path: Path, gt: list, det: list, labelmap: dict, excluded: set) -> dict:
    paths = {n: tmp_path / n for n in ("gt.csv", "det.csv", "map.pbtxt", "excl.csv")}
    write_ava_csv(paths["gt.csv"], _table(gt))
    write_ava_csv(paths["det.csv"], _table(det), score=True)
    write_labelmap(paths["map.pbtxt"], labelmap)
    paths["excl.csv"].write_text("".join(f"{v},{t:04d}\n" for v, t in excluded))
    return paths


def _assert_same(got: dict, want: dict, tol: float) -> None:
    assert got["per_class_AP"].keys() == want["per_class_AP"].keys()
    for key, ap in want["per_class_AP"].items():
        assert (got["per_class_AP"][key] is None) == (ap is None), key
        if ap is not None:
            assert abs(got["per_class_AP"][key] - ap) <= tol, key
    assert abs(got["frame_mAP"] - want["frame_mAP"]) <= tol


# ---------------------------------------------------------------------------- AP arithmetic


@pytest.mark.parametrize("seed", range(6))
def test_ap_from_ranks_is_bit_identical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 7, 8, 9, 130, 1000):
        flags = rng.random(n) < rng.random()
        num_gt = int(flags.sum()) + int(rng.integers(0, 3))
        if num_gt == 0:
            continue
        ranks = np.flatnonzero(flags) + 1
        assert fm.voc_ap_from_tp_ranks(ranks, num_gt) == fm.voc_average_precision(flags, num_gt)


@pytest.mark.parametrize("buckets", [1, 4, 1 << 16])
def test_tp_ranks_equal_a_stable_sort(buckets: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "_RANK_BUCKETS", buckets)
    rng = np.random.default_rng(buckets)
    scores = rng.integers(0, 40, 3000) / 7.0  # many ties
    positions = rng.choice(3000, size=200, replace=False)
    rank = np.empty(3000, dtype=np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(1, 3001)
    assert np.array_equal(fm.tp_ranks(scores, positions), rank[positions])
    assert np.array_equal(fm.tp_ranks(np.full(5, 0.3), np.array([4, 0])), [5, 1])


# ---------------------------------------------------------------------------- loop reference


@pytest.mark.filterwarnings("ignore:.*action ids not in the label map")
@pytest.mark.parametrize("seed", range(8))
def test_files_match_loop_on_tie_free_data(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           columnar: None) -> None:
    gt, det, labelmap, excluded = _random_rows(seed, distinct_scores=True)
    p = _write(tmp_path, gt, det, labelmap, excluded)
    monkeypatch.setattr(fast_csv, "DEFAULT_BLOCK_BYTES", 1 << 10)  # many blocks: streaming state
    got = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"], p["excl.csv"])
    # the loop reads the same rounded values the files hold
    from ava_loop_reference import read_rows
    want = reference_frame_map(read_rows(str(p["gt.csv"])), read_rows(str(p["det.csv"])), labelmap, excluded)
    _assert_same(got, want, 1e-9)
    assert got["counts"]["det_excluded"] == sum(1 for r in det if (r[0], r[1]) in excluded and r[6] in labelmap)


@pytest.mark.filterwarnings("ignore:.*action ids not in the label map")
@pytest.mark.parametrize("seed", range(4))
def test_variants_match_loop(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columnar: None) -> None:
    gt, det, labelmap, excluded = _random_rows(seed, distinct_scores=seed % 2 == 0)
    p = _write(tmp_path, gt, det, labelmap, excluded)
    from ava_loop_reference import read_rows
    gt_rows, det_rows = read_rows(str(p["gt.csv"])), read_rows(str(p["det.csv"]))
    monkeypatch.setattr(fast_csv, "DEFAULT_BLOCK_BYTES", 1 << 11)
    for kw, ref_kw in (({"max_dets_per_keyframe": 3}, {"top_k": 3}),
                       ({"ignore_empty_frames": True}, {"ignore_empty_frames": True})):
        got = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"], p["excl.csv"], **kw)
        _assert_same(got, reference_frame_map(gt_rows, det_rows, labelmap, excluded, **ref_kw), 1e-12)
        in_memory = ava_frame_map(_table(gt_rows), _table(det_rows), labelmap, excluded=excluded, **kw)
        assert in_memory["per_class_AP"] == got["per_class_AP"]


def test_class_with_detections_but_no_ground_truth_is_excluded() -> None:
    gt = _table([("v", 902, *A, 1, 0)])
    det = _table([("v", 902, *A, 1, 0.9), ("v", 902, *B, 2, 0.95), ("v", 902, *A, 2, 0.5)])
    result = ava_frame_map(gt, det, {1: "a", 2: "b"})
    assert result["per_class_AP"] == {"1": 1.0, "2": None} and result["frame_mAP"] == 1.0
    assert result["num_det"] == {"1": 1, "2": 2}


def test_ignore_empty_frames_and_top_k_by_hand() -> None:
    gt = _table([("v", 902, *A, 1, 0)])
    det = _table([("v", 903, *A, 1, 0.9), ("v", 902, *A, 1, 0.8)])  # the FP ranks first
    assert ava_frame_map(gt, det, {1: "a"})["per_class_AP"]["1"] == 0.5
    result = ava_frame_map(gt, det, {1: "a"}, ignore_empty_frames=True)
    assert result["per_class_AP"]["1"] == 1.0 and result["num_det"]["1"] == 1
    det = _table([("v", 902, *B, 2, 0.9), ("v", 902, *A, 1, 0.8), ("v", 902, *B, 9, 0.95)])
    # class 9 is not evaluated, so it does not take one of the k slots
    capped = ava_frame_map(gt, det, {1: "a", 2: "b"}, max_dets_per_keyframe=2)
    assert capped["per_class_AP"]["1"] == 1.0 and capped["counts"]["det_over_top_k"] == 0


# ---------------------------------------------------------------------------- reader


@pytest.mark.parametrize("small_file_bytes", [0, 1 << 20])
def test_timestamps_padded_or_not_seven_columns_and_label_id(
        small_file_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_csv, "SMALL_FILE_BYTES", small_file_bytes)
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.4,0.5,1,0\n\nv,903,0.1,0.1,0.4,0.5,1,0\n")
    (tmp_path / "det.csv").write_text("v,902,0.1,0.1,0.4,0.5,1\nv,0903,0.1,0.1,0.4,0.5,1\n")
    (tmp_path / "map.pbtxt").write_text('label {\n  name: "bend"\n  label_id: 1\n  label_type: PERSON_MOVEMENT\n}\n')
    result = ava_frame_map_files(tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "map.pbtxt")
    assert result["per_class_AP"] == {"1": 1.0} and result["num_det"] == {"1": 2}


@pytest.mark.parametrize("reader", ["stream", "chunks", "tiny-chunks"])
def test_reader_blocks_equal_whole_file(reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gt, det, labelmap, excluded = _random_rows(1, distinct_scores=False)
    p = _write(tmp_path, gt, det, labelmap, excluded)
    whole = fast_csv.read_box_csv(p["det.csv"], vocab=fast_csv.VideoVocab())  # line parser (small file)
    _use_reader(monkeypatch, reader)
    blocks = list(fast_csv.iter_box_csv(p["det.csv"], vocab=fast_csv.VideoVocab(), block_bytes=512))
    assert len(blocks) > 3 and [b.first_row for b in blocks] == list(np.cumsum([0] + [len(b) for b in blocks[:-1]]))
    joined = fast_csv.BoxBatch.concatenate(blocks)
    for field in ("video", "timestamp", "boxes", "action", "extra"):
        assert np.array_equal(getattr(joined, field), getattr(whole, field))
    # What Python's float() reads (the rows are written score-sorted within each keyframe).
    assert np.array_equal(np.sort(whole.extra), np.sort([float(f"{r[7]:.6f}") for r in det]))


BAD_ROWS = [
    ("v,0902,0.1,0.1,0.4\n", "expected 8 columns"),
    ("v,0902,0.1,abc,0.4,0.5,1,0.5\n", "column 4 (y1): expected a number, got 'abc'"),
    ("v,0902,0.1,0.1,1.4,0.5,1,0.5\n", "expected a normalized coordinate in [0, 1], got '1.4'"),
    ("v,0902,0.5,0.1,0.4,0.5,1,0.5\n", "expected x1 <= x2 and y1 <= y2"),
    ("v,0902,0.1,0.1,0.4,0.5,1,nan\n", "expected a finite number"),
    ("v,09x2,0.1,0.1,0.4,0.5,1,0.5\n", "column 2 (timestamp)"),
    ("v,0902,0.1,0.1,0.4,0.5,one,0.5\n", "column 7 (action_id)"),
]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("bad, message", BAD_ROWS)
def test_bad_row_names_file_and_line(bad: str, message: str, reader: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _use_reader(monkeypatch, reader)
    good = "v,0902,0.1,0.1,0.4,0.5,1,0.5\n"
    path = tmp_path / "det.csv"
    # the bad row sits in a later block, after a blank line: the line number must count it
    path.write_text(good * 300 + "\n" + bad + good * 10)
    with pytest.raises(DataError) as info:
        list(fast_csv.iter_box_csv(path, vocab=fast_csv.VideoVocab(), block_bytes=4096))
    assert f"{path}:302:" in str(info.value) and message in str(info.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    p = _write(tmp_path, [("v", 902, *A, 1, 0)], [], {1: "a"}, set())
    with pytest.raises(DataError, match="missing.csv: file not found"):
        ava_frame_map_files(p["gt.csv"], tmp_path / "missing.csv", p["map.pbtxt"])
    p["det.csv"].write_text("")
    with pytest.warns(UserWarning, match="no detections"):
        result = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"])
    assert result["frame_mAP"] == 0.0 and result["per_class_AP"] == {"1": 0.0}


def test_unknown_action_ids_warn_or_fail_with_strict(tmp_path: Path) -> None:
    p = _write(tmp_path, [("v", 902, *A, 1, 0)], [("v", 902, *A, 1, 0.9), ("v", 902, *A, 5, 0.8)],
               {1: "a"}, set())
    with pytest.warns(UserWarning, match="1 rows with action ids not in the label map"):
        result = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"])
    assert result["counts"]["det_action_not_in_labelmap"] == 1 and result["frame_mAP"] == 1.0
    with pytest.raises(DataError, match=r"det.csv:2: column 7 \(action_id\): 5 is not in the label map"):
        ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"], strict=True)


# ---------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "eval_frame_map.py"), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)


def test_cli_options(tmp_path: Path) -> None:
    p = _write(tmp_path, [("v", 902, *A, 1, 0)],
               [("v", 903, *A, 1, 0.9), ("v", 902, *A, 1, 0.8), ("v", 902, *A, 5, 0.7)], {1: "bend"}, set())
    out = tmp_path / "r.json"
    base = ["--format", "ava", "--gt", str(p["gt.csv"]), "--det", str(p["det.csv"]),
            "--labelmap", str(p["map.pbtxt"]), "--out", str(out)]
    proc = _cli(*base)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["frame_mAP"] == 0.5 and "warning: " in proc.stderr
    assert "det_action_not_in_labelmap=1" in proc.stdout and "bend" in proc.stdout
    assert _cli(*base, "--ignore-empty-frames").returncode == 0
    assert json.loads(out.read_text())["frame_mAP"] == 1.0
    assert _cli(*base, "--top-k-per-frame", "1").returncode == 0
    assert json.loads(out.read_text())["per_class_AP"] == {"1": 0.5}
    proc = _cli(*base, "--strict")
    assert proc.returncode == 2 and f"{p['det.csv']}:3:" in proc.stderr and proc.stderr.count("\n") == 1
    proc = _cli("--gt", str(p["gt.csv"]), "--det", str(p["det.csv"]), "--out", str(out))
    assert proc.returncode == 2 and "needs --labelmap" in proc.stderr
