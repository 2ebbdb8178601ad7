#!/usr/bin/env python
"""Validate a prepared AVA / UCF101-24 / JHMDB / CUB directory and print a report with counts.

    python data_prep/check_dataset.py ava   --root datasets/ava    [--fps 30] [--decode keyframes]
    python data_prep/check_dataset.py ucf24 --root datasets/ucf24  [--split 1]
    python data_prep/check_dataset.py jhmdb --root datasets/jhmdb  [--split 1]
    python data_prep/check_dataset.py cub   --root datasets/CUB_200_2011

AVA layout: ``ROOT/frames/<video>/<video>_%06d.jpg``, ``ROOT/annotations/`` with AVA's file
names, optional ``ROOT/frame_lists/{train,val}.csv``. Checked: the label map is readable;
every CSV parses (errors name file:line); action ids are 1..80 (ids outside the label map
but inside 1..80 are a warning: AVA trains on 80 classes and evaluates 60); every video
named in a CSV has frames numbered without gaps; every keyframe has a frame; the keyframe
images decode (``--decode all`` decodes every frame, ``none`` none); frame lists match the
folders. 7-column rows (no person id / score) are a warning: the official readers accept them.
UCF101-24 / JHMDB: the index written by ``*_from_act.py`` against ``rgb-images``. CUB: the
text files, every image decodes, every box lies inside its image.

Exit status: 0 without errors (warnings allowed), 1 with errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from stal.data.act import ACT_FRAME_TEMPLATE, index_paths
from stal.data.ava import video_frame_files
from stal.data.cub import read_cub
from stal.errors import StalError
from stal.formats.ava import read_ava_csv, read_frame_list, read_labelmap

SHOW = 10  # messages printed per kind; the rest are counted


@dataclass
class Report:
    """Counts (name -> number) and messages; errors make the exit status non-zero."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def format(self) -> str:
        lines = [f"{name}: {n}" for name, n in self.counts.items()]
        for kind, messages in (("error", self.errors), ("warning", self.warnings)):
            lines += [f"{kind}: {m}" for m in messages[:SHOW]]
            if len(messages) > SHOW:
                lines.append(f"... {len(messages) - SHOW} more {kind}s")
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)


