#!/usr/bin/env python
"""Turn your own videos plus a simple box file into an AVA-format dataset.

    python data_prep/videos_to_ava.py --videos my_videos/ --annotations boxes.csv --out datasets/mine \\
        [--boxes pixels|normalized] [--fps 30] [--val-videos a,b | --val-fraction 0.2] [--workers 2]

The box file is a CSV with a header and one row per person box per keyframe::

    video,time,x1,y1,x2,y2,action[,person]
    kitchen01,3,120,40,260,400,stir
    kitchen01,3,120,40,260,400,talk      <- a second action of the same person: one more row

``video`` is the file name without extension of a video in ``--videos``; ``time`` a whole
second from the start of the video (the keyframe); the box in pixels of the video (or in
[0, 1] with ``--boxes normalized``), (0, 0) the top-left corner; ``action`` a class name;
``person`` an optional track id. Output (``--out``), laid out so that the AVA configs train
on it with only the two paths changed (``AVA.FRAME_DIR OUT/frames AVA.ANNOTATION_DIR
OUT/annotations``; it keeps AVA's file names):

* ``frames/<video>/<video>_%06d.jpg``: the whole video at ``--fps`` (AVA: 30).
* ``annotations/ava_{train,val}_v2.2.csv``: AVA rows; a keyframe at ``time`` t becomes AVA
  second ``900 + t`` so that AVA's rule "keyframe index = (second - 900) * fps" holds.
* ``annotations/ava_action_list_v2.2_for_activitynet_2019.pbtxt``: ids 1.. in sorted name order.
* ``annotations/ava_val_predicted_boxes.csv``: the val ground-truth boxes with score 1.0.
  These are NOT detections: evaluating on ground-truth boxes inflates frame-mAP. Replace
  the file with a person detector's boxes (AVA detection CSV) for honest numbers.
* ``annotations/ava_val_excluded_timestamps_v2.2.csv`` (empty) and ``frame_lists/{train,val}.csv``.

A video that cannot be decoded is reported, and it and its rows are left out; a malformed
box file stops with ``<file>:<line>: <what was expected>`` before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass

import numpy as np

from stal.cli import extract_frames
from stal.cli.extract_frames import VIDEO_EXTENSIONS, frame_name
from stal.data.ava import video_frame_files
from stal.errors import DataError, StalError
from stal.formats.ava import AvaTable, write_ava_csv, write_frame_list, write_labelmap
from stal.io.atomic import atomic_write_text
from stal.io.video import probe_video

AVA_START = 900  # AVA second of video time 0
FILES = {
    "train": "ava_train_v2.2.csv", "val": "ava_val_v2.2.csv", "boxes": "ava_val_predicted_boxes.csv",
    "excluded": "ava_val_excluded_timestamps_v2.2.csv", "labelmap": "ava_action_list_v2.2_for_activitynet_2019.pbtxt",
}
HEADER = ["video", "time", "x1", "y1", "x2", "y2", "action"]


@dataclass
class BoxRow:
    """One row of the box file; the box as given (pixels or normalized)."""

    line: int
    video: str
    time: int
    box: tuple[float, float, float, float]
    action: str
    person: int


def read_box_file(path: str) -> list[BoxRow]:
    """Parse the simple box CSV; raises DataError ``<file>:<line>: ...`` on a bad row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the box file ({exc.strerror})") from None
    if not rows or [c.strip() for c in rows[0][:7]] != HEADER:
        raise DataError(f"{path}:1: expected the header {','.join(HEADER)}[,person]")
    out = []
    for lineno, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        out.append(_parse_box_row(path, lineno, [c.strip() for c in row]))
    if not out:
        raise DataError(f"{path}: no box rows after the header")
    return out


def _parse_box_row(path: str, lineno: int, row: list[str]) -> BoxRow:
    if len(row) not in (7, 8):
        raise DataError(f"{path}:{lineno}: expected 7 or 8 columns ({','.join(HEADER)}[,person]), got {len(row)}")
    try:
        time = float(row[1])
        box = tuple(float(v) for v in row[2:6])
        person = int(row[7]) if len(row) == 8 and row[7] else -1
    except ValueError:
        raise DataError(f"{path}:{lineno}: time, x1, y1, x2, y2 must be numbers and person an integer: {row}") from None
    if time != int(time) or time < 0:
        raise DataError(f"{path}:{lineno}: time {row[1]} must be a whole second >= 0 (keyframes are whole seconds)")
    if not (box[0] < box[2] and box[1] < box[3]) or min(box) < 0:
        raise DataError(f"{path}:{lineno}: box {row[2:6]} must have 0 <= x1 < x2 and 0 <= y1 < y2")
    if not row[0] or not row[6]:
        raise DataError(f"{path}:{lineno}: video and action must not be empty")
    return BoxRow(lineno, row[0], int(time), box, row[6], person)


