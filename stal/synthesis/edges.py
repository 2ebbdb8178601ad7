"""Edge treatment of a source before it is pasted: feathered alpha and colour matching.

Both act on the source's own RGBA frames, so compositing stays a plain "over" and the
provenance records exactly what was pasted.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def _box_blur(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2*radius+1 along ``axis`` (edges padded with zeros)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(x, pad), axis=axis, dtype=np.float32)
    n = x.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / np.float32(2 * radius + 1)


def feather_alpha(rgba: np.ndarray, radius: int) -> np.ndarray:
    """Soften the alpha edge inwards over ``radius`` pixels; returns a new RGBA of the same dtype.

    rgba: uint8 (T, h, w, 4) or float32 in [0, 1]. The new alpha is ``min(alpha, blur(alpha))``
    with a (2r+1)^2 box blur (outside the canvas: zeros for float, the edge pixel for uint8,
    where Pillow does the blur): the source never grows (its footprint and boxes stay inside the
    original mask) and pixels further than ``radius`` from the edge keep their alpha.
    """
    if radius <= 0:
        return rgba
    if rgba.dtype == np.uint8:  # Pillow's box blur (C, edge pixels extended) per frame
        out = rgba.copy()
        for t in range(len(rgba)):
            soft = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[t, ..., 3])).filter(ImageFilter.BoxBlur(radius)))
            out[t, ..., 3] = np.minimum(rgba[t, ..., 3], soft)
        return out
    scale = 1.0
    alpha = rgba[..., 3].astype(np.float32) / np.float32(scale)
    soft = _box_blur(_box_blur(alpha, radius, 1), radius, 2)
    new = np.minimum(alpha, soft)
    out = rgba.copy()
    out[..., 3] = np.rint(new * 255.0).astype(np.uint8) if scale == 255.0 else new
    return out


def match_colour(rgba: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """Shift the source's per-channel mean and spread towards ``reference``'s (Reinhard-style).

    rgba: uint8 (T, h, w, 4) or float32 in [0, 1]; reference: pixels (..., 3) of the same
    value range (the background under the source). ``strength`` in [0, 1]: 0 = unchanged,
    1 = the source's alpha-weighted mean/std equal the reference's. Returns a new RGBA.
    """
    if strength <= 0:
        return rgba
    scale = 255.0 if rgba.dtype == np.uint8 else 1.0
    rgb = rgba[..., :3].astype(np.float32)
    w = rgba[..., 3:4].astype(np.float32)
    total = float(w.sum())
    if total <= 0 or reference.size == 0:
        return rgba
    mean = (rgb * w).reshape(-1, 3).sum(0) / total
    std = np.sqrt(((rgb - mean) ** 2 * w).reshape(-1, 3).sum(0) / total) + 1e-3 * scale
    ref = reference.reshape(-1, 3).astype(np.float32)
    ref_mean, ref_std = ref.mean(0), ref.std(0) + 1e-3 * scale
    target = (rgb - mean) * (ref_std / std) + ref_mean
    new = np.clip(rgb + strength * (target - rgb), 0.0, scale)
    out = rgba.copy()
    out[..., :3] = np.rint(new).astype(np.uint8) if scale == 255.0 else new
    return out
