import os

import av
import numpy as np
import pytest

from stal.io.video import frames_at_fps
from stal.errors import DataError


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


def test_clip_readers_agree_with_the_frame_numbers(tmp_path):
    """PyAV (seek + decode) and decord read the same source frames; probe reads the header."""
    from _data_fixtures import grey, write_video
    from stal.io.video import probe_video, read_clip_decord, read_clip_pyav

    video = tmp_path / "c.mp4"
    write_video(video, frames=50, fps=10)
    info = probe_video(str(video))
    assert (info.width, info.height, info.fps) == (32, 24, 10.0) and abs(info.duration - 5.0) < 0.11
    expected = [grey(k) for k in range(21, 29, 2)]  # 4 frames from 2.1 s at stride 2
    pyav = read_clip_pyav(str(video), start=2.1, num_frames=4, stride=2)
    assert pyav.shape == (4, 24, 32, 3)
    np.testing.assert_allclose(pyav.mean(axis=(1, 2, 3)), expected, atol=4)
    dec = read_clip_decord(str(video), indices=[21, 23, 25, 27])
    np.testing.assert_allclose(dec.mean(axis=(1, 2, 3)), expected, atol=4)
    with pytest.raises(DataError, match="expected 4"):
        read_clip_pyav(str(video), start=4.5, num_frames=4, stride=2)


def test_bench_decode_prints_one_row_per_source(tmp_path, capsys, repo_root):
    import sys

    from _data_fixtures import write_video

    sys.path.insert(0, os.path.join(repo_root, "tools"))
    import bench_decode

    video = tmp_path / "small.mp4"
    write_video(video, frames=40, fps=10)
    assert bench_decode.main(["--video", str(video), "--clips", "2", "--frames", "2", "--rate", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["jpeg", "pyav", "decord", "decord (reader kept open)"]
