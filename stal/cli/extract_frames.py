#!/usr/bin/env python
"""Extract JPEG frames at a fixed rate from videos, in the AVA / PySlowFast layout.

    python data_prep/extract_frames.py --videos DIR --out FRAME_DIR [--fps 30] [--start 900] \\
        [--duration 901] [--workers 2]

writes ``FRAME_DIR/<video_id>/<video_id>_%06d.jpg`` (numbered from 1; frame index i is file
i+1), decoding with PyAV, so no ffmpeg binary is needed. The defaults are AVA's: 30 fps over
seconds [900, 1801), i.e. ``ffmpeg -ss 900 -t 901 -r 30``: 27030 frames, and the keyframe of
second s is frame index ``(s - 900) * 30``. For other videos use ``--start 0 --duration 0``
(whole video). Frame i shows the decoded frame nearest to ``start + i / fps`` (ffmpeg's fps
filter; see stal.io.video).

Resumable: a finished video gets a ``COMPLETE`` marker (JSON: frames, fps, start, duration).
A rerun skips a video whose marker matches the arguments and whose folder holds exactly
that many frames; anything else (no marker, other arguments, missing or extra frames) is
extracted again from scratch. A video is complete when its frames cover the window as far as
its header says the video goes (at most 2 frames or 1 % short: a truncated file, whose header
still gives the full length, fails). Videos run in parallel (``--workers``); a video that fails
(unreadable, truncated, shorter than start + duration) is reported and the others go on.
Exit status: 0 when every video is complete, 2 when any failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from stal.errors import DataError, StalError
from stal.io.atomic import atomic_write_text
from stal.io.video import VIDEO_EXTENSIONS, allowed_shortfall, frames_at_fps, probe_video
from stal.progress import Progress

MARKER = "COMPLETE"


@dataclass
class VideoResult:
    """Outcome of one video: status "extracted", "complete" (skipped, verified) or "failed"."""

    video_id: str
    status: str
    frames: int = 0
    message: str = ""


def expected_frames(*, fps: float, duration: float | None) -> int | None:
    """Frames at times ``start + i / fps`` inside [start, start + duration); None: whole video."""
    if duration is None:
        return None
    return int(math.ceil(duration * fps - 1e-9))


def frame_name(video_id: str, index0: int) -> str:
    """File name of 0-based frame ``index0`` (files are numbered from 1, as ffmpeg does)."""
    return f"{video_id}_{index0 + 1:06d}.jpg"


def _params(fps: float, start: float, duration: float | None) -> dict:
    return {"fps": fps, "start": start, "duration": duration}


def verified_count(folder: str, *, fps: float, start: float, duration: float | None) -> int | None:
    """Frame count of a finished folder whose marker matches the arguments and the files; else None."""
    try:
        with open(os.path.join(folder, MARKER)) as f:
            marker = json.load(f)
        names = [n for n in os.listdir(folder) if n.endswith(".jpg")]
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or {k: marker.get(k) for k in ("fps", "start", "duration")} != _params(fps, start, duration):
        return None
    return marker.get("frames") if marker.get("frames") == len(names) else None


def _clear(folder: str) -> None:
    """Remove the marker and old frames, so a re-extraction leaves no stale files behind."""
    for name in os.listdir(folder):
        if name == MARKER or name.endswith(".jpg"):
            os.unlink(os.path.join(folder, name))


def _check_length(path: str, *, fps: float, start: float, duration: float | None) -> float:
    """Fail fast on a video whose header says it ends more than a second before start + duration;
    returns the header's length in seconds (0.0: the header does not say)."""
    info = probe_video(path)
    if duration is not None and 0 < info.duration < start + duration - 1.0:
        raise DataError(
            f"{path}: the video is {info.duration:.1f} s long; frames [{start:g}, {start + duration:g}) s "
            f"need at least {start + duration - 1.0:g} s (an AVA video is the 15-minute segment 900-1800 s "
            f"of its movie; for other videos use --start 0 --duration 0)")
    return info.duration


def frames_in_video(*, fps: float, start: float, duration: float | None, video_length: float) -> int:
    """Frames of the window [start, start + duration) (None: to the end) that a video of
    ``video_length`` seconds (its header's length) holds."""
    end = video_length if duration is None else min(start + duration, video_length)
    return max(0, int(math.ceil((end - start) * fps - 1e-9)))


def _check_count(path: str, count: int, *, fps: float, start: float, duration: float | None,
                 video_length: float) -> None:
    """DataError unless the frames written cover the window as far as the header says the video goes."""
    if video_length > 0:
        expected = frames_in_video(fps=fps, start=start, duration=duration, video_length=video_length)
        short = count < expected - allowed_shortfall(expected)
        said = f"the header says the video is {video_length:.2f} s long"
    else:
        # No length in the header: only the requested window bounds the count. Up to one second
        # short at the end is accepted, as ffmpeg's -t past the end just stops.
        expected = expected_frames(fps=fps, duration=duration)
        short = expected is not None and count < expected - round(fps)
        said = "the header has no length"
    if count == 0 or short:
        raise DataError(f"{path}: decoded {count} of {expected or 'any'} frames from {start:g} s at {fps:g} fps "
                        f"({said}); the video is truncated or shorter than its header says")