def _decodes(path: str) -> str | None:
    """Why the image at ``path`` cannot be decoded, or None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable image ({exc})"
    return None


def _seven_column_lines(path: str) -> list[int]:
    with open(path, encoding="utf-8-sig") as f:
        return [i for i, line in enumerate(f, 1) if line.strip() and line.count(",") == 6]


def check_csv(report: Report, path: str, *, labelmap: dict[int, str] | None, required: bool):
    """Parse one AVA CSV into the report; returns the table, or None when unusable."""
    if not os.path.isfile(path):
        (report.errors if required else report.warnings).append(f"{path}: file not found")
        return None
    try:
        table = read_ava_csv(path)
    except StalError as exc:
        report.errors.append(str(exc))
        return None
    name = os.path.basename(path)
    report.count(f"rows in {name}", len(table))
    report.warnings += [f"{path}:{n}: 7 columns (no person id / score); read with 1.0 as the official reader does"
                        for n in _seven_column_lines(path)]
    actions = table.action[table.action >= 0]
    if ((actions < 1) | (actions > 80)).any():
        report.errors.append(f"{path}: action ids {sorted(set(actions[(actions < 1) | (actions > 80)].tolist()))[:5]} "
                             f"outside 1..80")
    if labelmap is not None:
        outside = sorted(set(actions.tolist()) - set(labelmap))
        if outside:
            report.warnings.append(f"{path}: {int(sum((actions == a).sum() for a in outside))} rows with action ids "
                                   f"{outside[:8]} not in the label map (trained on, not evaluated)")
    return table


def check_ava(root: str, *, fps: int, start: int, decode: str, csvs: list[str], labelmap_name: str) -> Report:
    report = Report()
    ann, frames = os.path.join(root, "annotations"), os.path.join(root, "frames")
    labelmap = None
    try:
        labelmap = read_labelmap(os.path.join(ann, labelmap_name))
        report.count("classes in the label map", len(labelmap))
    except StalError as exc:
        report.errors.append(f"label map: {exc}")
    tables = [t for t in (check_csv(report, os.path.join(ann, n), labelmap=labelmap, required=i == 0)
                          for i, n in enumerate(csvs)) if t is not None]
    keyframes = {(v, int(s)) for t in tables for v, s in zip(t.video.tolist(), t.timestamp.tolist())}
    report.count("keyframes", len(keyframes))
    counts = _check_frame_folders(report, frames, sorted({v for v, _ in keyframes}), decode=decode)
    _check_keyframes(report, frames, keyframes, counts, fps=fps, start=start, decode=decode)
    _check_frame_lists(report, os.path.join(root, "frame_lists"), counts)
    return report


def _check_frame_folders(report: Report, frames: str, videos: list[str], *, decode: str) -> dict[str, int]:
    counts = {}
    for video in videos:
        try:
            files = video_frame_files(frames, video)
        except StalError as exc:
            report.errors.append(str(exc))
            continue
        counts[video] = len(files)
        report.count("frames", len(files))
        if decode == "all":
            report.errors += [m for m in (_decodes(os.path.join(frames, f)) for f in files) if m]
    report.count("videos with frames", len(counts))
    return counts


def _check_keyframes(report: Report, frames: str, keyframes: set, counts: dict[str, int], *,
                     fps: int, start: int, decode: str) -> None:
    for video, second in sorted(keyframes):
        if video not in counts:
            continue  # already reported with its folder
        index = (second - start) * fps
        if not 0 <= index < counts[video]:
            report.errors.append(f"keyframe {video},{second:04d} is frame index {index}; {video} has "
                                 f"{counts[video]} frames (fps {fps}, first second {start})")
            continue
        if decode == "keyframes":
            message = _decodes(os.path.join(frames, video, f"{video}_{index + 1:06d}.jpg"))
            if message:
                report.errors.append(message)


def _check_frame_lists(report: Report, folder: str, counts: dict[str, int]) -> None:
    for name in ("train.csv", "val.csv"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            listed = read_frame_list(path)
        except StalError as exc:
            report.errors.append(str(exc))
            continue
        report.count(f"videos in frame_lists/{name}", len(listed))
        for video, paths in listed.items():
            if video in counts and len(paths) != counts[video]:
                report.errors.append(f"{path}: {video} lists {len(paths)} frames; its folder has {counts[video]}")


def check_act(root: str, *, split: int, tool: str) -> Report:

    report, paths = Report(), index_paths(root, split)
    missing = [paths[k] for k in ("frames", "train", "test", "labelmap") if not os.path.exists(paths[k])]
    if missing:
        report.errors.append(f"{missing[0]} not found; run python {tool} --root {root} --split {split}")
        return report
    try:
        labelmap = read_labelmap(paths["labelmap"])
    except StalError as exc:
        report.errors.append(str(exc))
        return report
    counts: dict[str, int] = {}
    for side in ("train", "test"):
        table = check_csv(report, paths[side], labelmap=labelmap, required=True)
        if table is None:
            continue
        for video, frame in sorted(set(zip(table.video.tolist(), table.timestamp.tolist()))):
            image = os.path.join(paths["frames"], ACT_FRAME_TEMPLATE.format(video=video, number=frame))
            report.count("annotated frames")
            message = _decodes(image) if os.path.isfile(image) else f"{image}: annotated frame missing"
            if message:
                report.errors.append(message)
            counts[video] = 1
    report.count("videos", len(counts))
    return report


def check_cub(root: str) -> Report:
    from PIL import Image

    report = Report()
    try:
        classes, images = read_cub(root)
    except StalError as exc:
        report.errors.append(str(exc))
        return report
    report.count("classes", len(classes))
    report.count("train images", sum(im.is_train for im in images))
    report.count("test images", sum(not im.is_train for im in images))
    for im in images:
        path = os.path.join(root, "images", im.path)
        message = _decodes(path) if os.path.isfile(path) else f"{path}: image missing"
        if message:
            report.errors.append(message)
            continue
        with Image.open(path) as img:
            width, height = img.size
        x, y, w, h = im.box
        if x + w > width + 1 or y + h > height + 1:
            report.errors.append(f"{os.path.join(root, 'bounding_boxes.txt')}: image id {im.image_id} box "
                                 f"{im.box} exceeds the {width}x{height} image")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=("ava", "ucf24", "jhmdb", "cub"))
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--fps", type=int, default=30, help="AVA: frames per second of the extracted frames")
    p.add_argument("--start", type=int, default=900, help="AVA: second of frame index 0")
    p.add_argument("--decode", choices=("none", "keyframes", "all"), default="keyframes", help="AVA: images to decode")
    p.add_argument("--csv", action="append", help="AVA: annotation CSVs to check (first one required); "
                   "default: ava_train_v2.2.csv ava_val_v2.2.csv ava_val_predicted_boxes.csv")
    p.add_argument("--labelmap", default="ava_action_list_v2.2_for_activitynet_2019.pbtxt", help="AVA: label map")
    p.add_argument("--split", type=int, default=1, help="UCF101-24 / JHMDB split")
    args = p.parse_args(argv)
    if args.format == "ava":
        csvs = args.csv or ["ava_train_v2.2.csv", "ava_val_v2.2.csv", "ava_val_predicted_boxes.csv"]
        report = check_ava(args.root, fps=args.fps, start=args.start, decode=args.decode, csvs=csvs,
                           labelmap_name=args.labelmap)
    elif args.format == "cub":
        report = check_cub(args.root)
    else:
        report = check_act(args.root, split=args.split, tool=f"data_prep/{args.format}_from_act.py")
    print(report.format())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
