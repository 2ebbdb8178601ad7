"""data_prep/extract_frames.py: AVA layout, frame counts by hand, resume, bad videos."""

import json
import os

import numpy as np
from PIL import Image

from stal.cli import extract_frames
from _data_fixtures import grey, write_video


def _values(folder, vid, n):
    return [float(np.asarray(Image.open(os.path.join(folder, f"{vid}_{i:06d}.jpg"))).mean()) for i in range(1, n + 1)]


def test_ava_window_frame_count_and_content(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "movA.mp4", frames=906, fps=1)  # 906 s long at 1 fps
    out = tmp_path / "frames"
    args = ["--videos", str(videos), "--out", str(out), "--fps", "4", "--start", "900", "--duration", "5",
            "--workers", "1"]
    assert extract_frames.main(args) == 0
    # By hand: 5 s x 4 fps = 20 frames; output i is at 900 + i/4 s, nearest 1-fps source frame
    # (ties to the earlier one): i = 0,1,2 -> 900; 3,4,5,6 -> 901; 7..10 -> 902 ...
    names = sorted(os.listdir(out / "movA"))
    assert names == ["COMPLETE"] + [f"movA_{i:06d}.jpg" for i in range(1, 21)]
    source = [900 + int(np.floor(i / 4 + 0.5 - 1e-9)) for i in range(20)]
    np.testing.assert_allclose(_values(out / "movA", "movA", 20), [grey(k) for k in source], atol=4)
    assert json.loads((out / "movA" / "COMPLETE").read_text())["frames"] == 20


def test_resume_verifies_counts_and_bad_videos_are_skipped(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", frames=20, fps=10)
    write_video(videos / "short.mp4", frames=20, fps=10)
    write_video(videos / "trunc.avi", frames=40, fps=10)
    data = (videos / "trunc.avi").read_bytes()
    (videos / "trunc.avi").write_bytes(data[: len(data) // 3])
    (videos / "garbage.mp4").write_bytes(b"not a video")
    out = tmp_path / "frames"
    args = ["--videos", str(videos), "--out", str(out), "--fps", "10", "--start", "0", "--duration", "4",
            "--workers", "2"]
    assert extract_frames.main(args) == 2
    captured = capsys.readouterr()
    assert "garbage.mp4" in captured.err and "trunc.avi" in captured.err
    assert "good" in captured.out and "0 of 4 videos ready" in captured.out
    assert "video is 2.0 s long" in captured.err  # header check, before decoding

    # The whole clip (2 s) as the window: good and short are fine; resume skips them.
    args[args.index("--duration") + 1] = "2"
    extract_frames.main(args)
    assert "2 extracted" in capsys.readouterr().out
    assert extract_frames.main(args) == 2
    assert "0 extracted, 2 already complete" in capsys.readouterr().out
    (out / "good" / "good_000005.jpg").unlink()  # a lost frame: verification re-extracts
    extract_frames.main(args)
    assert "1 extracted, 1 already complete" in capsys.readouterr().out
    assert len(os.listdir(out / "good")) == 21


def test_video_shorter_than_the_ava_segment(tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", frames=20, fps=10)
    assert extract_frames.main(["--videos", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "clip.mp4: the video is 2.0 s long; frames [900, 1801) s need at least 1800 s" in err
    assert "15-minute segment" in err and "--start 0 --duration 0" in err
