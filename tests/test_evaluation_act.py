"""UCF101-24 / JHMDB frame-mAP and video-mAP (ACT protocol, YOWO variant): hand-computed cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stal.formats.act import ActAnnotations, write_act_pickle
from stal.errors import DataError
from stal.evaluation import act_map

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tube(first: int, last: int, box: tuple) -> np.ndarray:
    frames = np.arange(first, last + 1, dtype=np.float32)
    return np.concatenate([frames[:, None], np.tile(np.array(box, np.float32), (len(frames), 1))], axis=1)


def _annotations() -> ActAnnotations:
    # video a: class 0, one actor on frames 1-20; video b: class 1, frames 1-20; 2 classes + 1 without GT
    return ActAnnotations(
        labels=["run", "jump", "unused"], train_videos=[["t"]], test_videos=[["a", "b"]],
        nframes={"a": 20, "b": 20, "t": 5}, resolution={"a": (240, 320), "b": (240, 320), "t": (240, 320)},
        gttubes={"a": {0: [_tube(1, 20, (10, 10, 49, 49))]}, "b": {1: [_tube(1, 20, (100, 100, 139, 179))]},
                 "t": {0: [_tube(1, 5, (0, 0, 9, 9))]}},
        source="test")


def _dets(rows: list[tuple]) -> act_map.FrameDetections:
    videos: dict = {}
    v = [videos.setdefault(r[0], len(videos)) for r in rows]
    return act_map.FrameDetections(list(videos), np.array(v, np.int64), np.array([r[1] for r in rows], np.int64),
                                   np.array([r[2:6] for r in rows], np.float64).reshape(-1, 4),
                                   np.array([r[6] for r in rows], np.int64), np.array([r[7] for r in rows], np.float64))


def test_iou_plus_one_and_act_ap() -> None:
    # 10x10 pixel box (0..9) against 0..4 x 0..9: 50 / 100
    assert act_map.iou2d_plus1(np.array([[0.0, 0, 9, 9]]), np.array([0.0, 0, 4, 9]))[0] == 0.5
    # TP, FP, TP over 2 GT: PR points (1,0) (1,.5) (.5,.5) (2/3,1): trapezoids .5*(1+1)/2 + .5*(.5+2/3)/2
    got = act_map.act_ap(np.array([True, False, True]), 2)
    assert got == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2, abs=1e-6)
    tube = _tube(1, 10, (0, 0, 9, 9))
    assert act_map.iou3dt(tube, _tube(6, 15, (0, 0, 9, 9))) == pytest.approx(5 / 15)
    assert act_map.iou3dt(tube, _tube(11, 15, (0, 0, 9, 9))) == 0.0


def test_frame_map_act_falls_back_yowo_does_not() -> None:
    ann = _annotations()
    ann.gttubes["a"][0].append(_tube(1, 20, (20, 10, 59, 49)))  # a second actor, same class
    # Frame 1 of video a: the first detection is actor 1; the duplicate overlaps actor 1 best
    # (IoU 0.905) and actor 2 at 0.667: ACT deletes actor 1 and lets it take actor 2, YOWO
    # counts it as a FP.
    dup = (12, 10, 51, 49)
    rows = [("a", 1, 10, 10, 49, 49, 0, 0.9), ("a", 1, *dup, 0, 0.8), ("b", 1, 100, 100, 139, 179, 1, 0.7)]
    # without ACT's per-frame NMS (it would remove the duplicate: IoU 0.905 > 0.3)
    act = act_map.act_frame_map(ann, _dets(rows), protocol="act", frame_nms=None)
    assert act["num_gt"] == {"0": 40, "1": 20, "2": 0} and act["per_class_AP"]["2"] == 0.0
    # class 0: TP, TP over 40 GT -> PR (1,0) (1,1/40) (1,2/40): AP = 2/40
    assert act["per_class_AP"]["0"] == pytest.approx(2 / 40, abs=1e-7)
    yowo = act_map.act_frame_map(ann, _dets(rows), protocol="yowo", frame_nms=None)
    assert yowo["per_class_AP"]["0"] == pytest.approx(1 / 40)  # duplicate of actor 1: FP
    assert yowo["per_class_AP"]["2"] is None  # YOWO's pascalvoc.py leaves such a class out
    assert yowo["frame_mAP"] == pytest.approx((1 / 40 + 1 / 20) / 2)


def test_video_map_perfect_and_broken_tubes() -> None:
    ann = _annotations()
    rows = [("a", f, 10, 10, 49, 49, 0, 0.9) for f in range(1, 21)]
    rows += [("b", f, 100, 100, 139, 179, 1, 0.8) for f in range(1, 21)]
    rows += [("a", f, 200, 150, 239, 199, 1, 0.3) for f in range(1, 21)]  # wrong-class tube: FP for class 1
    result = act_map.act_video_map(ann, _dets(rows))
    assert result["per_class_video_AP"]["0.5"]["0"] == 1.0
    assert result["per_class_video_AP"]["0.5"]["1"] == 1.0  # the FP ranks below the TP
    assert result["per_class_video_AP"]["0.75"] == {"0": 1.0, "1": 1.0, "2": 0.0}  # 2: no ground truth
    assert result["video_mAP"]["0.75"] == pytest.approx(2 / 3)
    # frames 1-10 only: temporal IoU 0.5 -> a TP at 0.2 and 0.5, a miss above
    short = [r for r in rows[:20] if r[1] <= 10] + rows[20:40]
    result = act_map.act_video_map(ann, _dets(short), min_length=5)
    assert result["per_class_video_AP"]["0.5"]["0"] == 1.0
    assert result["per_class_video_AP"]["0.75"]["0"] == 0.0


def test_linking_follows_the_best_scoring_overlap_and_nms() -> None:
    frames = {1: (np.array([[0.0, 0, 9, 9], [1, 0, 10, 9]]), np.array([0.5, 0.9])),  # NMS keeps one
              2: (np.array([[1.0, 0, 10, 9]]), np.array([0.7])),
              4: (np.array([[1.0, 0, 10, 9]]), np.array([0.6]))}  # frame 3 empty: the tube ends
    tubes = act_map.link_tubes(frames, 4, min_length=1, linking="moc")
    assert [len(t) for t, _ in tubes] == [2, 1]
    assert tubes[0][1] == pytest.approx(0.8) and tubes[0][0][:, 0].tolist() == [1, 2]


def test_files_and_cli(tmp_path: Path) -> None:
    gt = tmp_path / "gt.pkl"
    write_act_pickle(gt, _annotations())
    det = tmp_path / "det.csv"
    det.write_text("".join(f"a,{f},10,10,49,49,0,0.9\n" for f in range(1, 21)))
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "eval_frame_map.py"), "--format", "ucf24",
                           "--gt", str(gt), "--det", str(det), "--video-map", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})  # this checkout's stal
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    # class 2 has no ground truth: AP 0 in the mean, as ACT's frameAP gives it
    assert result["per_class_AP"] == {"0": pytest.approx(1.0), "1": 0.0, "2": 0.0}
    assert result["frame_mAP"] == pytest.approx(1 / 3) and result["video_mAP"]["0.5"] == pytest.approx(1 / 3)
    assert "1 classes have no ground truth" in proc.stderr
    assert "run" in proc.stdout and "video-mAP@0.5" in proc.stdout
    det.write_text("a,1,10,10,49,49,0,0.9\na,0,10,10,49,49,0,0.9\n")
    with pytest.raises(DataError, match=r"det.csv:2: column 2 \(frame\)"):
        act_map.act_evaluate_files(gt, det)
    det.write_text("a,1,10,10,49,49,7,0.9\n")
    with pytest.raises(DataError, match=r"det.csv:1: column 7 \(label\)"):
        act_map.act_evaluate_files(gt, det)
