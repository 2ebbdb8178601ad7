#!/usr/bin/env python
"""Write PySlowFast frame lists (``frame_lists/train.csv``, ``val.csv``) for extracted AVA frames.

    python data_prep/ava_frame_lists.py --frames datasets/ava/frames \\
        --annotations datasets/ava/annotations --out datasets/ava/frame_lists \\
        [--split train=ava_train_v2.2.csv --split val=ava_val_v2.2.csv]

Each split lists the videos of its annotation CSV (in first-seen order), with every frame
of each video: ``original_vido_id video_id frame_id path labels``. A video without frames,
or with a gap in its numbering, is reported and left out; the others are written.
Exit status 2 when any video was left out.
"""

from __future__ import annotations

import argparse
import os
import sys

from stal.data.ava import video_frame_files
from stal.errors import StalError
from stal.formats.ava import read_ava_csv, write_frame_list

DEFAULT_SPLITS = ("train=ava_train_v2.2.csv", "val=ava_val_v2.2.csv")


def split_videos(csv_path: str) -> list[str]:
    """Video ids of an AVA CSV in first-seen order."""
    return list(dict.fromkeys(read_ava_csv(csv_path).video.tolist()))


def write_split(*, frame_dir: str, csv_path: str, out_path: str) -> tuple[int, list[str]]:
    """Write one frame list; returns (videos written, messages about the videos left out)."""

    rows, skipped = [], []
    for video in split_videos(csv_path):
        try:
            rows.append((video, video_frame_files(frame_dir, video)))
        except StalError as exc:
            skipped.append(f"{video}: {exc}")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    write_frame_list(out_path, rows)
    return len(rows), skipped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", required=True, help="frame root (frames/<video>/<video>_%%06d.jpg)")
    p.add_argument("--annotations", required=True, help="folder of the annotation CSVs")
    p.add_argument("--out", required=True, help="output folder, e.g. datasets/ava/frame_lists")
    p.add_argument("--split", action="append", help="NAME=CSV (repeatable); default: " + " ".join(DEFAULT_SPLITS))
    args = p.parse_args(argv)
    failed = False
    for spec in args.split or DEFAULT_SPLITS:
        name, _, csv_name = spec.partition("=")
        try:
            n, skipped = write_split(frame_dir=args.frames, csv_path=os.path.join(args.annotations, csv_name),
                                     out_path=os.path.join(args.out, f"{name}.csv"))
        except StalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{name}: {n} videos -> {os.path.join(args.out, name + '.csv')}, {len(skipped)} left out")
        for message in skipped:
            print(f"skipped {message}", file=sys.stderr)
        failed |= bool(skipped)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
