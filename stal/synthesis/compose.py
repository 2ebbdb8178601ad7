"""Alpha compositing of actor tubes onto a background clip, recording provenance.

Tubes are composited in list order (later tubes on top) with the "over" operator:
``out = a * fg + (1 - a) * out``. The visible weight of tube k is its own alpha times
``(1 - alpha)`` of every tube pasted after it, which makes the provenance exact:
``clip == (1 - sum_k w_k) * background + sum_k w_k * fg_k`` to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stal.structures import Provenance


@dataclass
class PlacedTube:
    """An RGBA actor tube placed in a clip.

    rgba: float32 (T, h, w, 4) in [0, 1], the tube's frames aligned with the clip's frames
        (the caller has already chosen the temporal window).
    top: row of the tube's top-left corner in the clip (pixels, may be negative).
    left: column of the tube's top-left corner in the clip (pixels, may be negative).
    """

    rgba: np.ndarray
    top: int
    left: int


def _overlap(start: int, size: int, limit: int) -> tuple[int, int, int, int]:
    """Clip [start, start+size) to [0, limit): (dst0, dst1, src0, src1)."""
    dst0, dst1 = max(start, 0), min(start + size, limit)
    return dst0, dst1, dst0 - start, dst1 - start


def composite(background: np.ndarray, tubes: list[PlacedTube]) -> tuple[np.ndarray, Provenance]:
    """Paste ``tubes`` over ``background`` (float32 (T, H, W, 3) in [0, 1]).

    Returns the clip (float32 (T, H, W, 3)) and its :class:`Provenance` with K = len(tubes).
    """
    T, H, W, _ = background.shape
    clip = background.astype(np.float32, copy=True)
    weights = np.zeros((len(tubes), T, H, W), np.float32)
    for k, tube in enumerate(tubes):
        if tube.rgba.shape[0] != T:
            raise ValueError(f"tube {k} has {tube.rgba.shape[0]} frames, the clip has {T}")
        _, h, w, _ = tube.rgba.shape
        y0, y1, sy0, sy1 = _overlap(tube.top, h, H)
        x0, x1, sx0, sx1 = _overlap(tube.left, w, W)
        if y0 >= y1 or x0 >= x1:
            continue
        patch = tube.rgba[:, sy0:sy1, sx0:sx1]
        a = patch[..., 3:4]
        region = clip[:, y0:y1, x0:x1]
        clip[:, y0:y1, x0:x1] = a * patch[..., :3] + (1.0 - a) * region
        # Everything pasted earlier is covered by this tube's alpha.
        weights[:k, :, y0:y1, x0:x1] *= 1.0 - a[None, ..., 0]
        weights[k, :, y0:y1, x0:x1] = a[..., 0]
    return clip, Provenance(ids=_ids_from_weights(weights), alpha=weights)


def _ids_from_weights(weights: np.ndarray) -> np.ndarray:
    """int16 (T, H, W): 1 + argmax_k weights where any weight > 0, else 0."""
    if weights.shape[0] == 0:
        return np.zeros(weights.shape[1:], np.int16)
    ids = weights.argmax(0).astype(np.int16) + 1
    ids[weights.max(0) <= 0] = 0
    return ids


def tube_boxes(tube: PlacedTube, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
    """Per-frame box of the tube's visible pixels, float32 (T, 4) normalized x1, y1, x2, y2.

    A box spans the pixels whose alpha is >= ``threshold`` (edges as pixel boundaries, so a
    single pixel at column c spans [c, c+1) / width), clipped to the clip; NaN where none is.
    """
    alpha = tube.rgba[..., 3]
    T = alpha.shape[0]
    boxes = np.full((T, 4), np.nan, np.float32)
    for t in range(T):
        ys, xs = np.nonzero(alpha[t] >= threshold)
        ys, xs = ys + tube.top, xs + tube.left
        keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        if not keep.any():
            continue
        ys, xs = ys[keep], xs[keep]
        boxes[t] = (xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height)
    return boxes
