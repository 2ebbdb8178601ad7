"""Broken inputs of the data-preparation tools, the tube bank and the evaluator's warnings.

Each fixture is generated in the real format (PyAV-encoded MKV / MP4 cut short, npz cut in
half, labelme / COCO JSON, AVA and ACT detection files); each case checks the exit status or
exception, a one-line message naming the file, and that nothing is marked complete.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import warnings

import numpy as np
import pytest

from stal.cli import build_background_bank
from stal.cli import build_tube_bank
from stal.cli import eval_frame_map
from stal.cli import extract_frames
from stal.cli import videos_to_ava
from _data_fixtures import write_video
from stal.errors import DataError
from stal.evaluation.act_map import act_evaluate_files
from stal.evaluation.frame_map import ava_frame_map_files
from stal.formats.ava import AvaTable, write_ava_csv
from stal.io import atomic
from stal.synthesis import kernels
from stal.synthesis.tube_bank import TubeBank, TubeBankWriter


def _one_error_line(err: str, *parts: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) >= 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_truncated_mkv_is_not_marked_complete(tmp_path, capsys):
    """The container says 10 s; half the bytes hold ~5 s: an error, no COMPLETE marker."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "cut.mkv", frames=100, fps=10)
    data = (videos / "cut.mkv").read_bytes()
    (videos / "cut.mkv").write_bytes(data[: len(data) // 2])
    out = tmp_path / "frames"
    code = extract_frames.main(["--videos", str(videos), "--out", str(out), "--fps", "10", "--start", "0",
                                "--duration", "0", "--workers", "1"])
    assert code == 2
    _one_error_line(capsys.readouterr().err, "cut.mkv", "truncated")
    assert not (out / "cut" / "COMPLETE").exists()


def _videos_with_boxes(tmp_path, boxes: str, *, frames=20, truncate=False):
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    write_video(videos / "cam1.mp4", frames=frames, fps=10, size=(40, 20))
    if truncate:
        data = (videos / "cam1.mp4").read_bytes()
        (videos / "cam1.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "boxes.csv").write_text("video,time,x1,y1,x2,y2,action\n" + boxes)
    return ["--videos", str(videos), "--annotations", str(tmp_path / "boxes.csv"), "--out", str(tmp_path / "ava"),
            "--fps", "10", "--workers", "1"]


def test_keyframe_at_the_video_length_is_an_error(tmp_path, capsys):
    args = _videos_with_boxes(tmp_path, "cam1,1,10,5,30,15,wave\ncam1,2,10,5,30,15,wave\n")  # a 2.0 s video
    assert videos_to_ava.main(args) == 2
    _one_error_line(capsys.readouterr().err, "boxes.csv:3", "at or after the end")


def test_truncated_video_fails_videos_to_ava(tmp_path, capsys):
    args = _videos_with_boxes(tmp_path, "cam1,1,10,5,30,15,wave\ncam1,5,10,5,30,15,wave\n", frames=80,
                              truncate=True)
    assert videos_to_ava.main(args) == 2
    _one_error_line(capsys.readouterr().err, "cam1")
    assert not (tmp_path / "ava" / "annotations" / "ava_train_v2.2.csv").exists()


def test_background_bank_of_nothing_is_an_error(tmp_path, capsys):
    write_video(tmp_path / "short.mp4", frames=6, fps=10)  # shorter than any usable range
    code = build_background_bank.main(["--out", str(tmp_path / "bg"), "--videos", str(tmp_path / "short.mp4"),
                                       "--min-length", "100", "--mode", "ranges"])
    assert code == 2
    _one_error_line(capsys.readouterr().err, "0 backgrounds")


def _bank(tmp_path) -> str:
    root = str(tmp_path / "bank")
    writer = TubeBankWriter(root, classes=["walk"])
    writer.add(rgb=np.zeros((4, 8, 8, 3), np.uint8), alpha=np.full((4, 8, 8), 255, np.uint8), labels=[0],
               source={"video": "v"})
    writer.finish_input("v")
    return root


def test_truncated_tube_npz_is_one_line_error(tmp_path):
    root = _bank(tmp_path)
    bank = TubeBank(root)
    path = os.path.join(root, bank.entries[0]["file"])
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read tube arrays") as info:
        TubeBank(root)[0]
    assert os.path.basename(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("points,expected", [
    ([[1, 1], [5], [1, 5]], "point 1 is [5]; expected [x, y] numbers"),
    ([[1, 1], "a", [1, 5]], "point 1 is 'a'"),
    ([[1, 1], [5, 5]], "at least 3 points"),
])
def test_malformed_labelme_point(tmp_path, capsys, points, expected):
    from PIL import Image

    Image.new("RGB", (16, 12)).save(tmp_path / "a.png")
    doc = {"imagePath": "a.png", "imageHeight": 12, "imageWidth": 16,
           "shapes": [{"label": "walk", "points": points, "shape_type": "polygon"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    code = build_tube_bank.main(["--out", str(tmp_path / "bank"), "--labelme", str(tmp_path / "a.json"),
                                 "--classes", "walk"])
    assert code == 2
    _one_error_line(capsys.readouterr().err, "a.json shape 0", expected)


def test_numba_cache_is_outside_the_package():
    import numba

    package = os.path.dirname(os.path.abspath(kernels.__file__))
    assert not os.path.abspath(numba.config.CACHE_DIR).startswith(package)
    assert numba.config.CACHE_DIR == kernels.user_cache_dir()


# --- the evaluator -----------------------------------------------------------------------------

def _ava_files(tmp_path, det_rows: str, gt_rows: str = "vid,0902,0.1,0.1,0.5,0.5,1,0\n"):
    (tmp_path / "gt.csv").write_text(gt_rows)
    (tmp_path / "det.csv").write_text(det_rows)
    (tmp_path / "labels.pbtxt").write_text('item {\n  name: "walk"\n  id: 1\n}\n')
    return [str(tmp_path / n) for n in ("gt.csv", "det.csv", "labels.pbtxt")]


def test_duplicate_rows_warn_with_count_and_strict_fails(tmp_path):
    row = "vid,0902,0.1,0.1,0.5,0.5,1,0.9\n"
    gt, det, labels = _ava_files(tmp_path, row * 3 + "vid,0902,0.6,0.1,0.9,0.5,1,0.8\n",
                                 gt_rows="vid,0902,0.1,0.1,0.5,0.5,1,0\n" * 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ava_frame_map_files(gt, det, labels)
    messages = [str(w.message) for w in caught]
    assert any("det.csv: 2 duplicate rows" in m and "line 2" in m for m in messages), messages
    assert any("gt.csv: 1 duplicate rows" in m for m in messages), messages
    assert result["frame_mAP"] < 1.0  # scored as the official evaluator does: the copies count
    with pytest.raises(DataError, match=r"gt.csv: 1 duplicate rows .*line 2 \(--strict\)"):
        ava_frame_map_files(gt, det, labels, strict=True)


def test_no_duplicate_warning_for_distinct_rows(tmp_path):
    gt, det, labels = _ava_files(tmp_path, "vid,0902,0.1,0.1,0.5,0.5,1,0.9\nvid,0902,0.1,0.1,0.5,0.5,1,0.8\n")
    with warnings.catch_warnings(record=True) as caught:  # same box, other score: not a copy
        warnings.simplefilter("always")
        ava_frame_map_files(gt, det, labels)
    assert not [w for w in caught if "duplicate" in str(w.message)]


@pytest.mark.parametrize("target", ["det", "gt", "labelmap", "hard_link", "missing_folder", "directory"])
def test_out_is_checked_before_any_work(tmp_path, capsys, target):
    gt, det, labels = _ava_files(tmp_path, "vid,0902,0.1,0.1,0.5,0.5,1,0.9\n")
    if target == "hard_link":
        os.link(det, tmp_path / "link.csv")
    out = {"det": det, "gt": gt, "labelmap": labels, "missing_folder": str(tmp_path / "nope" / "r.json"),
           "directory": str(tmp_path), "hard_link": str(tmp_path / "link.csv")}[target]
    before = open(det, "rb").read()
    with pytest.raises(SystemExit) as info:
        eval_frame_map.main(["--gt", gt, "--det", det, "--labelmap", labels, "--out", out])
    assert info.value.code == 2
    _one_error_line(capsys.readouterr().err, "--out")
    assert open(det, "rb").read() == before


def test_unknown_act_video_warns_and_strict_fails(tmp_path):
    data = {"labels": ["Run"], "gttubes": {"Run/a": {0: [np.array([[1, 0, 0, 5, 5.0]], np.float32)]}},
            "nframes": {"Run/a": 1}, "resolution": {"Run/a": (10, 10)}, "train_videos": [[]],
            "test_videos": [["Run/a"]]}
    (tmp_path / "GT.pkl").write_bytes(pickle.dumps(data, protocol=2))
    (tmp_path / "det.csv").write_text("Run/a,1,0,0,5,5,0,0.9\nrun/a,1,0,0,5,5,0,0.9\nrun/a,1,1,1,5,5,0,0.5\n")
    with pytest.warns(UserWarning, match=r"2 rows of 1 videos that .*GT.pkl does not have \(first: 'run/a'\)"):
        result = act_evaluate_files(tmp_path / "GT.pkl", tmp_path / "det.csv")
    assert result["frame_mAP"] == pytest.approx(1.0)
    with pytest.raises(DataError, match="--strict"):
        act_evaluate_files(tmp_path / "GT.pkl", tmp_path / "det.csv", strict=True)


def test_disk_full_while_writing_detections_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "detections.csv"
    path.write_text("old detections\n")
    table = AvaTable(video=np.array(["v"], object), timestamp=np.array([902]), boxes=np.zeros((1, 4), np.float32),
                     action=np.array([1]), extra=np.array([0.5], np.float32))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(atomic.WriteError) as info:
        write_ava_csv(path, table, score=True)
    assert "No space left" in str(info.value) and "\n" not in str(info.value)
    assert path.read_text() == "old detections\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(atomic.TMP_PREFIX)]
