"""Actor tubes from static-camera video by background subtraction.

Pipeline per video: a median background plate (from evenly spaced frames), a foreground
mask per frame (any channel differs from the plate by more than a threshold), morphology
(opening removes speckle, closing fills holes), connected components per frame, components
tracked over time by box IoU, and each track cut into RGBA tubes of at most ``segment``
frames on a canvas that holds the track's boxes (alpha = the component's mask).

The video is processed in segments of ``segment`` frames, so memory is bounded by one
segment whatever the video's length; tracks end at segment boundaries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from stal.errors import DataError
from stal.io.video import decode_with_times
from stal.masks import label_components


@dataclass(frozen=True)
class SubtractionSpec:
    """Parameters of background subtraction (pixels and uint8 intensity levels).

    threshold: a pixel is foreground when some channel differs from the plate by more.
    open_radius / close_radius: square structuring elements (2r+1) of the morphology.
    min_area: components smaller than this (pixels) are noise. iou: tracking threshold.
    min_frames: shortest track kept. segment: most frames per tube. pad: canvas margin.
    plate_frames: frames (evenly spaced over the video) whose median is the plate.
    """

    threshold: int = 30
    open_radius: int = 1
    close_radius: int = 3
    min_area: int = 150
    iou: float = 0.3
    min_frames: int = 4
    segment: int = 32
    pad: int = 2
    plate_frames: int = 50


def median_plate(frames: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): the per-pixel median of ``frames`` (N, H, W, 3) uint8."""
    return np.median(frames, axis=0).round().astype(np.uint8)


def _dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    return F.max_pool2d(mask, 2 * r + 1, stride=1, padding=r) if r > 0 else mask


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    return -F.max_pool2d(-mask, 2 * r + 1, stride=1, padding=r) if r > 0 else mask


def foreground_masks(frames: np.ndarray, plate: np.ndarray, spec: SubtractionSpec) -> np.ndarray:
    """bool (N, H, W): thresholded difference to ``plate``, then opening and closing."""
    diff = np.abs(frames.astype(np.int16) - plate.astype(np.int16)).max(-1) > spec.threshold
    m = torch.from_numpy(diff).float()[:, None]
    m = _dilate(_erode(m, spec.open_radius), spec.open_radius)
    m = _erode(_dilate(m, spec.close_radius), spec.close_radius)
    return m[:, 0].numpy() > 0.5


def _components(labels: np.ndarray, min_area: int) -> list[dict[int, tuple[int, int, int, int]]]:
    """Per frame {label: (y0, y1, x0, x1)} of the components with at least ``min_area`` pixels."""
    out = []
    for frame in labels:
        ys, xs = np.nonzero(frame)
        found = {}
        if ys.size:
            lab = frame[ys, xs]
            ids, inv, counts = np.unique(lab, return_inverse=True, return_counts=True)
            y0 = np.full(len(ids), 1 << 30); x0 = y0.copy(); y1 = np.zeros(len(ids), np.int64); x1 = y1.copy()
            np.minimum.at(y0, inv, ys); np.minimum.at(x0, inv, xs)
            np.maximum.at(y1, inv, ys + 1); np.maximum.at(x1, inv, xs + 1)
            for j in np.flatnonzero(counts >= min_area):
                found[int(ids[j])] = (int(y0[j]), int(y1[j]), int(x0[j]), int(x1[j]))
        out.append(found)
    return out


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ih = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    iw = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = ih * iw
    area = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / area if area > 0 else 0.0


def track_components(comps: list[dict[int, tuple[int, int, int, int]]], iou: float) -> list[list[tuple[int, int]]]:
    """Greedy frame-to-frame IoU association; tracks as lists of (frame, label)."""
    tracks: list[list[tuple[int, int]]] = []
    active: list[int] = []  # indices into tracks that ended in the previous frame
    for t, found in enumerate(comps):
        pairs = sorted(((_iou(comps[tracks[i][-1][0]][tracks[i][-1][1]], box), i, lab)
                        for i in active for lab, box in found.items()), reverse=True)
        used_tracks, used_labels, next_active = set(), set(), []
        for score, i, lab in pairs:
            if score < iou or i in used_tracks or lab in used_labels:
                continue
            tracks[i].append((t, lab))
            used_tracks.add(i); used_labels.add(lab); next_active.append(i)
        for lab in found:
            if lab not in used_labels:
                tracks.append([(t, lab)])
                next_active.append(len(tracks) - 1)
        active = next_active
    return tracks


