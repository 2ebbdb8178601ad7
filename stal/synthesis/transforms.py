"""Provenance-aligned transforms: the same geometric change applied to the clip, the
background, the per-source alpha and hence the ids and boxes of a :class:`Sample`.

Resampling uses bilinear interpolation for the clip, background and alpha alike; ids are
then recomputed from the resampled alpha with the same rule as compositing (largest visible
weight > 0) and boxes from the ids, so "boxes enclose exactly the voxels of their id" holds
after any transform. Crops and flips move voxels without resampling (exact); flips and
temporal subsampling act on the sparse per-source crops (no dense alpha is built, see
:class:`~stal.structures.Provenance`), crops and resizing on the dense alpha. Samples
without provenance get their boxes transformed geometrically. Every random choice comes
from the generator passed in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stal.structures import AlphaCrop, Provenance, Sample, clip_as_float
from stal.synthesis.compose import _ids_from_weights, boxes_from_crops, boxes_from_ids

Transform = Callable[[Sample, np.random.Generator], Sample]


def _with_provenance(sample: Sample, clip: np.ndarray, background: np.ndarray | None,
                     alpha: np.ndarray | None, boxes_fn: Callable[[np.ndarray], np.ndarray]) -> Sample:
    if sample.provenance is None:
        return replace(sample, clip=clip, background=background, boxes=boxes_fn(sample.boxes))
    ids = _ids_from_weights(alpha)
    prov = Provenance(ids=ids, alpha=alpha)
    return replace(sample, clip=clip, background=background, provenance=prov,
                   boxes=boxes_from_ids(ids, prov.num_sources))


def hflip(sample: Sample, rng: np.random.Generator, *, prob: float = 0.5) -> Sample:
    """Mirror left-right with probability ``prob`` (boxes: x -> 1 - x)."""
    if rng.uniform() >= prob:
        return sample
    def flip(a: np.ndarray | None, axis: int) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(np.flip(a, axis))

    def boxes(b: np.ndarray) -> np.ndarray:
        return np.stack([1 - b[..., 2], b[..., 1], 1 - b[..., 0], b[..., 3]], -1).astype(np.float32)

    clip, background = flip(sample.clip, 2), flip(sample.background, 2)
    if sample.provenance is None:
        return replace(sample, clip=clip, background=background, boxes=boxes(sample.boxes))
    # Mirror each crop and its box (no dense alpha); boxes again from the crops, exactly.
    W = sample.clip.shape[2]
    crops = [[AlphaCrop(values=flip(c.values, -1), start=c.start, top=c.top, left=W - c.left - c.values.shape[2])
              for c in source] for source in sample.provenance.crops]
    prov = Provenance.from_crops(crops, shape=sample.provenance.shape)
    return replace(sample, clip=clip, background=background, provenance=prov, boxes=boxes_from_crops(crops, prov.shape))


def _resample(a: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], *,
              channels_last: bool) -> np.ndarray:
    """Crop a clip (T, H, W, 3) (``channels_last``) or alpha (K, T, H, W) to box (y0, y1, x0, x1)
    and resize bilinearly to ``size``; dtype kept."""
    y0, y1, x0, x1 = box
    crop = a[:, y0:y1, x0:x1] if channels_last else a[..., y0:y1, x0:x1]
    if (crop.shape[1:3] if channels_last else crop.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(crop)
    x = torch.from_numpy(np.ascontiguousarray(crop)).float()
    x = x.permute(0, 3, 1, 2) if channels_last else x.reshape(-1, 1, *crop.shape[-2:])
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if channels_last:
        y = y.permute(0, 2, 3, 1)
    else:
        y = y.reshape(*crop.shape[:-2], *size)
    if a.dtype == np.uint8:
        return y.round().clamp(0, 255).to(torch.uint8).numpy()
    return y.clamp(0, 1).numpy().astype(a.dtype)


def crop_resize(sample: Sample, *, box: tuple[int, int, int, int], size: tuple[int, int]) -> Sample:
    """Crop every frame to ``box`` (y0, y1, x0, x1 pixels) and resize to ``size`` (H, W)."""
    H, W = sample.clip.shape[1:3]
    y0, y1, x0, x1 = box

    def boxes(b: np.ndarray) -> np.ndarray:
        px = b * np.array([W, H, W, H], np.float32) - np.array([x0, y0, x0, y0], np.float32)
        out = px / np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float32)
        return np.clip(out, 0, 1).astype(np.float32)

    bg = None if sample.background is None else _resample(sample.background, box, size, channels_last=True)
    alpha = None if sample.provenance is None else _resample(sample.provenance.alpha, box, size, channels_last=False)
    return _with_provenance(sample, _resample(sample.clip, box, size, channels_last=True), bg, alpha, boxes)


def random_resized_crop(sample: Sample, rng: np.random.Generator, *, size: tuple[int, int],
                        scale: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Sample:
    """A random crop of ``scale`` of the area and ``ratio`` aspect (w/h), resized to ``size``."""
    H, W = sample.clip.shape[1:3]
    area = H * W * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    h = int(np.clip(round(np.sqrt(area / aspect)), 1, H))
    w = int(np.clip(round(np.sqrt(area * aspect)), 1, W))
    y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    return crop_resize(sample, box=(y0, y0 + h, x0, x0 + w), size=size)


def scale_jitter(sample: Sample, rng: np.random.Generator, *, min_scale: float, max_scale: float) -> Sample:
    """Resize the whole clip by a random factor in [min_scale, max_scale]."""
    H, W = sample.clip.shape[1:3]
    f = rng.uniform(min_scale, max_scale)
    return crop_resize(sample, box=(0, H, 0, W), size=(max(1, round(H * f)), max(1, round(W * f))))


def temporal_subsample(sample: Sample, *, stride: int, num_frames: int) -> Sample:
    """``num_frames`` frames every ``stride`` frames, placed so the keyframe is kept (and is
    again the frame at index ``num_frames // 2`` when the clip allows)."""
    T = sample.clip.shape[0]
    first = int(np.clip(sample.keyframe - (num_frames // 2) * stride, 0, max(T - 1 - (num_frames - 1) * stride, 0)))
    idx = np.minimum(first + stride * np.arange(num_frames), T - 1)
    key = int(np.argmin(np.abs(idx - sample.keyframe)))
    prov = sample.provenance
    new_prov = None if prov is None else prov.take_frames(idx)
    return replace(sample, clip=sample.clip[idx], background=None if sample.background is None else sample.background[idx],
                   boxes=sample.boxes[:, idx], keyframe=key, provenance=new_prov)


def apply(sample: Sample, rng: np.random.Generator, transforms: Sequence[Transform]) -> Sample:
    for t in transforms:
        sample = t(sample, rng)
    return sample


def normalize(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or float (T, H, W, 3) -> float32 tensor (3, T, H, W), per-channel (x - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(clip_as_float(clip))).permute(3, 0, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return (x - m) / s
