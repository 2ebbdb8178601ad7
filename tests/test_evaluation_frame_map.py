"""AVA frame-mAP: hand-computed cases, an obviously-correct loop reference, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stal.formats.ava import AvaTable, write_ava_csv, write_labelmap
from stal.evaluation import ava_frame_map, ava_frame_map_files, voc_average_precision
from stal.evaluation import frame_map as frame_map_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ava_loop_reference import reference_frame_map as loop_reference  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _table(rows: list[tuple]) -> AvaTable:
    """rows: (video, timestamp, x1, y1, x2, y2, action, extra)."""
    if not rows:
        return AvaTable.empty(np.float64)
    video, ts, x1, y1, x2, y2, action, extra = zip(*rows)
    return AvaTable(
        video=np.array(video, dtype=object),
        timestamp=np.array(ts),
        boxes=np.stack([x1, y1, x2, y2], axis=1).astype(np.float64),
        action=np.array(action),
        extra=np.array(extra, dtype=np.float64),
    )


A = (0.1, 0.1, 0.4, 0.5)
B = (0.5, 0.1, 0.9, 0.8)


# ---------------------------------------------------------------------------- hand-computed


def test_hand_computed_ap() -> None:
    # Class 1, 3 GT boxes: keyframe v,902 has A and B; keyframe v,903 has A.
    # Detections by descending score:
    #   0.9  v,902 box A  -> TP (IoU 1 with A)
    #   0.8  v,902 box A  -> FP (duplicate: A is already matched; no fall-back to B)
    #   0.7  v,905 box A  -> FP (keyframe without any ground truth)
    #   0.6  v,903 box A  -> TP
    # precision = 1/1, 1/2, 1/3, 2/4;  recall = 1/3, 1/3, 1/3, 2/3
    # envelope over the padded curve: 1 at recall 1/3, 1/2 at recall 2/3
    # AP = (1/3 - 0) * 1 + (2/3 - 1/3) * 1/2 = 1/2
    gt = _table([("v", 902, *A, 1, 0), ("v", 902, *B, 1, 1), ("v", 903, *A, 1, 0)])
    det = _table([
        ("v", 905, *A, 1, 0.7),
        ("v", 902, *A, 1, 0.9),
        ("v", 903, *A, 1, 0.6),
        ("v", 902, *A, 1, 0.8),
    ])
    result = ava_frame_map(gt, det, {1: "bend", 2: "crawl"})
    assert result["per_class_AP"]["1"] == pytest.approx(0.5, abs=1e-15)
    assert result["per_class_AP"]["2"] is None  # no ground truth: no AP, not in the mean
    assert result["frame_mAP"] == pytest.approx(0.5, abs=1e-15)
    assert result["num_gt"] == {"1": 3, "2": 0}
    assert result["num_det"] == {"1": 4, "2": 0}
    assert set(result) == {"frame_mAP", "per_class_AP", "num_gt", "num_det", "counts"}
    assert result["counts"]["det_on_keyframe_without_gt"] == 1


def test_no_fall_back_to_second_best_ground_truth() -> None:
    # Both detections overlap A best (IoU 1 and ~0.9) and B with IoU >= 0.5 too; the second
    # one is a FP although B is free, because only the best-overlapping box is tried.
    gt = _table([("v", 902, 0.0, 0.0, 0.5, 1.0, 1, 0), ("v", 902, 0.0, 0.0, 0.6, 1.0, 1, 1)])
    det = _table([("v", 902, 0.0, 0.0, 0.5, 1.0, 1, 0.9), ("v", 902, 0.0, 0.0, 0.52, 1.0, 1, 0.8)])
    result = ava_frame_map(gt, det, {1: "a"})
    # TP, FP over 2 GT: precision 1, 1/2; recall 1/2, 1/2 -> AP = 1/2.
    assert result["per_class_AP"]["1"] == pytest.approx(0.5, abs=1e-15)


def test_iou_exactly_at_threshold_is_a_match() -> None:
    gt = _table([("v", 902, 0.0, 0.0, 1.0, 1.0, 1, 0)])
    det = _table([("v", 902, 0.0, 0.0, 0.5, 1.0, 1, 0.9)])  # IoU = 0.5 exactly
    assert ava_frame_map(gt, det, {1: "a"})["per_class_AP"]["1"] == 1.0
    assert ava_frame_map(gt, det, {1: "a"}, iou_threshold=0.51)["per_class_AP"]["1"] == 0.0


def test_filters_labelmap_exclusions_invalid_boxes() -> None:
    gt = _table([
        ("v", 902, *A, 1, 0),
        ("v", 903, *A, 1, 0),   # excluded keyframe: its GT is not counted
        ("v", 902, *B, 9, 0),   # class 9 is not in the label map
        ("v", 902, *B, 2, 0),   # class 2: GT but no detection -> AP 0
    ])
    det = _table([
        ("v", 902, 0.3, 0.1, 0.3, 0.5, 1, 0.99),  # zero width: dropped, neither TP nor FP
        ("v", 903, *A, 1, 0.95),                  # excluded keyframe: dropped
        ("v", 902, *A, 1, 0.9),
        ("v", 902, *B, 9, 0.8),
    ])
    result = ava_frame_map(gt, det, {1: "a", 2: "b", 3: "c"}, excluded={("v", 903)})
    assert result["per_class_AP"] == {"1": 1.0, "2": 0.0, "3": None}
    assert result["frame_mAP"] == 0.5
    assert result["num_gt"] == {"1": 1, "2": 1, "3": 0}
    assert result["num_det"] == {"1": 1, "2": 0, "3": 0}


def test_no_ground_truth_at_all() -> None:
    result = ava_frame_map(AvaTable.empty(), _table([("v", 902, *A, 1, 0.5)]), {1: "a"})
    assert np.isnan(result["frame_mAP"]) and result["per_class_AP"] == {"1": None}


def test_max_dets_per_keyframe() -> None:
    # The capped detection (lowest score of the keyframe, over all classes) would be a TP.
    gt = _table([("v", 902, *A, 1, 0), ("v", 902, *B, 2, 0)])
    det = _table([("v", 902, *B, 2, 0.9), ("v", 902, *A, 3, 0.8), ("v", 902, *A, 1, 0.7)])
    labelmap = {1: "a", 2: "b", 3: "c"}
    assert ava_frame_map(gt, det, labelmap)["per_class_AP"]["1"] == 1.0
    capped = ava_frame_map(gt, det, labelmap, max_dets_per_keyframe=2)
    assert capped["per_class_AP"]["1"] == 0.0 and capped["per_class_AP"]["2"] == 1.0


def test_voc_average_precision() -> None:
    assert voc_average_precision(np.array([], dtype=bool), 3) == 0.0
    assert voc_average_precision(np.array([True, True]), 2) == 1.0
    # FP first: precision 0, 1/2; recall 0, 1 -> envelope 1/2 over the whole recall range.
    assert voc_average_precision(np.array([False, True]), 1) == 0.5


def test_bad_labelmap_and_scores() -> None:
    det = _table([("v", 902, *A, 1, 0.5)])
    with pytest.raises(ValueError, match="empty"):
        ava_frame_map(det, det, {})
    with pytest.raises(ValueError, match=">= 1"):
        ava_frame_map(det, det, {0: "background"})
    with pytest.raises(ValueError, match="finite"):
        ava_frame_map(det, _table([("v", 902, *A, 1, float("nan"))]), {1: "a"})


# ---------------------------------------------------------------------------- loop reference


def _rows(table: AvaTable) -> list[tuple]:
    return [(v, int(t), *map(float, b), int(a), float(e))
            for v, t, b, a, e in zip(table.video, table.timestamp, table.boxes, table.action, table.extra)]


def reference_frame_map(gt: AvaTable, det: AvaTable, labelmap: dict, excluded: set, thr: float, **kw) -> dict:
    return loop_reference(_rows(gt), _rows(det), labelmap, excluded, thr, **kw)


def _random_case(seed: int) -> tuple[AvaTable, AvaTable, dict, set]:
    """Boxes on a coarse grid (exact IoU ties and IoU == 0.5), scores with ties, dets
    near GT and elsewhere, classes outside the label map, classes without GT."""
    rng = np.random.default_rng(seed)
    frames = [(f"v{rng.integers(3)}", 902 + int(rng.integers(12))) for _ in range(10)]

    def box() -> tuple:
        x1, y1 = rng.integers(0, 6, 2) / 10
        w, h = rng.integers(0, 5, 2) / 10
        return (x1, y1, min(1.0, x1 + w), min(1.0, y1 + h))

    gt_rows, det_rows = [], []
    for video, ts in frames:
        frame_gt = []
        for pid in range(rng.integers(0, 4)):
            b = box()
            for c in rng.choice([1, 2, 3, 5], size=rng.integers(1, 3), replace=False):
                frame_gt.append((video, ts, *b, int(c), pid))
        gt_rows += frame_gt
        for _ in range(rng.integers(0, 16)):
            if frame_gt and rng.random() < 0.7:  # a (possibly repeated) hit on a GT row
                *_, x1, y1, x2, y2, c, _ = frame_gt[rng.integers(len(frame_gt))]
                b = (x1, y1, x2, y2) if rng.random() < 0.7 else box()
            else:
                b, c = box(), int(rng.integers(1, 7))
            det_rows.append((video, ts, *b, c, float(rng.integers(0, 8)) / 8))
    order = rng.permutation(len(det_rows))
    det = _table([det_rows[i] for i in order]) if seed % 5 else AvaTable.empty(np.float64)
    labelmap = {1: "a", 2: "b", 3: "c", 4: "no gt", 6: "no gt either"}  # 5 is not evaluated
    excluded = {frames[0]} if seed % 2 else set()
    return _table(gt_rows), det, labelmap, excluded


@pytest.mark.parametrize("seed", range(12))
def test_matches_loop_reference(seed: int) -> None:
    gt, det, labelmap, excluded = _random_case(seed)
    for thr in (0.5, 0.3):
        got = ava_frame_map(gt, det, labelmap, excluded=excluded, iou_threshold=thr)
        want = reference_frame_map(gt, det, labelmap, excluded, thr)
        assert got["per_class_AP"].keys() == want["per_class_AP"].keys()
        for key, ap in want["per_class_AP"].items():
            if ap is None:
                assert got["per_class_AP"][key] is None
            else:
                assert got["per_class_AP"][key] == pytest.approx(ap, abs=1e-12), key
        if np.isnan(want["frame_mAP"]):
            assert np.isnan(got["frame_mAP"])
        else:
            assert got["frame_mAP"] == pytest.approx(want["frame_mAP"], abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_file_match_order_matches_loop_reference(seed: int) -> None:
    gt, det, labelmap, excluded = _random_case(seed)
    got = ava_frame_map(gt, det, labelmap, excluded=excluded, match_order="file")
    want = reference_frame_map(gt, det, labelmap, excluded, 0.5, match_order="file")
    for key, ap in want["per_class_AP"].items():
        assert got["per_class_AP"][key] == (None if ap is None else pytest.approx(ap, abs=1e-12)), key
    if seed == 2:  # a case where the order matters, so the test can tell the two apart
        assert got["per_class_AP"] != ava_frame_map(gt, det, labelmap, excluded=excluded)["per_class_AP"]


def test_file_match_order_is_pyslowfast_on_an_unsorted_keyframe() -> None:
    # One GT box; two detections of it on the same keyframe, the lower score first in the file.
    # Score order (official): 0.9 TP, 0.5 FP -> AP 1.  File order (PySlowFast's
    # per_image_evaluation): 0.5 claims the box first (TP), 0.9 is the duplicate (FP); ranked
    # by score the TP comes second: precision 1/2 at recall 1 -> AP 0.5.
    gt = _table([("v", 902, *A, 1, 0)])
    det = _table([("v", 902, *A, 1, 0.5), ("v", 902, *A, 1, 0.9)])
    assert ava_frame_map(gt, det, {1: "a"})["frame_mAP"] == 1.0
    assert ava_frame_map(gt, det, {1: "a"}, match_order="file")["frame_mAP"] == 0.5
    with pytest.raises(ValueError, match="match_order"):
        ava_frame_map(gt, det, {1: "a"}, match_order="heap")


@pytest.mark.filterwarnings("ignore:.*(duplicate rows|not in the label map):UserWarning")
def test_written_detections_give_one_number_in_either_order(tmp_path: Path) -> None:
    # write_ava_csv(score=True) sorts each keyframe's rows by descending score, so PySlowFast's
    # file-order matching of stal's own files equals the official score order.
    gt, det, labelmap, excluded = _random_case(1)
    write_ava_csv(tmp_path / "gt.csv", gt)
    write_ava_csv(tmp_path / "det.csv", det, score=True, box_decimals=6)
    write_labelmap(tmp_path / "map.pbtxt", {k: v for k, v in labelmap.items()})
    by_score, by_file = (ava_frame_map_files(tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "map.pbtxt",
                                             match_order=order) for order in ("score", "file"))
    assert by_score == by_file
    unsorted = ava_frame_map(gt, det, labelmap, match_order="file")
    assert unsorted["per_class_AP"] != by_file["per_class_AP"]  # the case is one where order matters


def test_chunked_matching_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    gt, det, labelmap, excluded = _random_case(3)
    whole = ava_frame_map(gt, det, labelmap, excluded=excluded)
    monkeypatch.setattr(frame_map_module, "_PAIRS_PER_CHUNK", 3)
    assert ava_frame_map(gt, det, labelmap, excluded=excluded) == whole


# ---------------------------------------------------------------------------- files and CLI


def _write_fixture(tmp_path: Path) -> dict[str, Path]:
    gt = _table([("v", 902, *A, 1, 0), ("v", 902, *B, 1, 1), ("v", 903, *A, 1, 0), ("v", 904, *A, 2, 0)])
    det = _table([
        ("v", 902, *A, 1, 0.9), ("v", 902, *A, 1, 0.8), ("v", 905, *A, 1, 0.7),
        ("v", 903, *A, 1, 0.6), ("v", 904, *A, 2, 0.5),
    ])
    paths = {name: tmp_path / name for name in ("gt.csv", "det.csv", "map.pbtxt", "excl.csv")}
    write_ava_csv(paths["gt.csv"], gt)
    write_ava_csv(paths["det.csv"], det, score=True)
    write_labelmap(paths["map.pbtxt"], {1: "bend/bow (at the waist)", 2: "crawl", 3: "dance"})
    paths["excl.csv"].write_text("v,0904\n")
    return paths


def test_files_api(tmp_path: Path) -> None:
    p = _write_fixture(tmp_path)
    result = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"])
    assert result["per_class_AP"] == {"1": pytest.approx(0.5, abs=1e-15), "2": 1.0, "3": None}
    excluded = ava_frame_map_files(p["gt.csv"], p["det.csv"], p["map.pbtxt"], p["excl.csv"])
    assert excluded["per_class_AP"]["2"] is None and excluded["frame_mAP"] == pytest.approx(0.5)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "eval_frame_map.py"), *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
    )


def test_cli_end_to_end(tmp_path: Path) -> None:
    p = _write_fixture(tmp_path)
    out = tmp_path / "result.json"
    proc = _run_cli("--format", "ava", "--gt", str(p["gt.csv"]), "--det", str(p["det.csv"]),
                    "--labelmap", str(p["map.pbtxt"]), "--iou", "0.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert {"frame_mAP", "per_class_AP", "num_gt", "num_det"} <= set(result)
    assert result["frame_mAP"] == pytest.approx(0.75)
    assert result["per_class_AP"] == {"1": pytest.approx(0.5), "2": 1.0, "3": None}
    assert "frame-mAP@0.5: 0.7500" in proc.stdout and "bend/bow" in proc.stdout


def test_cli_match_order_file(tmp_path: Path) -> None:
    gt = _table([("v", 902, *A, 1, 0)])
    (tmp_path / "det.csv").write_text("v,0902,0.1,0.1,0.4,0.5,1,0.5\nv,0902,0.1,0.1,0.4,0.5,1,0.9\n")
    write_ava_csv(tmp_path / "gt.csv", gt)
    write_labelmap(tmp_path / "map.pbtxt", {1: "a"})
    for order, want in (("score", 1.0), ("file", 0.5)):
        proc = _run_cli("--gt", str(tmp_path / "gt.csv"), "--det", str(tmp_path / "det.csv"), "--labelmap",
                        str(tmp_path / "map.pbtxt"), "--match-order", order, "--out", str(tmp_path / "r.json"))
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "r.json").read_text())["frame_mAP"] == want


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    p = _write_fixture(tmp_path)
    out = tmp_path / "result.json"
    proc = _run_cli("--gt", str(tmp_path / "missing.csv"), "--det", str(p["det.csv"]),
                    "--labelmap", str(p["map.pbtxt"]), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "missing.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()

    p["det.csv"].write_text("v,0902,0.1,0.2,0.3,0.4,1\nv,0902,0.1,0.2\n")
    proc = _run_cli("--gt", str(p["gt.csv"]), "--det", str(p["det.csv"]),
                    "--labelmap", str(p["map.pbtxt"]), "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"{p['det.csv']}:2:" in proc.stderr
