#!/usr/bin/env python
"""Extract JPEG frames at a fixed rate from videos, in the AVA / PySlowFast layout.

    python data_prep/extract_frames.py --videos DIR --out FRAME_DIR [--fps 30] [--start 900] [--duration 901]

writes FRAME_DIR/<video_id>/<video_id>_%06d.jpg (numbered from 1), decoding with PyAV, so no
ffmpeg binary is needed. The defaults are AVA's (30 fps over seconds 900-1801). A video whose
folder already holds a COMPLETE marker is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.errors import StalError  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def extract_video(path: str, out_root: str, *, fps: float, start: float, duration: float | None,
                  quality: int) -> int:
    """Write one video's frames into ``out_root/<video_id>/``; returns the number written."""
    from PIL import Image

    from stal.data.video_io import frames_at_fps

    video_id = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.join(out_root, video_id)
    marker = os.path.join(folder, "COMPLETE")
    if os.path.exists(marker):
        return sum(1 for n in os.listdir(folder) if n.endswith(".jpg"))
    os.makedirs(folder, exist_ok=True)
    count = 0
    for count, frame in enumerate(frames_at_fps(path, fps=fps, start=start, duration=duration), 1):
        Image.fromarray(frame).save(os.path.join(folder, f"{video_id}_{count:06d}.jpg"), quality=quality)
    if count == 0:
        raise StalError(f"{path}: no frames in [{start}, {start + (duration or 0)}) s")
    with open(marker, "w") as f:
        f.write(f"{count}\n")
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="folder of videos (or one video file)")
    p.add_argument("--out", required=True, help="frame root, e.g. datasets/ava/frames")
    p.add_argument("--fps", type=float, default=30.0, help="output frame rate (AVA: 30)")
    p.add_argument("--start", type=float, default=900.0, help="first second to extract (AVA: 900)")
    p.add_argument("--duration", type=float, default=901.0, help="seconds to extract; <= 0: to the end (AVA: 901)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    args = p.parse_args(argv)
    from tqdm import tqdm

    if os.path.isfile(args.videos):
        videos = [args.videos]
    elif os.path.isdir(args.videos):
        videos = sorted(os.path.join(args.videos, n) for n in os.listdir(args.videos)
                        if n.lower().endswith(VIDEO_EXTENSIONS))
    else:
        print(f"error: {args.videos} is neither a video file nor a folder", file=sys.stderr)
        return 2
    failures = []
    for path in tqdm(videos, desc="videos", disable=None):
        try:
            n = extract_video(path, args.out, fps=args.fps, start=args.start,
                              duration=args.duration if args.duration > 0 else None, quality=args.quality)
            print(f"{os.path.basename(path)}: {n} frames")
        except StalError as exc:
            failures.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    print(f"{len(videos) - len(failures)} of {len(videos)} videos extracted into {args.out}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
