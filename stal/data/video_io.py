"""Video decoding with PyAV (no ffmpeg binary needed) and frame extraction at a fixed rate.

Frame selection follows ffmpeg's ``fps`` filter with its default rounding ("near"): output
frame i (0-based) shows the decoded frame whose presentation time is nearest to
``start + i / fps``; ties go to the earlier frame. Output frames are written as
``<out_dir>/<video_id>_%06d.jpg`` numbered from 1, as ``ffmpeg -r FPS out_%06d.jpg`` does
(frame index i is file i+1).
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from stal.errors import DataError


def decode_with_times(path: str) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (presentation time in seconds, uint8 (H, W, 3) RGB frame) for each decoded frame."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from None
    with container:
        stream = container.streams.video[0] if container.streams.video else None
        if stream is None:
            raise DataError(f"{path} has no video stream")
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                yield float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise DataError(f"{path}: decoding failed ({exc})") from None


def frames_at_fps(path: str, *, fps: float, start: float = 0.0,
                  duration: float | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of ``path`` resampled to ``fps`` over [start, start + duration).

    Each output time ``start + i / fps`` takes the decoded frame nearest to it (see module doc).
    """
    end = float("inf") if duration is None else start + duration
    index, prev = 0, None
    for t, frame in decode_with_times(path):
        while start + index / fps < end:
            target = start + index / fps
            if t < target:
                break  # this frame is still before the target: keep decoding
            if prev is None or target < prev[0]:
                pick = frame
            else:
                pick = prev[1] if (target - prev[0]) <= (t - target) else frame
            yield pick
            index += 1
        prev = (t, frame)
    # Targets after the last decoded frame's time, within one frame period of it, use that frame.
    if prev is not None:
        while start + index / fps < end and start + index / fps - prev[0] < 1.0 / fps:
            yield prev[1]
            index += 1
