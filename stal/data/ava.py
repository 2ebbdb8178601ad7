"""AVA-format keyframe datasets read from extracted frames.

Layout (PySlowFast / AVA convention): ``<frame_dir>/<video>/<video>_%06d.jpg`` with 1-based
file numbers as ffmpeg writes them; frame index i (0-based) is file i+1, and the keyframe
of second s is frame index ``(s - video_start) * fps`` (AVA: ``(s - 900) * 30``). A clip of
T frames is centred on the keyframe (indices ``k - T//2 * rate ... k + (T - T//2 - 1) * rate``),
clamped to the video. Boxes are normalized x1, y1, x2, y2 in the table and input pixels in
the items.

Other datasets reuse the class with their own ``frame_template`` and time base: the ACT
layout of UCF101-24 / JHMDB (``rgb-images/<video>/%05d.jpg``, one "second" per frame) is
``frame_template="{video}/{number:05d}.jpg", fps=1, video_start=1`` (see stal.data.act).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stal.formats.ava import AvaTable
from stal.data.batch import batch_rois, normalize_clip
from stal.io.images import read_image
from stal.io.video import VIDEO_EXTENSIONS, frames_at_fps
from stal.errors import DataError


def group_keyframes(table: AvaTable) -> list[tuple[str, int, np.ndarray]]:
    """Rows of ``table`` grouped by keyframe: [(video, second, row indices)], in first-seen order."""
    order: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(table.video.tolist(), table.timestamp.tolist())):
        order.setdefault(key, []).append(i)
    return [(v, s, np.asarray(rows)) for (v, s), rows in order.items()]


AVA_FRAME_TEMPLATE = "{video}/{video}_{number:06d}.jpg"


class AvaKeyframeDataset(Dataset):
    """One item per annotated keyframe: the centred clip and that keyframe's boxes.

    Items: ``clip`` float32 (3, T, S, S) normalized, ``boxes`` float32 (K, 4) input pixels,
    ``boxes_norm`` (K, 4) normalized, ``scores`` (K,) (table's last column), ``key``
    (video, second), and when ``num_classes`` is given ``labels``: float32 (K, num_classes)
    multi-hot (``label_mode="multi"``, AVA: rows of the same box are merged, AVA lists one
    row per (person, action)) or int64 (K,) class index ``action - 1`` (``"single"``:
    UCF101-24 / JHMDB, one action per box), with then ``mask`` (T, S, S) and
    ``source_masks`` (K, T, S, S): the boxes over all frames.

    ``excluded`` keyframes ((video, second) pairs, AVA's excluded-timestamps CSV) get no item.
    ``frame_counts`` ({video: frames}) saves listing the folders; by default a video's
    frame count is the number of ``.jpg`` files in its folder.

    ``video_dir`` reads clips straight from ``<video_dir>/<video>.mp4`` (or .mkv, ...) with
    PyAV instead of extracted frames, picking the same frames as data_prep/extract_frames.py
    (several times slower per clip than JPEG files; see docs/datasets.md).
    """

    def __init__(self, *, frame_dir: str, table: AvaTable, fps: int, num_frames: int,
                 sampling_rate: int, crop_size: int, mean: Sequence[float], std: Sequence[float],
                 num_classes: int | None = None, video_start: int = 900, label_mode: str = "multi",
                 excluded: set[tuple[str, int]] | None = None, frame_template: str = AVA_FRAME_TEMPLATE,
                 frame_counts: dict[str, int] | None = None, video_dir: str | None = None):
        if video_dir and not os.path.isdir(video_dir):
            raise DataError(f"video directory not found: {video_dir}")
        if not video_dir and not os.path.isdir(frame_dir):
            raise DataError(f"frame directory not found: {frame_dir}")
        self.video_dir, self._videos = video_dir, {}
        if label_mode not in ("multi", "single"):
            raise ValueError(f"label_mode must be 'multi' or 'single', got {label_mode!r}")
        self.frame_dir, self.table, self.fps = frame_dir, table, fps
        self.num_frames, self.rate, self.size = num_frames, sampling_rate, crop_size
        self.mean, self.std, self.num_classes = list(mean), list(std), num_classes
        self.video_start, self.label_mode, self.frame_template = video_start, label_mode, frame_template
        if num_classes:
            _check_actions(table, num_classes)
        self.keyframes = [k for k in group_keyframes(table) if (k[0], k[1]) not in (excluded or set())]
        self._counts: dict[str, int] = dict(frame_counts or {})

    def __len__(self) -> int:
        return len(self.keyframes)

    def frame_path(self, video: str, index: int) -> str:
        """Path of 0-based frame ``index`` of ``video``."""
        return os.path.join(self.frame_dir, self.frame_template.format(video=video, number=index + 1))

    def keyframe_index(self, second: int) -> int:
        """0-based frame index of the keyframe of ``second``."""
        return (second - self.video_start) * self.fps

    def _frame_count(self, video: str) -> int:
        if video not in self._counts:
            folder = os.path.dirname(self.frame_path(video, 0))
            if not os.path.isdir(folder):
                raise DataError(f"no frames for video {video!r}: {folder} does not exist")
            self._counts[video] = sum(1 for n in os.listdir(folder) if n.endswith(".jpg"))
        return self._counts[video]

    def load_clip(self, video: str, second: int) -> np.ndarray:
        """float32 (T, S, S, 3) in [0, 1] centred on the keyframe of ``second``."""
        offsets = (np.arange(self.num_frames) - self.num_frames // 2) * self.rate
        key = self.keyframe_index(second)
        if self.video_dir:
            frames = self._frames_from_video(video, np.maximum(key + offsets, 0))
        else:
            count = self._frame_count(video)
            if not 0 <= key < count:
                raise DataError(f"keyframe {video},{second} is frame index {key}, but {video} has {count} frames "
                                f"(fps {self.fps}, first second {self.video_start})")
            frames = [self._read_frame(self.frame_path(video, int(i))) for i in np.clip(key + offsets, 0, count - 1)]
        return np.stack([self._resize(f) for f in frames])

    def _read_frame(self, path: str) -> np.ndarray:
        return read_image(path, what="frame")

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 (S, S, 3) in [0, 1]."""
        if frame.shape[:2] != (self.size, self.size):
            frame = np.asarray(Image.fromarray(frame).resize((self.size, self.size), Image.BILINEAR))
        return frame.astype(np.float32) / 255.0

    def _frames_from_video(self, video: str, indices: np.ndarray) -> list[np.ndarray]:
        """Frames ``indices`` decoded from the video with extract_frames' selection rule.

        Frame index i is the decoded frame nearest to ``video_start + i / fps`` (as in the
        extracted files); indices past the end of the video repeat its last frame.
        """
        path = self._video_path(video)
        first, last = int(indices.min()), int(indices.max())
        frames = list(frames_at_fps(path, fps=self.fps, start=self.video_start + first / self.fps,
                                    duration=(last - first + 1) / self.fps))
        if not frames:
            raise DataError(f"{path}: no frames at {self.video_start + first / self.fps:.2f} s and later")
        return [frames[min(int(i) - first, len(frames) - 1)] for i in indices]

    def _video_path(self, video: str) -> str:
        if video not in self._videos:
            found = [os.path.join(self.video_dir, video + e) for e in VIDEO_EXTENSIONS
                     if os.path.isfile(os.path.join(self.video_dir, video + e))]
            if not found:
                raise DataError(f"no video file for {video!r} in {self.video_dir} (expected {video}.mp4, .mkv, ...)")
            self._videos[video] = found[0]
        return self._videos[video]

    def _merge_boxes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unique boxes of a keyframe with their max score and multi-hot labels."""
        boxes = self.table.boxes[rows]
        uniq, inverse = np.unique(boxes.round(4), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        scores = np.zeros(len(uniq), np.float32)
        np.maximum.at(scores, inverse, self.table.extra[rows])
        labels = np.zeros((len(uniq), self.num_classes or 0), np.float32)
        if self.num_classes:
            actions = self.table.action[rows]
            ok = (actions >= 1) & (actions <= self.num_classes)
            labels[inverse[ok], actions[ok] - 1] = 1.0
        return uniq.astype(np.float32), scores, labels

    def __getitem__(self, index: int) -> dict:
        video, second, rows = self.keyframes[index]
        boxes, scores, labels = self._merge_boxes(rows)
        item = {
            "clip": normalize_clip(self.load_clip(video, second), self.mean, self.std),
            "boxes": torch.from_numpy(boxes * self.size),
            "boxes_norm": torch.from_numpy(boxes),
            "scores": torch.from_numpy(scores),
            "key": (video, second),
        }
        if self.num_classes:
            item["labels"] = torch.from_numpy(labels)
            if self.label_mode == "single":
                item["labels"] = self._single_labels(video, second, labels)
            # No provenance for real footage: the boxes, over all frames, are the target region,
            # each box its own source (per-source guidance) and their union the clip's mask.
            source_masks = torch.zeros(len(boxes), self.num_frames, self.size, self.size)
            for k, (x1, y1, x2, y2) in enumerate((boxes * self.size).round().astype(int)):
                source_masks[k, :, y1:y2, x1:x2] = 1.0
            item["source_masks"] = source_masks
            item["mask"] = source_masks.amax(0) if len(boxes) else torch.zeros(self.num_frames, self.size, self.size)
        return item


    def _single_labels(self, video: str, second: int, labels: np.ndarray) -> torch.Tensor:
        """int64 (K,) class index per box; a box with several (or no) actions is an error."""
        per_box = labels.sum(1)
        if len(labels) and not np.all(per_box == 1):
            bad = int(per_box[per_box != 1][0])
            raise DataError(f"keyframe {video},{second}: a box has {bad} actions; "
                            f"single-label datasets need exactly one action per box")
        return torch.from_numpy(labels.argmax(1).astype(np.int64))


def _check_actions(table: AvaTable, num_classes: int) -> None:
    """Training rows must name actions 1..num_classes: dropping others would shift no label but lose them."""
    bad = (table.action < 1) | (table.action > num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} rows have action ids outside 1..{num_classes} (first: "
                        f"{table.video[i]},{int(table.timestamp[i]):04d} action {int(table.action[i])}); "
                        f"set MODEL.NUM_CLASSES to the largest id (AVA: 80)")


def collate_eval(items: list[dict]) -> dict:
    """Batch of keyframes for inference: stacked clips, ROIs with batch index, per-box metadata."""
    return {
        "clip": torch.stack([it["clip"] for it in items]),
        "rois": batch_rois([it["boxes"] for it in items]),
        "boxes_norm": torch.cat([it["boxes_norm"] for it in items]),
        "keys": [it["key"] for it in items for _ in range(len(it["boxes"]))],
    }


def video_frame_files(frame_dir: str, video: str) -> list[str]:
    """Frame paths of ``video`` relative to ``frame_dir``, in order (``<video>/<video>_%06d.jpg``).

    Raises DataError when the folder is missing or empty, or when the numbering has a gap
    (a frame lost by an interrupted copy would shift every later keyframe otherwise).
    """
    folder = os.path.join(frame_dir, video)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no frame folder for video {video!r}")
    prefix = f"{video}_"
    numbers = sorted(int(n[len(prefix):-4]) for n in os.listdir(folder)
                     if n.startswith(prefix) and n.endswith(".jpg") and n[len(prefix):-4].isdigit())
    if not numbers:
        raise DataError(f"{folder}: no frames named {video}_NNNNNN.jpg")
    if numbers != list(range(1, len(numbers) + 1)):
        missing = next(i for i, n in enumerate(numbers, 1) if n != i)
        raise DataError(f"{folder}: frame {video}_{missing:06d}.jpg is missing ({len(numbers)} frames, "
                        f"numbered up to {numbers[-1]})")
    return [f"{video}/{video}_{n:06d}.jpg" for n in numbers]
