"""AVA-format keyframe datasets read from extracted frames.

Layout (PySlowFast / AVA convention): ``<frame_dir>/<video>/<video>_%06d.jpg`` with 1-based
file numbers as ffmpeg writes them; frame index i (0-based) is file i+1, and the keyframe
of second s is frame index ``(s - 900) * fps``. A clip of T frames is centred on the
keyframe (indices ``k - T//2 * rate ... k + (T - T//2 - 1) * rate``), clamped to the video.
Boxes are normalized x1, y1, x2, y2 in the table and input pixels in the items.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stal.data.ava_format import AvaTable
from stal.data.synthetic import batch_rois, normalize_clip
from stal.errors import DataError


def group_keyframes(table: AvaTable) -> list[tuple[str, int, np.ndarray]]:
    """Rows of ``table`` grouped by keyframe: [(video, second, row indices)], in first-seen order."""
    order: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(zip(table.video.tolist(), table.timestamp.tolist())):
        order.setdefault(key, []).append(i)
    return [(v, s, np.asarray(rows)) for (v, s), rows in order.items()]


class AvaKeyframeDataset(Dataset):
    """One item per annotated keyframe: the centred clip and that keyframe's boxes.

    Items: ``clip`` float32 (3, T, S, S) normalized, ``boxes`` float32 (K, 4) input pixels,
    ``boxes_norm`` (K, 4) normalized, ``scores`` (K,) (table's last column), ``key``
    (video, second), and ``labels`` float32 (K, num_classes) multi-hot when ``num_classes``
    is given (rows of the same box are merged: AVA lists one row per (person, action)),
    with then ``mask`` (T, S, S) and ``source_masks`` (K, T, S, S): the boxes over all frames.
    """

    def __init__(self, *, frame_dir: str, table: AvaTable, fps: int, num_frames: int,
                 sampling_rate: int, crop_size: int, mean: Sequence[float], std: Sequence[float],
                 num_classes: int | None = None, video_start: int = 900):
        if not os.path.isdir(frame_dir):
            raise DataError(f"frame directory not found: {frame_dir}")
        self.frame_dir, self.table, self.fps = frame_dir, table, fps
        self.num_frames, self.rate, self.size = num_frames, sampling_rate, crop_size
        self.mean, self.std, self.num_classes = list(mean), list(std), num_classes
        self.video_start = video_start
        self.keyframes = group_keyframes(table)
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keyframes)

    def _frame_count(self, video: str) -> int:
        if video not in self._counts:
            folder = os.path.join(self.frame_dir, video)
            if not os.path.isdir(folder):
                raise DataError(f"no frames for video {video!r}: {folder} does not exist")
            self._counts[video] = sum(1 for n in os.listdir(folder) if n.endswith(".jpg"))
        return self._counts[video]

    def load_clip(self, video: str, second: int) -> np.ndarray:
        """float32 (T, S, S, 3) in [0, 1] centred on the keyframe of ``second``."""
        count = self._frame_count(video)
        key = (second - self.video_start) * self.fps
        if not 0 <= key < count:
            raise DataError(f"keyframe {video},{second} is frame {key}, but {video} has {count} frames")
        offsets = (np.arange(self.num_frames) - self.num_frames // 2) * self.rate
        frames = []
        for i in np.clip(key + offsets, 0, count - 1):
            path = os.path.join(self.frame_dir, video, f"{video}_{i + 1:06d}.jpg")
            try:
                with Image.open(path) as img:
                    img = img.convert("RGB")
                    if img.size != (self.size, self.size):
                        img = img.resize((self.size, self.size), Image.BILINEAR)
                    frames.append(np.asarray(img, np.float32) / 255.0)
            except OSError as exc:
                raise DataError(f"cannot read frame {path}: {exc}") from None
        return np.stack(frames)

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
            # No provenance for real footage: the boxes, over all frames, are the target region,
            # each box its own source (per-source guidance) and their union the clip's mask.
            source_masks = torch.zeros(len(boxes), self.num_frames, self.size, self.size)
            for k, (x1, y1, x2, y2) in enumerate((boxes * self.size).round().astype(int)):
                source_masks[k, :, y1:y2, x1:x2] = 1.0
            item["source_masks"] = source_masks
            item["mask"] = source_masks.amax(0) if len(boxes) else torch.zeros(self.num_frames, self.size, self.size)
        return item


def collate_eval(items: list[dict]) -> dict:
    """Batch of keyframes for inference: stacked clips, ROIs with batch index, per-box metadata."""
    return {
        "clip": torch.stack([it["clip"] for it in items]),
        "rois": batch_rois([it["boxes"] for it in items]),
        "boxes_norm": torch.cat([it["boxes_norm"] for it in items]),
        "keys": [it["key"] for it in items for _ in range(len(it["boxes"]))],
    }