def cut_tubes(frames: np.ndarray, labels: np.ndarray, tracks: list[list[tuple[int, int]]],
              comps: list[dict[int, tuple[int, int, int, int]]], spec: SubtractionSpec
              ) -> Iterator[tuple[np.ndarray, np.ndarray, int, tuple[int, int, int, int]]]:
    """Yield (rgb uint8 (n, h, w, 3), alpha uint8 (n, h, w), first frame, canvas (y0, y1, x0, x1))
    per kept track.

    The canvas is the union of the track's boxes plus ``pad``; frames inside the track's
    span where it was not matched are empty (alpha 0).
    """
    N, H, W = labels.shape
    for track in tracks:
        if len(track) < spec.min_frames:
            continue
        boxes = np.array([comps[t][lab] for t, lab in track])
        y0, y1 = max(int(boxes[:, 0].min()) - spec.pad, 0), min(int(boxes[:, 1].max()) + spec.pad, H)
        x0, x1 = max(int(boxes[:, 2].min()) - spec.pad, 0), min(int(boxes[:, 3].max()) + spec.pad, W)
        t0, t1 = track[0][0], track[-1][0] + 1
        alpha = np.zeros((t1 - t0, y1 - y0, x1 - x0), np.uint8)
        for t, lab in track:
            alpha[t - t0] = np.where(labels[t, y0:y1, x0:x1] == lab, 255, 0)
        yield np.ascontiguousarray(frames[t0:t1, y0:y1, x0:x1]), alpha, t0, (y0, y1, x0, x1)


def _frames(path: str, stride: int) -> Iterator[np.ndarray]:
    shape = None
    for i, (_, frame) in enumerate(decode_with_times(path)):
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise DataError(f"{path}: frame {i} is {frame.shape[:2]}, earlier frames are {shape[:2]}")
        if i % stride == 0:
            yield frame


def plate_of_video(path: str, *, stride: int, plate_frames: int) -> tuple[np.ndarray, int]:
    """(median plate uint8 (H, W, 3), number of frames read) from evenly spaced frames."""
    kept, step, count = [], 1, 0
    for i, frame in enumerate(_frames(path, stride)):
        count += 1
        if i % step == 0:
            kept.append((i, frame))
        if len(kept) >= 2 * plate_frames:  # keep the sample even: drop every other, double the step
            step *= 2
            kept = [(j, f) for j, f in kept if j % step == 0]
    if count == 0:
        raise DataError(f"{path}: no decodable video frames")
    return median_plate(np.stack([f for _, f in kept])), count


def extract_tubes(path: str, spec: SubtractionSpec, *, stride: int = 1, max_frames: int = 0,
                  plate: np.ndarray | None = None) -> Iterator[dict]:
    """Yield one dict per tube: rgb, alpha, start (frame of the video, after ``stride``), box
    (y0, y1, x0, x1 of the canvas in the video frame). ``max_frames`` > 0 reads only that
    many (strided) frames; ``plate`` overrides the median plate."""
    if plate is None:
        plate, _ = plate_of_video(path, stride=stride, plate_frames=spec.plate_frames)
    frames = _frames(path, stride)
    if max_frames > 0:
        frames = itertools.islice(frames, max_frames)
    offset = 0
    while True:
        chunk = list(itertools.islice(frames, spec.segment))
        if not chunk:
            return
        block = np.stack(chunk)
        if block.shape[1:] != plate.shape:
            raise DataError(f"{path}: frames are {block.shape[1:3]}, the background plate is {plate.shape[:2]}")
        labels, _ = label_components(foreground_masks(block, plate, spec), connectivity=8)
        comps = _components(labels, spec.min_area)
        for rgb, alpha, t0, box in cut_tubes(block, labels, track_components(comps, spec.iou), comps, spec):
            yield {"rgb": rgb, "alpha": alpha, "start": (offset + t0) * stride, "box": box}
        offset += len(chunk)


def empty_ranges(path: str, spec: SubtractionSpec, *, plate: np.ndarray, max_foreground: float,
                 min_length: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges (every frame, 0-based) whose foreground fraction against
    ``plate`` stays at or below ``max_foreground``, at least ``min_length`` frames long."""
    empty = []
    frames = _frames(path, 1)
    while True:
        chunk = list(itertools.islice(frames, spec.segment))
        if not chunk:
            break
        masks = foreground_masks(np.stack(chunk), plate, spec)
        empty.extend(masks.mean((1, 2)) <= max_foreground)
    runs, start = [], None
    for i, ok in enumerate(empty + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start >= min_length:
                runs.append((start, i))
            start = None
    return runs