def normalize_rows(rows: list[BoxRow], *, sizes: dict[str, tuple[int, int]], pixels: bool,
                   durations: dict[str, float], source: str) -> np.ndarray:
    """(N, 4) float boxes in [0, 1]; a box outside its frame or a time past the end is an error."""
    out = np.zeros((len(rows), 4), np.float64)
    for i, r in enumerate(rows):
        w, h = sizes[r.video]
        box = np.asarray(r.box) / (np.array([w, h, w, h]) if pixels else 1.0)
        if box.max() > 1.0 + 1e-6:
            frame = f"{w}x{h} pixels" if pixels else "[0, 1]"
            raise DataError(f"{source}:{r.line}: box {list(r.box)} is outside the frame ({frame})")
        # A keyframe at t shows the frame at t s, which a video of exactly t s no longer has.
        if durations[r.video] and r.time >= durations[r.video]:
            raise DataError(f"{source}:{r.line}: time {r.time} s is at or after the end of {r.video} "
                            f"({durations[r.video]:.1f} s; the last keyframe must come before it)")
        out[i] = np.clip(box, 0.0, 1.0)
    return out


def choose_val(videos: list[str], *, val_videos: list[str] | None, val_fraction: float) -> set[str]:
    """Validation videos: the named ones, else every k-th of the sorted list (at least one of two)."""
    if val_videos:
        unknown = sorted(set(val_videos) - set(videos))
        if unknown:
            raise DataError(f"--val-videos names {unknown}, which have no boxes")
        return set(val_videos)
    n_val = int(round(len(videos) * val_fraction))
    if val_fraction > 0 and len(videos) >= 2:
        n_val = max(1, n_val)
    ordered = sorted(videos)
    step = len(ordered) / n_val if n_val else 0
    return {ordered[int(i * step)] for i in range(n_val)}


