"""UCF101-24 and JHMDB-21 per-frame datasets from the ACT ground truth.

Preparation (``data_prep/ucf24_from_act.py``, ``data_prep/jhmdb_from_act.py``) reads the ACT
pickle (:mod:`stal.formats.act`) and writes an index in the AVA CSV format under
``<root>/index/``, so one reader, one dataset class and one evaluator serve all datasets:

* ``{train,test}_split<k>.csv``: one row per tube box per annotated frame:
  ``video, frame, x1, y1, x2, y2, label, tube``; ``frame`` is the 1-based frame number (the
  AVA "second"), the box normalized by the video's resolution (pixel / width, pixel /
  height, clipped to [0, 1]), ``label`` the ACT label index + 1, ``tube`` the tube's number
  within the video.
* ``test_split<k>_boxes.csv``: the test boxes once each with score 1.0 (detection layout).
  They are the ground-truth boxes: frame-mAP on them measures classification of given
  actors, not the detection protocol of the ACT / YOWO papers.
* ``labelmap.pbtxt``: ids 1..C with the ACT class names.

Frames are ``<root>/rgb-images/<video>/%05d.jpg`` (1-based), as distributed with ACT / YOWO.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from stal.formats.act import ActAnnotations
from stal.data.ava import AvaKeyframeDataset
from stal.formats.ava import AvaTable, write_ava_csv, write_labelmap
from stal.errors import DataError
from stal.io.images import list_frames

ACT_FRAME_TEMPLATE = "{video}/{number:05d}.jpg"


def index_paths(root: str, split: int) -> dict[str, str]:
    """Files of the prepared index of ``split`` under ``root``."""
    d = os.path.join(root, "index")
    return {"train": os.path.join(d, f"train_split{split}.csv"), "test": os.path.join(d, f"test_split{split}.csv"),
            "boxes": os.path.join(d, f"test_split{split}_boxes.csv"), "labelmap": os.path.join(d, "labelmap.pbtxt"),
            "frames": os.path.join(root, "rgb-images")}


def check_index(root: str, split: int, *, need: Sequence[str] = ("frames", "train", "test", "labelmap"),
                tool: str = "data_prep/ucf24_from_act.py (or jhmdb_from_act.py)") -> dict[str, str]:
    """:func:`index_paths` of ``root``; DataError naming the first of ``need`` that is missing
    and the command that writes it."""
    paths = index_paths(root, split)
    for key in need:
        if not os.path.exists(paths[key]):
            raise DataError(f"{paths[key]} not found: prepare the index with python {tool} --root {root} "
                            f"--split {split} (docs/datasets.md)")
    return paths


def act_table(act: ActAnnotations, *, videos: Sequence[str], every: int = 1) -> AvaTable:
    """Rows of every tube box of ``videos`` (see the module doc), frames ``1, 1 + every, ...``.

    A video without tubes contributes no rows.
    """
    cols: dict[str, list] = {"video": [], "timestamp": [], "boxes": [], "action": [], "extra": []}
    for video in videos:
        h, w = act.resolution[video]
        scale = np.array([w, h, w, h], np.float32)
        tube_no = 0
        for label in sorted(act.gttubes.get(video, {})):
            for tube in act.gttubes[video][label]:
                frame = tube[:, 0].astype(np.int64)
                # Frames past nframes (kept by the parser, as ACT's evaluator keeps them) have no
                # image to train or test on.
                keep = tube[((frame - 1) % every == 0) & (frame >= 1) & (frame <= act.nframes[video])]
                n = len(keep)
                cols["video"] += [video] * n
                cols["timestamp"].append(keep[:, 0].astype(np.int64))
                cols["boxes"].append(np.clip(keep[:, 1:5] / scale, 0.0, 1.0))
                cols["action"].append(np.full(n, label + 1, np.int64))
                cols["extra"].append(np.full(n, tube_no, np.float32))
                tube_no += 1
    if not cols["video"]:
        return AvaTable.empty()
    return AvaTable(video=np.array(cols["video"], dtype=object), timestamp=np.concatenate(cols["timestamp"]),
                    boxes=np.concatenate(cols["boxes"]).astype(np.float32), action=np.concatenate(cols["action"]),
                    extra=np.concatenate(cols["extra"]))


def actor_free_ranges(table: AvaTable, *, frame_dir: str, min_length: int) -> dict[str, list[tuple[int, int]]]:
    """{frame folder: [(start, stop), ...]}: runs of at least ``min_length`` frames of each video
    of ``table`` that no annotated tube spans (0-based indices into the folder's sorted frames,
    stop exclusive), for background banks without the labelled actions.

    A tube spans its first to last annotated frame (gaps left by ``--train-every`` included).
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    for video, person, frame in zip(table.video, table.extra.astype(np.int64), table.timestamp):
        spans.setdefault(str(video), []).append((int(person), int(frame)))
    out = {}
    for video in sorted(spans):
        folder = os.path.join(frame_dir, video)
        covered = np.zeros(len(list_frames(folder)), bool)
        for person in {p for p, _ in spans[video]}:
            frames = [f for p, f in spans[video] if p == person]
            covered[min(frames) - 1:max(frames)] = True
        edges = np.flatnonzero(np.diff(np.concatenate([[1], covered.astype(np.int8), [1]])))
        out[folder] = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_length]
    return out


