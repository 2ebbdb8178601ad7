#!/usr/bin/env python
"""Clip loading speed: extracted JPEG frames vs decord vs PyAV reading straight from the video.

    python tools/bench_decode.py [--video PATH] [--clips 30] [--frames 8] [--rate 8] [--seed 0]

Without ``--video`` it encodes a synthetic 60 s, 30 fps, 340x256 H.264 video (moving
gradients plus noise, the encoder's default key-frame interval) into a temporary folder.
It extracts all frames once with data_prep/extract_frames.py (JPEG quality 95), then reads
the same random clips (T = ``--frames`` frames, every ``--rate``-th frame, AVA's 8x8 by
default) three ways, each clip from scratch as a data-loader worker would:

* jpeg:   PIL-decode the T frame files (stal.io.images.read_frame_files)
* decord: open a VideoReader and get_batch the T indices (read_clip_decord)
* decord (reader kept open): the same with one VideoReader for all clips
* pyav:   open, seek to the key frame before the clip, decode forward (read_clip_pyav)

and prints one markdown table: ms per clip, clips per second, time relative to jpeg, and
the bytes on disk of each form. Single process; timings include opening the files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data_prep"))


def make_video(path: str, *, seconds: int = 60, fps: int = 30, size: tuple[int, int] = (340, 256)) -> None:
    """Encode a synthetic H.264 video (mpeg4 when libx264 is missing)."""
    import av

    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    with av.open(path, "w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except Exception:  # PyAV builds without libx264
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(seconds * fps):
            base = 127 + 100 * np.sin((xx + 3 * k) / 40.0)[..., None] * np.cos((yy - 2 * k) / 55.0)[..., None]
            img = np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def time_clips(read, starts: list[int]) -> float:
    """Seconds per clip of ``read(start)`` over ``starts`` (after one warm-up read)."""
    read(starts[0])
    t0 = time.perf_counter()
    for s in starts:
        clip = read(s)
    assert clip.ndim == 4
    return (time.perf_counter() - t0) / len(starts)


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", help="a video to read (default: a synthetic one)")
    p.add_argument("--clips", type=int, default=30, help="random clips read per method")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (T)")
    p.add_argument("--rate", type=int, default=8, help="take every rate-th frame")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from stal.cli import extract_frames

    from stal.io.images import read_frame_files
    from stal.io.video import probe_video, read_clip_decord, read_clip_pyav

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or os.path.join(tmp, "bench.mp4")
        if not args.video:
            make_video(video)
        info = probe_video(video)
        [result] = extract_frames.extract_all([video], tmp, fps=info.fps, start=0.0, duration=None)
        n, vid = result.frames, result.video_id
        span = (args.frames - 1) * args.rate + 1
        starts = np.random.default_rng(args.seed).integers(0, n - span, args.clips).tolist()
        offsets = np.arange(args.frames) * args.rate
        frame_dir = os.path.join(tmp, vid)
        readers = {
            "jpeg": lambda s: read_frame_files([os.path.join(frame_dir, extract_frames.frame_name(vid, i))
                                                for i in s + offsets]),
            "pyav": lambda s: read_clip_pyav(video, start=s / info.fps, num_frames=args.frames, stride=args.rate),
        }
        try:  # decord has wheels for x86_64 only
            import decord

            kept = decord.VideoReader(video, num_threads=1)  # as a worker that caches its readers
            readers["decord"] = lambda s: read_clip_decord(video, indices=(s + offsets).tolist())
            readers["decord (reader kept open)"] = lambda s: kept.get_batch((s + offsets).tolist()).asnumpy()
        except ImportError:
            print("decord is not installed: its rows are left out")
        sizes = {"jpeg": folder_bytes(frame_dir) - os.path.getsize(os.path.join(frame_dir, "COMPLETE")),
                 "decord": os.path.getsize(video), "decord (reader kept open)": os.path.getsize(video),
                 "pyav": os.path.getsize(video)}
        times = {name: time_clips(read, starts) for name, read in readers.items()}
    print(f"video: {info.width}x{info.height}, {info.fps:g} fps, {n} frames; {args.clips} clips of "
          f"{args.frames} frames every {args.rate}-th; 1 process")
    print("| source | ms / clip | clips / s | time vs jpeg | MB on disk |")
    print("|---|---:|---:|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t * 1e3:.1f} | {1 / t:.1f} | {t / times['jpeg']:.2f}x | {sizes[name] / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
