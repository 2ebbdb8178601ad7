import os

import av
import numpy as np
import pytest

from stal.data.video_io import frames_at_fps
from stal.errors import DataError

import extract_frames  # data_prep tool, see conftest's sys.path


def _write_video(path, *, frames=30, fps=10, size=32):
    """A video whose frame k is uniformly grey with value 8k (so each frame is identifiable)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}
        for k in range(frames):
            img = np.full((size, size, 3), 8 * k, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_frames_at_fps_picks_the_nearest_frame(tmp_path):
    video = tmp_path / "v.mp4"
    _write_video(video)
    out = list(frames_at_fps(str(video), fps=5, start=1.0, duration=2.0))
    assert len(out) == 10
    # Output i is at t = 1 + i/5 s, i.e. source frame 10 + 2i (value 8 * (10 + 2i)).
    values = [float(f.mean()) for f in out]
    np.testing.assert_allclose(values, [8 * (10 + 2 * i) for i in range(10)], atol=3)


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(DataError, match="broken.mp4"):
        list(frames_at_fps(str(bad), fps=5))


def test_extract_frames_tool_writes_ava_layout_and_resumes(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_video(videos / "clipA.mp4")
    out = tmp_path / "frames"
    args = ["--videos", str(videos), "--out", str(out), "--fps", "10", "--start", "0", "--duration", "2"]
    assert extract_frames.main(args) == 0
    names = sorted(os.listdir(out / "clipA"))
    assert names == ["COMPLETE"] + [f"clipA_{i:06d}.jpg" for i in range(1, 21)]
    (out / "clipA" / "clipA_000001.jpg").unlink()
    assert extract_frames.main(args) == 0  # complete marker: skipped, not re-extracted
    assert not (out / "clipA" / "clipA_000001.jpg").exists()
    (videos / "bad.mp4").write_bytes(b"garbage")
    assert extract_frames.main(args) == 2
    assert "bad.mp4" in capsys.readouterr().err