@dataclass
class PrepareReport:
    """What :func:`prepare_act_index` wrote and which videos it left out (and why)."""

    rows: dict[str, int] = field(default_factory=dict)
    videos: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def check_video_frames(frame_dir: str, video: str, nframes: int) -> str | None:
    """Why ``video``'s frame folder cannot be used (missing, fewer frames than nframes), or None."""
    folder = os.path.join(frame_dir, video)
    if not os.path.isdir(folder):
        return f"{folder}: frame folder missing"
    have = sum(1 for n in os.listdir(folder) if n.endswith(".jpg"))
    if have < nframes:
        return f"{folder}: {have} frames, the ACT ground truth says {nframes}"
    return None


def prepare_act_index(act: ActAnnotations, *, root: str, split: int, train_every: int = 1) -> PrepareReport:
    """Write ``<root>/index/`` for ``split`` (1-based); videos without usable frames are left out."""
    paths = index_paths(root, split)
    if not os.path.isdir(paths["frames"]):
        raise DataError(f"{paths['frames']}: frame folder not found (expected rgb-images/<video>/%05d.jpg "
                        f"from the ACT / YOWO download)")
    report = PrepareReport()
    os.makedirs(os.path.dirname(paths["train"]), exist_ok=True)
    for side, every in (("train", train_every), ("test", 1)):
        usable = []
        for video in act.videos(split=split, train=side == "train"):
            problem = check_video_frames(paths["frames"], video, act.nframes[video])
            if problem:
                report.skipped.append(problem)
            else:
                usable.append(video)
        table = act_table(act, videos=usable, every=every)
        write_ava_csv(paths[side], table)
        report.rows[side], report.videos[side] = len(table), len(usable)
        if side == "test":
            boxes = AvaTable(video=table.video, timestamp=table.timestamp, boxes=table.boxes,
                             action=np.full(len(table), -1, np.int64), extra=np.ones(len(table), np.float32))
            write_ava_csv(paths["boxes"], boxes, score=True)
    write_labelmap(paths["labelmap"], {i + 1: name for i, name in enumerate(act.labels)})
    return report


def act_keyframe_dataset(*, frame_dir: str, table: AvaTable, num_frames: int, sampling_rate: int,
                         crop_size: int, mean: Sequence[float], std: Sequence[float],
                         num_classes: int | None = None) -> AvaKeyframeDataset:
    """Per-frame dataset of an ACT index table: the clip centred on each annotated frame.

    Items as :class:`AvaKeyframeDataset` with ``labels`` int64 (K,) (one action per box,
    ``label - 1``); ``key`` is (video, 1-based frame number).
    """
    return AvaKeyframeDataset(
        frame_dir=frame_dir, table=table, fps=1, video_start=1, num_frames=num_frames,
        sampling_rate=sampling_rate, crop_size=crop_size, mean=mean, std=std, num_classes=num_classes,
        label_mode="single", frame_template=ACT_FRAME_TEMPLATE)


def format_report(report: PrepareReport, *, root: str, split: int) -> str:
    """Summary lines of a preparation run: rows and videos per side, then the videos left out."""
    lines = [f"{side}: {report.videos[side]} videos, {report.rows[side]} box rows -> "
             f"{index_paths(root, split)[side]}" for side in ("train", "test")]
    lines += [f"skipped {message}" for message in report.skipped]
    return "\n".join(lines)
