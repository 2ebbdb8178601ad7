"""Video decoding with PyAV (no ffmpeg binary needed) and frame extraction at a fixed rate.

Two ways to get clips: extract JPEG frames once (:func:`frames_at_fps`, used by
``data_prep/extract_frames.py``) and read them with :func:`stal.io.images.read_frame_files`, or read clips
straight from the videos with :func:`read_clip_pyav` / :func:`read_clip_decord`
(``tools/bench_decode.py`` measures the three). Frames are uint8 (H, W, 3) RGB.

Frame selection follows ffmpeg's ``fps`` filter with its default rounding ("near"): output
frame i (0-based) shows the decoded frame whose presentation time is nearest to
``start + i / fps``; ties go to the earlier frame. Output frames are written as
``<out_dir>/<video_id>_%06d.jpg`` numbered from 1, as ``ffmpeg -r FPS out_%06d.jpg`` does
(frame index i is file i+1).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from stal.errors import DataError
from stal.io.atomic import atomic_open

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def decode_with_times(path: str, *, seek: float = 0.0) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (presentation time in seconds, uint8 (H, W, 3) RGB frame) for each decoded frame.

    ``seek`` > 0 starts at the key frame at or before that time (seconds) instead of the
    first frame, so frames from a little before ``seek`` on are yielded, not from 0.
    """
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
            if seek > 0 and stream.time_base is not None:
                container.seek(int(seek / stream.time_base), stream=stream, backward=True)
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
    # Seek a second early: the frame just before ``start`` can be the nearest to it.
    for t, frame in decode_with_times(path, seek=max(0.0, start - 1.0)):
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
        # (1e-9: 60.0 - 59.9667 must not count as inside one period of 1/30 by rounding.)
        while start + index / fps < end and start + index / fps - prev[0] < 1.0 / fps - 1e-9:
            yield prev[1]
            index += 1


# ----------------------------------------------------------------------------------------
# Probing and clip reading (the "no extraction" path: clips straight from the video)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video (not verified by decoding).

    ``duration`` in seconds (0.0 when the header has none), ``fps`` the average frame
    rate, ``num_frames`` the header's count (0 when unknown), ``width`` / ``height`` pixels.
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int


def allowed_shortfall(expected: int) -> int:
    """Frames a complete decode may come up short of the header's ``expected``: 2, or 1 % when more.

    Header lengths are rounded (Matroska: to the millisecond) and may or may not count the
    last frame's period; a truncated file (a cut download, a full disk) loses far more.
    """
    return max(2, int(math.ceil(0.01 * expected)))


def write_video(path: str, frames: Iterable[np.ndarray], *, fps: float, codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict[str, str] | None = None,
                container_format: str | None = None) -> None:
    """Encode uint8 (H, W, 3) RGB frames with PyAV, atomically (a failed encode leaves no file).

    The frame size is the first frame's, cropped to even height and width for yuv420p; the
    container follows ``path``'s extension unless ``container_format`` is given.
    """
    import av

    fmt = container_format or {".mkv": "matroska", ".webm": "webm", ".avi": "avi"}.get(
        os.path.splitext(path)[1].lower(), "mp4")
    with atomic_open(path, "wb") as f, av.open(f, "w", format=fmt) as container:
        stream = None
        for frame in frames:
            if stream is None:
                even = 2 if pix_fmt == "yuv420p" else 1
                height, width = frame.shape[0] // even * even, frame.shape[1] // even * even
                stream = container.add_stream(codec, rate=int(round(fps)))
                stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                stream.options = dict(options or {})
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        if stream is None:
            raise DataError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)


def probe_video(path: str) -> VideoInfo:
    """Read the header of ``path``; raises DataError naming the file when it cannot be opened."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path} has no video stream")
        stream = container.streams.video[0]
        duration = _stream_duration(stream)
        if duration is None:
            # The container's length spans every stream: an audio track may run a little longer.
            duration = container.duration / 1_000_000 if container.duration is not None else 0.0  # microseconds
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        return VideoInfo(duration=duration, fps=fps, num_frames=int(stream.frames or 0),
                         width=stream.codec_context.width, height=stream.codec_context.height)


def _stream_duration(stream) -> float | None:
    """Seconds of the video stream itself, or None when the header does not say.

    MP4 / AVI store it per stream; Matroska / WebM only as the stream's ``DURATION`` tag
    (``HH:MM:SS.fraction``, written by ffmpeg and mkvmerge).
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    try:
        hours, minutes, seconds = stream.metadata.get("DURATION", "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:  # no tag, or not HH:MM:SS.fraction
        return None


def read_clip_pyav(path: str, *, start: float, num_frames: int, stride: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB: every ``stride``-th decoded frame from time ``start`` (seconds).

    Seeks to the key frame before ``start`` and decodes forward, so the cost is about one
    GOP plus the clip. Raises DataError when the video ends before T frames.
    """
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from None
    frames: list[np.ndarray] = []
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        half_period = 0.5 / float(stream.average_rate or 30)
        taken = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None or float(frame.pts * frame.time_base) < start - half_period:
                    continue
                if taken % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == num_frames:
                        break
                taken += 1
        except av.error.FFmpegError as exc:
            raise DataError(f"{path}: decoding failed ({exc})") from None
    if len(frames) < num_frames:
        raise DataError(f"{path}: {len(frames)} frames from {start:.3f} s at stride {stride}; expected {num_frames}")
    return np.stack(frames)


def read_clip_decord(path: str, *, indices: Sequence[int]) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames ``indices`` (0-based decoded frame numbers) with decord."""
    import decord

    try:
        reader = decord.VideoReader(path, num_threads=1)
    except (RuntimeError, decord.DECORDError) as exc:
        raise DataError(f"cannot open video {path} with decord: {exc}") from None
    if max(indices) >= len(reader):
        raise DataError(f"{path}: frame {max(indices)} requested; the video has {len(reader)}")
    return reader.get_batch(list(indices)).asnumpy()


def video_num_frames(path: str) -> int:
    """Number of decodable frames of a video (decoding it once with PyAV)."""
    return sum(1 for _ in decode_with_times(path))


def read_video_frames(path: str, indices: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """uint8 (len(indices), H, W, 3) frames at sorted 0-based ``indices`` (decoded order).

    backend: "decord" (random access), "pyav" (decodes from the start up to the last
    index) or "auto" (decord when importable). Unreadable or too short videos raise
    DataError naming the file.
    """
    if not os.path.isfile(path):
        raise DataError(f"video not found: {path}")
    if backend in ("auto", "decord"):
        try:
            import decord
        except ImportError:
            if backend == "decord":
                raise DataError("decord is not installed (pip install decord==0.6.0, x86_64 only)") from None
        else:
            try:
                reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
                if int(indices.max()) >= len(reader):
                    raise DataError(f"{path}: has {len(reader)} frames, frame {int(indices.max())} was asked for")
                return reader.get_batch([int(i) for i in indices]).asnumpy()
            except DataError:
                raise
            except Exception as exc:  # decord raises its own DECORDError / RuntimeError types
                raise DataError(f"cannot decode video {path}: {exc}") from None
    wanted, out, i = set(int(i) for i in indices), {}, -1
    for i, (_, frame) in enumerate(decode_with_times(path)):
        if i in wanted:
            out[i] = frame
        if i >= int(indices.max()):
            break
    if len(out) < len(wanted):
        raise DataError(f"{path}: has {i + 1} decodable frames, "
                        f"frame {int(indices.max())} was asked for")
    return np.stack([out[int(i)] for i in indices])
