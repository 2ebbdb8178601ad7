"""Hand-checked minimal cases for each place where ACT's / YOWO's code and the earlier stal
evaluation differed (issue 23): per-frame NMS, linking, classes without ground truth, tubes
past nframes, float64 ground truth, YOWO's testlist and integer boxes, ACT / MOC pickles."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from stal.errors import DataError
from stal.evaluation import act_map
from stal.formats.act import ActAnnotations, ActFormatError, read_act_pickle, write_act_pickle

REPO_ROOT = Path(__file__).resolve().parents[1]
# The fixtures' class "jump" has ground truth only in a train video: warned in every call.
pytestmark = pytest.mark.filterwarnings("ignore:1 classes have no ground truth")
BOX = (0.0, 0.0, 9.0, 9.0)  # 10 x 10 pixels with the +1 convention


def _tube(first: int, last: int, box=BOX) -> np.ndarray:
    frames = np.arange(first, last + 1, dtype=np.float64)
    return np.concatenate([frames[:, None], np.tile(np.array(box, np.float64), (len(frames), 1))], axis=1)


def _ann(tubes=None, nframes: int = 20, labels=("run", "jump")) -> ActAnnotations:
    return ActAnnotations(labels=list(labels), train_videos=[["t"]], test_videos=[["a"]],
                          nframes={"a": nframes, "t": 5}, resolution={"a": (240, 320), "t": (240, 320)},
                          gttubes={"a": {0: tubes or [_tube(1, 20)]}, "t": {1: [_tube(1, 5)]}}, source="test")


def _dets(rows) -> act_map.FrameDetections:
    return act_map.FrameDetections(["a"], np.zeros(len(rows), np.int64), np.array([r[0] for r in rows], np.int64),
                                   np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
                                   np.array([r[2] for r in rows], np.int64), np.array([r[3] for r in rows]))


# ---------------------------------------------------------------------------------------- frame NMS


def test_frame_nms_removes_a_lower_scored_overlap_before_matching() -> None:
    # GT on frame 1 only. A (0.9): 5 px to the right, IoU 50/150 = 1/3 with the GT: a FP.
    # B (0.8) = the GT box: a TP, but IoU(A, B) = 1/3 > 0.3, so ACT's NMS removes it.
    ann = _ann([_tube(1, 1)])
    rows = [(1, (5, 0, 14, 9), 0, 0.9), (1, BOX, 0, 0.8)]
    act = act_map.act_frame_map(ann, _dets(rows))
    assert act["per_class_AP"]["0"] == 0.0 and act["counts"]["det_suppressed_by_frame_nms"] == 1
    # Without the NMS: FP then TP, PR (1, 0) (0, 0) (0.5, 1): AP = 1 * (0.5 + 0) / 2
    raw = act_map.act_frame_map(ann, _dets(rows), frame_nms=None)
    assert raw["per_class_AP"]["0"] == 0.25
    yowo = act_map.act_frame_map(ann, _dets(rows), protocol="yowo")  # YOWO's evaluator has no NMS
    assert "det_suppressed_by_frame_nms" not in yowo["counts"] and yowo["num_det"]["0"] == 2


def test_frame_nms_uses_the_plus_one_iou_and_file_order_on_ties() -> None:
    # (0,0,9,9) vs (5,0,14,9): +1 IoU 50/150 = 0.333 > 0.3 (suppressed); without +1 it is
    # 36/126 = 0.286 and torchvision's plain NMS would keep both.
    det = _dets([(1, BOX, 0, 0.5), (1, (5, 0, 14, 9), 0, 0.5), (1, (5, 0, 14, 9), 1, 0.4),
                 (2, (5, 0, 14, 9), 0, 0.1)])
    kept, removed = act_map.per_frame_nms(det, overlap=0.3)
    assert removed == 1 and kept.boxes[:, 0].tolist() == [0, 5, 5]  # the tie keeps the first row
    assert kept.label.tolist() == [0, 1, 0] and kept.frame.tolist() == [1, 1, 2]  # per class, per frame


def test_tubelet_pickles_spread_each_box_to_its_frame(tmp_path: Path) -> None:
    # ACT format, K = 2: a tubelet starting at frame s gives boxes on s and s + 1 (same score).
    ann = _ann([_tube(1, 3)], nframes=3)
    write_act_pickle(tmp_path / "gt.pkl", ann)
    (tmp_path / "det" / "a").mkdir(parents=True)
    for start in (1, 2):
        dets = np.array([[0, 0.9 - 0.1 * start, *BOX, *BOX]], np.float32)
        dets_all = np.array([[*BOX, *BOX, 0.0, 0.9, 0.1]], np.float32)
        with open(tmp_path / "det" / "a" / f"{start:05d}.pkl", "wb") as f:
            pickle.dump((dets, dets_all), f, protocol=2)
    # frame 2 has two boxes (from starts 1 and 2); the NMS keeps one: 3 TPs over 3 GT
    got = act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det")
    assert got["num_det"]["0"] == 3 and got["per_class_AP"]["0"] == pytest.approx(1.0)
    assert got["counts"]["det_suppressed_by_frame_nms"] == 1
    raw = act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det", frame_nms=None)
    assert raw["num_det"]["0"] == 4  # frame 2's duplicate: a FP at rank 3 -> AP below 1
    assert raw["per_class_AP"]["0"] < 1.0
    (tmp_path / "det" / "a" / "00002.pkl").unlink()
    with pytest.raises(ActFormatError, match=r"00002.pkl: missing .*start frames 1..2"):
        act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det")


def test_moc_pickles_are_read_as_per_class_tubelets(tmp_path: Path) -> None:
    ann = _ann([_tube(1, 2)], nframes=2)
    write_act_pickle(tmp_path / "gt.pkl", ann)
    (tmp_path / "det" / "a").mkdir(parents=True)
    for start in (1, 2):  # MOC: {label + 1: (N, 4K + 1)}, K = 1
        with open(tmp_path / "det" / "a" / f"{start:05d}.pkl", "wb") as f:
            pickle.dump({1: np.array([[*BOX, 0.8]], np.float32), 2: np.zeros((0, 5), np.float32)}, f)
    got = act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det")
    assert got["num_det"] == {"0": 2, "1": 0} and got["per_class_AP"]["0"] == 1.0
    with open(tmp_path / "det" / "a" / "00001.pkl", "wb") as f:
        pickle.dump({0: np.zeros((0, 5), np.float32)}, f)
    with pytest.raises(ActFormatError, match="key 0: expected MOC's 1-based class keys 1..2"):
        act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det")


# ---------------------------------------------------------------------------------------- linking


def _frames(spec: dict) -> dict:
    return {f: (np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64))
            for f, (boxes, scores) in spec.items()}


def test_act_linking_bridges_up_to_four_missing_frames_moc_ends_the_tube() -> None:
    # One box on frames 1-20 except 8-11 (4 frames): ACT matches at frame 12 (offset 5 from
    # frame 7) and keeps one 20-frame tube; MOC ends it at frame 8: 7 + 9 frames, both < 15.
    spec = {f: ([BOX], [0.5]) for f in range(1, 21) if not 8 <= f <= 11}
    act = act_map.link_tubes(_frames(spec), 20, linking="act")
    assert len(act) == 1 and act[0][0][:, 0].tolist() == list(range(1, 21)) and act[0][1] == 0.5
    assert act_map.link_tubes(_frames(spec), 20, linking="moc") == []
    # A fifth missing frame ends ACT's tube too (no match at offset 5, and offset >= 5).
    spec.pop(12)
    assert act_map.link_tubes(_frames(spec), 20, linking="act") == []


def test_bridged_frames_interpolated_or_nan_as_act_leaves_them() -> None:
    spec = {f: ([(f, 0, f + 9, 9)], [0.5]) for f in range(1, 21) if f not in (8, 9)}
    [(tube, _)] = act_map.link_tubes(_frames(spec), 20, bridged="interpolate")
    np.testing.assert_array_equal(tube[7], [8, 8, 0, 17, 9, 0.5])  # between frames 7 and 10
    [(nan_tube, _)] = act_map.link_tubes(_frames(spec), 20, bridged="nan")
    assert np.isnan(nan_tube[7:9, 1:]).all() and not np.isnan(nan_tube[[6, 9], 1:]).any()
    # video-AP: with NaN boxes the tube's IoU is NaN: never a TP (ACT); interpolated: a TP
    moving = np.array([[f, f, 0, f + 9, 9] for f in range(1, 21)], np.float64)
    ann = _ann([moving])
    rows = [(f, (f, 0, f + 9, 9), 0, 0.5) for f in spec]
    interp = act_map.act_video_map(ann, _dets(rows), thresholds=(0.2,))
    nan = act_map.act_video_map(ann, _dets(rows), thresholds=(0.2,), bridged="nan")
    assert interp["per_class_video_AP"]["0.2"]["0"] == 1.0 and nan["per_class_video_AP"]["0.2"]["0"] == 0.0


def test_act_linking_nms_and_min_score_differ_from_moc() -> None:
    # Two boxes each frame with +1 IoU 0.5 (5 px apart): ACT's NMS at 0.3 keeps one (one tube),
    # MOC's 0.6 keeps both (two tubes).
    spec = {f: ([BOX, (5, 0, 14, 9)], [0.9, 0.8]) for f in range(1, 16)}
    assert len(act_map.link_tubes(_frames(spec), 15, linking="act")) == 1
    assert len(act_map.link_tubes(_frames(spec), 15, linking="moc")) == 2
    # Mean score 0.007: under ACT's 0.01, over MOC's 0.005.
    low = {f: ([BOX], [0.007]) for f in range(1, 16)}
    assert act_map.link_tubes(_frames(low), 15, linking="act") == []
    assert len(act_map.link_tubes(_frames(low), 15, linking="moc")) == 1


def test_tubelets_of_k_frames_link_over_their_common_frames_and_average() -> None:
    # K = 2. Start 1: boxes at x 0 and 2; start 2: x 2 and 4 (IoU 1 on the shared frame 2).
    # Frame 2 is covered by both tubelets: its box is their mean (x 2).
    starts = {1: (np.array([[[0, 0, 9, 9], [2, 0, 11, 9]]], np.float64), np.array([0.6])),
              2: (np.array([[[2, 0, 11, 9], [4, 0, 13, 9]]], np.float64), np.array([0.4]))}
    [(tube, score)] = act_map.link_tubelets(starts, 3, 2, params=act_map.LINKINGS["act"], min_length=3)
    assert score == pytest.approx(0.5)
    np.testing.assert_allclose(tube[:, :5], [[1, 0, 0, 9, 9], [2, 2, 0, 11, 9], [3, 4, 0, 13, 9]])
    np.testing.assert_allclose(tube[:, 5], [0.6, 0.5, 0.4])


# ---------------------------------------------------------------------------------------- ground truth


def test_class_without_ground_truth_is_ap_zero_for_act_and_left_out_for_yowo() -> None:
    ann = _ann()  # class 1 ("jump") has ground truth only in the train video
    rows = [(f, BOX, 0, 0.9) for f in range(1, 21)]
    with pytest.warns(UserWarning, match=r"1 classes have no ground truth .*'jump'.*frame-AP is 0, counted in the mean"):
        act = act_map.act_frame_map(ann, _dets(rows))
    assert act["per_class_AP"] == {"0": pytest.approx(1.0), "1": 0.0} and act["frame_mAP"] == pytest.approx(0.5)
    assert act["counts"]["classes_without_gt"] == 1
    with pytest.warns(UserWarning, match="left out of the mean"):
        yowo = act_map.act_frame_map(ann, _dets(rows), protocol="yowo")
    assert yowo["per_class_AP"]["1"] is None and yowo["frame_mAP"] == pytest.approx(1.0)


def test_tubes_past_nframes_are_kept_with_a_warning(tmp_path: Path) -> None:
    ann = _ann([_tube(1, 25)])  # the video has 20 frames
    write_act_pickle(tmp_path / "gt.pkl", ann)
    with pytest.warns(UserWarning, match=r"1 ground-truth tubes have frames past nframes \(first: "
                                         r"gttubes\['a'\]\[0\]\[0\] frames 1..25, nframes 20\)"):
        read = read_act_pickle(tmp_path / "gt.pkl")
    assert read.tubes_past_end == ["gttubes['a'][0][0] frames 1..25, nframes 20"]
    # Frames 21-25 cannot be detected: 20 TPs over 25 GT boxes, AP = recall 0.8 at precision 1
    det = tmp_path / "det.csv"
    det.write_text("".join(f"a,{f},0,0,9,9,0,0.9\n" for f in range(1, 21)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = act_map.act_evaluate_files(tmp_path / "gt.pkl", det)
    assert got["per_class_AP"]["0"] == pytest.approx(0.8) and got["counts"]["gt_tubes_past_nframes"] == 1


def test_ground_truth_keeps_float64(tmp_path: Path) -> None:
    ann = _ann([_tube(1, 2, (10.1, 0.0, 19.3, 9.7))])
    write_act_pickle(tmp_path / "gt.pkl", ann)
    tube = read_act_pickle(tmp_path / "gt.pkl").gttubes["a"][0][0]
    assert tube.dtype == np.float64 and tube[0, 1] == 10.1 and tube[0, 4] == 9.7  # float32: 10.100000381


# ---------------------------------------------------------------------------------------- YOWO


def test_testlist_keeps_only_its_frames(tmp_path: Path) -> None:
    ann = _ann()
    for key in ("nframes", "resolution", "gttubes"):  # YOWO's names are <class>/<video>
        getattr(ann, key)["c/a"] = getattr(ann, key).pop("a")
    ann.test_videos = [["c/a"]]
    write_act_pickle(tmp_path / "gt.pkl", ann)
    testlist = tmp_path / "testlist.txt"
    testlist.write_text("labels/c/a/00005.txt\nc/a/00010.txt\n")
    # TP on 5, a FP on frame 7 (not listed: left out), a TP on 10
    det = tmp_path / "det.csv"
    det.write_text("c/a,5,0,0,9,9,0,0.9\nc/a,7,50,50,59,59,0,0.8\nc/a,10,0,0,9,9,0,0.7\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = act_map.act_evaluate_files(tmp_path / "gt.pkl", det, protocol="yowo", testlist=testlist)
        everything = act_map.act_evaluate_files(tmp_path / "gt.pkl", det, protocol="yowo")
    assert got["num_gt"]["0"] == 2 and got["per_class_AP"]["0"] == 1.0
    assert got["counts"]["det_outside_testlist"] == 1 and got["counts"]["gt_boxes_outside_testlist"] == 18
    assert everything["num_gt"]["0"] == 20 and everything["per_class_AP"]["0"] < 0.1
    testlist.write_text("c/b/00005.txt\n")
    with pytest.raises(DataError, match=r"testlist.txt:1: video 'c/b' is not in the ground truth"):
        act_map.act_evaluate_files(tmp_path / "gt.pkl", det, testlist=testlist)


def test_round_boxes_as_yowo_writes_them(tmp_path: Path) -> None:
    ann = _ann([_tube(1, 1)])
    write_act_pickle(tmp_path / "gt.pkl", ann)
    det = tmp_path / "det.csv"
    # x2 3.5: +1 IoU 45/100 < 0.5; rounded half to even to 4 (Python's round): 50/100, a TP
    det.write_text("a,1,0,0,3.5,9,0,0.9\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = act_map.act_evaluate_files(tmp_path / "gt.pkl", det, protocol="yowo")
        rounded = act_map.act_evaluate_files(tmp_path / "gt.pkl", det, protocol="yowo", round_boxes=True)
    assert raw["per_class_AP"]["0"] == 0.0 and rounded["per_class_AP"]["0"] == 1.0
    det.write_text("a,1,0,0,4.5,9,0,0.9\n")  # 4.5 -> 4 (to even), as round(4.5) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = act_map.act_evaluate_files(tmp_path / "gt.pkl", det, protocol="yowo", round_boxes=True)
    assert got["per_class_AP"]["0"] == 1.0 and round(4.5) == 4


# ---------------------------------------------------------------------------------------- command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "eval_frame_map.py"), "--format", "ucf24",
                           *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_cli_options(tmp_path: Path) -> None:
    ann = _ann([_tube(1, 20, (f, 0, f + 9, 9)) for f in (0,)])
    write_act_pickle(tmp_path / "gt.pkl", ann)
    det = tmp_path / "det.csv"
    rows = [f"a,{f},0,0,9,9,0,0.9\n" for f in range(1, 21) if f not in (8, 9)]
    det.write_text("".join(rows) + "a,1,5,0,14,9,0,0.8\n")
    out = tmp_path / "r.json"
    base = ["--gt", str(tmp_path / "gt.pkl"), "--det", str(det), "--out", str(out)]
    proc = _cli(*base, "--video-map")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["counts"]["det_suppressed_by_frame_nms"] == 1 and result["linking"] == "act"
    assert result["per_class_video_AP"]["0.5"]["0"] == 1.0
    assert "det_suppressed_by_frame_nms=1" in proc.stdout
    proc = _cli(*base, "--video-map", "--linking", "moc", "--frame-nms", "none", "--bridged-frames", "nan")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["counts"] == {"classes_without_gt": 1, "gt_tubes_past_nframes": 0}
    assert result["per_class_video_AP"]["0.5"]["0"] == 0.0 and result["linking"] == "moc"
    proc = _cli(*base, "--frame-nms", "1.5")
    assert proc.returncode == 2 and "--frame-nms must be 'none' or an IoU in [0, 1], got '1.5'" in proc.stderr
    (tmp_path / "testlist.txt").write_text("a/00001.txt\n")
    proc = _cli(*base[:-1], str(tmp_path / "testlist.txt"), "--protocol", "yowo", "--testlist",
                str(tmp_path / "testlist.txt"))
    assert proc.returncode == 2 and "is the --testlist file" in proc.stderr  # the JSON would replace it
    assert (tmp_path / "testlist.txt").read_text() == "a/00001.txt\n"


def test_per_frame_nms_equals_torchvision_with_the_plus_one_shift() -> None:
    # torchvision's batched_nms on (x1, y1, x2 + 1, y2 + 1) computes ACT's +1 IoU; distinct scores
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(3)
    n = 3000
    xy, wh = rng.uniform(0, 100, (n, 2)), rng.uniform(5, 80, (n, 2))
    boxes, scores = np.concatenate([xy, xy + wh], axis=1), rng.random(n)
    frame, label = rng.integers(1, 40, n), rng.integers(0, 3, n)
    det = act_map.FrameDetections(["a"], np.zeros(n, np.int64), frame, boxes, label, scores)
    kept, removed = act_map.per_frame_nms(det, overlap=0.3)
    want = torchvision.ops.batched_nms(torch.from_numpy(boxes + [0, 0, 1, 1]), torch.from_numpy(scores),
                                       torch.from_numpy(frame * 3 + label), 0.3).numpy()
    assert removed > n // 4 and np.array_equal(kept.score, scores[np.sort(want)])
