"""Inference on a user's own video: keyframes every ``stride`` seconds, person boxes, action scores.

Conventions: times are seconds from the start of the video; a keyframe at time t is the frame
``round(t * fps)`` (0-based) of the decoded video; boxes are normalized ``x1, y1, x2, y2`` in
[0, 1] of the frame; clips are sampled as :class:`stal.data.ava.AvaKeyframeDataset` does
(``num_frames`` frames ``sampling_rate`` apart, centred on the keyframe, clamped to the video),
resized to ``crop_size`` squares and normalized. Detections come out in AVA's prediction
layout (``second`` = the keyframe time in whole seconds, as AVA's own files count them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stal.data.batch import normalize_clip
from stal.engine.evaluate import predict_detections
from stal.errors import DataError
from stal.formats.ava import AvaTable
from stal.io.video import allowed_shortfall, decode_with_times, probe_video
from stal.masks import component_boxes
from stal.synthesis.extraction import SubtractionSpec, foreground_masks, plate_of_video

logger = logging.getLogger("stal")


@dataclass
class DecodedVideo:
    """uint8 frames (N, H, W, 3) RGB and the frame rate the times were decoded at."""

    frames: np.ndarray
    fps: float

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


def decode_video(path: str) -> DecodedVideo:
    """Every frame of ``path`` (PyAV); a video whose header promises more than it holds is an error."""
    info = probe_video(path)
    frames = [frame for _, frame in decode_with_times(path)]
    if not frames:
        raise DataError(f"{path}: no frame could be decoded")
    fps = info.fps or 25.0
    expected = int(round(info.duration * fps))
    if info.duration and len(frames) < expected - allowed_shortfall(expected):
        raise DataError(f"{path}: decoded {len(frames)} frames, the header says {info.duration:.2f} s at "
                        f"{fps:g} fps; the video is truncated")
    return DecodedVideo(np.stack(frames), fps)


def keyframe_seconds(duration: float, stride: int) -> list[int]:
    """Whole seconds ``stride, 2 * stride, ...`` before the end (AVA's keyframes skip 0)."""
    return list(range(stride, int(np.ceil(duration)), stride)) or [0]


def read_person_boxes(path: str, *, video: str) -> dict[int, np.ndarray]:
    """{second: float32 (K, 4)} from a box CSV ``video,time,x1,y1,x2,y2[,score]`` (normalized,
    optional header; rows of other videos are skipped); a bad row is ``FILE:LINE: expected ...``."""
    out: dict[int, list] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            fields = [x.strip() for x in line.strip().split(",")]
            if not line.strip() or (line_no == 1 and fields[0] == "video"):
                continue
            if len(fields) not in (6, 7):
                raise DataError(f"{path}:{line_no}: expected video,time,x1,y1,x2,y2[,score], got {len(fields)} columns")
            try:
                second, box = int(round(float(fields[1]))), np.array([float(v) for v in fields[2:6]], np.float32)
            except ValueError:
                raise DataError(f"{path}:{line_no}: time and box must be numbers, got {line.strip()!r}") from None
            if not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise DataError(f"{path}:{line_no}: box {box.tolist()} is not normalized x1 < x2, y1 < y2 in [0, 1]")
            if fields[0] == video:
                out.setdefault(second, []).append(box)
    return {t: np.stack(b) for t, b in out.items()}


def subtraction_boxes(path: str, video: DecodedVideo, seconds: Sequence[int], *,
                      min_area: int = 16) -> dict[int, np.ndarray]:
    """Static cameras: {second: (K, 4)} boxes of the foreground blobs against the median plate
    (the tube-bank builder's background subtraction, :mod:`stal.synthesis.extraction`)."""
    spec = SubtractionSpec()
    plate, _ = plate_of_video(path, stride=1, plate_frames=spec.plate_frames)
    index = [min(len(video.frames) - 1, int(round(t * video.fps))) for t in seconds]
    masks = foreground_masks(video.frames[index], plate, spec)
    H, W = masks.shape[1:]
    out = {}
    for t, mask in zip(seconds, masks):
        boxes, sizes = component_boxes(mask, connectivity=8)  # inclusive pixel corners
        boxes = boxes[sizes >= min_area]
        if len(boxes):
            out[t] = ((boxes + [0, 0, 1, 1]) / [W, H, W, H]).astype(np.float32)
    return out


def keyframe_clip(video: DecodedVideo, second: int, *, num_frames: int, sampling_rate: int, crop_size: int,
                  mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float32 (3, T, S, S): the clip centred on the keyframe at ``second``."""
    centre = int(round(second * video.fps))
    index = np.clip(centre + (np.arange(num_frames) - num_frames // 2) * sampling_rate, 0, len(video.frames) - 1)
    frames = [np.asarray(Image.fromarray(video.frames[i]).resize((crop_size, crop_size), Image.BILINEAR))
              for i in index]
    return normalize_clip(np.stack(frames).astype(np.float32) / 255.0, mean, std)


class VideoKeyframes(Dataset):
    """Items of :func:`stal.data.ava.collate_eval` for the keyframes of one decoded video: ``clip``
    (3, T, S, S), ``boxes`` (K, 4) input pixels, ``boxes_norm`` (K, 4), ``key`` (name, second)."""

    def __init__(self, *, video: DecodedVideo, boxes: dict[int, np.ndarray], name: str, num_frames: int,
                 sampling_rate: int, crop_size: int, mean: Sequence[float], std: Sequence[float]):
        self.video, self.boxes, self.name, self.seconds = video, boxes, name, sorted(boxes)
        self.clip_args = dict(num_frames=num_frames, sampling_rate=sampling_rate, crop_size=crop_size,
                              mean=mean, std=std)

    def __len__(self) -> int:
        return len(self.seconds)

    def __getitem__(self, i: int) -> dict:
        second = self.seconds[i]
        boxes = torch.from_numpy(self.boxes[second])
        return {"clip": keyframe_clip(self.video, second, **self.clip_args), "boxes_norm": boxes,
                "boxes": boxes * self.clip_args["crop_size"], "key": (self.name, second)}


def predict_video(model: torch.nn.Module, video: DecodedVideo, boxes: dict[int, np.ndarray], *, name: str,
                  class_ids: list[int], loss_func: str, batch_size: int, num_frames: int, sampling_rate: int,
                  crop_size: int, mean: Sequence[float], std: Sequence[float]) -> AvaTable:
    """AVA prediction rows (one per box and label-map class) for every keyframe that has boxes,
    scored by the test path's :func:`stal.engine.evaluate.predict_detections` (model output j is
    class id j + 1)."""
    if not boxes:
        return AvaTable.empty()
    keyframes = VideoKeyframes(video=video, boxes=boxes, name=name, num_frames=num_frames,
                               sampling_rate=sampling_rate, crop_size=crop_size, mean=mean, std=std)
    return predict_detections(model, keyframes, batch_size=batch_size, loss_func=loss_func, class_ids=class_ids)