def extract_video(path: str, out_root: str, *, fps: float, start: float, duration: float | None,
                  quality: int = 95) -> VideoResult:
    """Write one video's frames into ``out_root/<video_id>/``; errors become a "failed" result."""
    video_id = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.join(out_root, video_id)
    count = verified_count(folder, fps=fps, start=start, duration=duration) if os.path.isdir(folder) else None
    if count is not None:
        return VideoResult(video_id, "complete", count)
    try:
        count = _extract(path, folder, video_id, fps=fps, start=start, duration=duration, quality=quality)
    except StalError as exc:
        return VideoResult(video_id, "failed", 0, str(exc))
    return VideoResult(video_id, "extracted", count)


def _extract(path: str, folder: str, video_id: str, *, fps: float, start: float,
             duration: float | None, quality: int) -> int:
    from PIL import Image

    video_length = _check_length(path, fps=fps, start=start, duration=duration)
    os.makedirs(folder, exist_ok=True)
    _clear(folder)
    count = 0
    for count, frame in enumerate(frames_at_fps(path, fps=fps, start=start, duration=duration), 1):
        Image.fromarray(frame).save(os.path.join(folder, frame_name(video_id, count - 1)), quality=quality)
    # Before the marker: a short folder must never pass as complete (a rerun extracts it again).
    _check_count(path, count, fps=fps, start=start, duration=duration, video_length=video_length)
    marker = dict(_params(fps, start, duration), frames=count)

    atomic_write_text(os.path.join(folder, MARKER), json.dumps(marker) + "\n")
    return count


def list_videos(source: str) -> list[str]:
    """One video file, or the video files directly inside a folder (sorted)."""
    if os.path.isfile(source):
        return [source]
    if os.path.isdir(source):
        return sorted(os.path.join(source, n) for n in os.listdir(source) if n.lower().endswith(VIDEO_EXTENSIONS))
    raise DataError(f"{source} is neither a video file nor a folder")


def extract_all(videos: list[str], out_root: str, *, fps: float, start: float, duration: float | None,
                quality: int = 95, workers: int = 1) -> list[VideoResult]:
    """Extract every video (in ``workers`` processes); results in the order of ``videos``."""
    kwargs = dict(fps=fps, start=start, duration=duration, quality=quality)
    os.makedirs(out_root, exist_ok=True)
    bar = Progress(total=len(videos), desc="videos", unit="video")
    results: dict[str, VideoResult] = {}
    if workers <= 1:
        for path in videos:
            results[path] = extract_video(path, out_root, **kwargs)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(extract_video, path, out_root, **kwargs): path for path in videos}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    return [results[p] for p in videos]


def format_report(results: list[VideoResult], *, expected: int | None) -> str:
    """Table of frames per video, then the failures with their reasons, then a summary line."""
    lines = [f"{'video':<32} {'frames':>8}  status"]
    for r in results:
        short = "" if expected is None or r.status == "failed" or r.frames >= expected else f" (short by {expected - r.frames})"
        lines.append(f"{r.video_id:<32} {r.frames:>8}  {r.status}{short}")
    failed = [r for r in results if r.status == "failed"]
    lines += [f"skipped {r.video_id}: {r.message}" for r in failed]
    done = {s: sum(r.status == s for r in results) for s in ("extracted", "complete")}
    lines.append(f"{len(results) - len(failed)} of {len(results)} videos ready ({done['extracted']} extracted, "
                 f"{done['complete']} already complete), {len(failed)} failed; "
                 f"{sum(r.frames for r in results)} frames" + (f", {expected} expected per video" if expected else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="folder of videos (or one video file)")
    p.add_argument("--out", required=True, help="frame root, e.g. datasets/ava/frames")
    p.add_argument("--fps", type=float, default=30.0, help="output frame rate (AVA: 30)")
    p.add_argument("--start", type=float, default=900.0, help="first second to extract (AVA: 900)")
    p.add_argument("--duration", type=float, default=901.0, help="seconds to extract; <= 0: to the end (AVA: 901)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (1-95)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="videos extracted in parallel")
    args = p.parse_args(argv)
    duration = args.duration if args.duration > 0 else None
    try:
        videos = list_videos(args.videos)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = extract_all(videos, args.out, fps=args.fps, start=args.start, duration=duration,
                          quality=args.quality, workers=args.workers)
    print(format_report(results, expected=expected_frames(fps=args.fps, duration=duration)))
    for r in results:
        if r.status == "failed":
            print(f"error: {r.message}", file=sys.stderr)
    return 2 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