def find_videos(folder: str, names: set[str]) -> dict[str, str]:
    """{video name: path} for the names in the box file; a name without a file is an error."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: video folder not found")
    found = {}
    for n in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(n)
        if ext.lower() in VIDEO_EXTENSIONS and stem in names:
            found[stem] = os.path.join(folder, n)
    missing = sorted(names - set(found))
    if missing:
        raise DataError(f"{folder}: no video file for {missing} (expected <name>{VIDEO_EXTENSIONS[0]} etc.)")
    return found


def convert(*, videos_dir: str, box_file: str, out: str, pixels: bool = True, fps: float = 30.0,
            val_videos: list[str] | None = None, val_fraction: float = 0.2, workers: int = 1) -> list[str]:
    """Build the dataset; returns messages about the videos left out (see the module doc)."""

    rows = read_box_file(box_file)
    paths = find_videos(videos_dir, {r.video for r in rows})
    infos = {v: probe_video(p) for v, p in paths.items()}
    boxes = normalize_rows(rows, sizes={v: (i.width, i.height) for v, i in infos.items()}, pixels=pixels,
                           durations={v: i.duration for v, i in infos.items()}, source=box_file)
    val = choose_val(sorted(paths), val_videos=val_videos, val_fraction=val_fraction)
    results = extract_frames.extract_all([paths[v] for v in sorted(paths)], os.path.join(out, "frames"),
                                         fps=fps, start=0.0, duration=None, workers=workers)
    skipped = [f"{r.video_id}: {r.message}" for r in results if r.status == "failed"]
    ok = {r.video_id for r in results if r.status != "failed"}
    keep = [i for i, r in enumerate(rows) if r.video in ok]
    # Headers can lie (a truncated file, a live recording without a length): check the frames
    # on disk before the annotations make the dataset look usable.
    check_keyframes([rows[i] for i in keep], os.path.join(out, "frames"), fps=fps, source=box_file)
    _write_annotations(os.path.join(out, "annotations"), [rows[i] for i in keep], boxes[keep], val=val)
    _write_frame_lists(out, ok, val)
    return skipped


def check_keyframes(rows: list[BoxRow], frames: str, *, fps: float, source: str) -> None:
    """DataError ``<box file>:<line>: ...`` unless every keyframe's frame was extracted.

    A clip around a keyframe is clamped to the video's frames (stal.data.ava), so what it
    needs is the keyframe's own frame and no gap before it; video_frame_files checks the gaps.
    """
    counts = {v: len(video_frame_files(frames, v)) for v in sorted({r.video for r in rows})}
    missing = [r for r in rows if int(round(r.time * fps)) >= counts[r.video]]
    if missing:
        r, n = missing[0], counts[missing[0].video]
        more = f" ({len(missing) - 1} more keyframes past the end)" if len(missing) > 1 else ""
        raise DataError(f"{source}:{r.line}: keyframe {r.time} s of {r.video} needs frame "
                        f"{os.path.join(frames, r.video, _frame_file(r.video, int(round(r.time * fps))))}, "
                        f"but only {n} frames ({n / fps:.1f} s at {fps:g} fps) were extracted: the video "
                        f"is truncated or shorter than its header says{more}")


def _frame_file(video: str, index0: int) -> str:
    return frame_name(video, index0)


def _write_annotations(folder: str, rows: list[BoxRow], boxes: np.ndarray, *, val: set[str]) -> None:

    os.makedirs(folder, exist_ok=True)
    names = sorted({r.action for r in rows})
    ids = {n: i for i, n in enumerate(names, 1)}
    write_labelmap(os.path.join(folder, FILES["labelmap"]), {i: n for n, i in ids.items()})
    persons = _person_ids(rows)
    for split, in_split in (("train", lambda r: r.video not in val), ("val", lambda r: r.video in val)):
        idx = np.array([i for i, r in enumerate(rows) if in_split(r)], np.int64)
        table = AvaTable(video=np.array([rows[i].video for i in idx], dtype=object),
                         timestamp=np.array([AVA_START + rows[i].time for i in idx], np.int64),
                         boxes=boxes[idx].astype(np.float32).reshape(-1, 4),
                         action=np.array([ids[rows[i].action] for i in idx], np.int64),
                         extra=np.array([persons[i] for i in idx], np.float32))
        write_ava_csv(os.path.join(folder, FILES[split]), table)
        if split == "val":
            table.action[:] = -1
            table.extra[:] = 1.0
            write_ava_csv(os.path.join(folder, FILES["boxes"]), _unique_boxes(table), score=True)
    atomic_write_text(os.path.join(folder, FILES["excluded"]), "")


def _person_ids(rows: list[BoxRow]) -> list[int]:
    """The given person ids; missing ones numbered by distinct box within the keyframe."""
    out, seen = [], {}
    for r in rows:
        key = (r.video, r.time)
        boxes = seen.setdefault(key, [])
        if r.box not in boxes:
            boxes.append(r.box)
        out.append(r.person if r.person >= 0 else boxes.index(r.box))
    return out


def _unique_boxes(table):
    """One row per distinct (keyframe, box): a detection CSV lists a person once."""
    keys = [(v, t, tuple(np.round(b, 4))) for v, t, b in zip(table.video, table.timestamp, table.boxes)]
    first = list(dict.fromkeys(keys))
    index = np.array([keys.index(k) for k in first], np.int64)
    return table.take(index)


def _write_frame_lists(out: str, videos: set[str], val: set[str]) -> None:

    frames = os.path.join(out, "frames")
    os.makedirs(os.path.join(out, "frame_lists"), exist_ok=True)
    for split, names in (("train", sorted(videos - val)), ("val", sorted(videos & val))):
        write_frame_list(os.path.join(out, "frame_lists", f"{split}.csv"),
                         [(v, video_frame_files(frames, v)) for v in names])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="folder of your videos")
    p.add_argument("--annotations", required=True, help="box CSV: video,time,x1,y1,x2,y2,action[,person]")
    p.add_argument("--out", required=True, help="dataset root to create")
    p.add_argument("--boxes", choices=("pixels", "normalized"), default="pixels", help="units of x1..y2")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the extracted frames (AVA.FPS)")
    p.add_argument("--val-videos", default="", help="comma-separated videos for validation")
    p.add_argument("--val-fraction", type=float, default=0.2, help="else this fraction of the videos")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="videos decoded in parallel")
    args = p.parse_args(argv)
    try:
        skipped = convert(videos_dir=args.videos, box_file=args.annotations, out=args.out,
                          pixels=args.boxes == "pixels", fps=args.fps,
                          val_videos=[v for v in args.val_videos.split(",") if v], val_fraction=args.val_fraction,
                          workers=args.workers)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in skipped:
        print(f"skipped {message}", file=sys.stderr)
    print(f"wrote {args.out}/frames, annotations/ and frame_lists/; train with\n"
          f"  python tools/train_net.py --cfg configs/ava_guided.yaml AVA.FRAME_DIR {args.out}/frames "
          f"AVA.ANNOTATION_DIR {args.out}/annotations\n"
          f"note: {FILES['boxes']} holds the ground-truth boxes; use a person detector's boxes for honest val mAP")
    return 2 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
