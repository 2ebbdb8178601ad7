"""Alpha compositing of actor tubes onto a background clip, recording provenance.

Tubes are composited in list order (later tubes on top) with the "over" operator:
``out = a * fg + (1 - a) * out``. The visible weight of tube k is its own alpha times
``(1 - alpha)`` of every tube pasted after it, which makes the provenance exact:
``clip == (1 - sum_k w_k) * background + sum_k w_k * fg_k`` to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stal.structures import Provenance, Sample, clip_as_float


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


# --------------------------------------------------------------------------------------
# Layered compositing: sources that move, enter and leave, on uint8 or float clips.
# --------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One source placed in a clip of T frames.

    rgba: uint8 (T_s, h, w, 4) in [0, 255] or float32 in [0, 1]: the source's frames, already
        scaled, flipped and edge-treated (what is pasted is exactly these pixels).
    frames: int64 (T,): for each clip frame, the index into ``rgba``'s first axis, -1 where
        the source is absent (entered later or left earlier).
    top, left: int64 (T,): per-frame position of ``rgba``'s top-left corner in clip pixels
        (may be negative or beyond the frame; what falls outside is cut).
    """

    rgba: np.ndarray
    frames: np.ndarray
    top: np.ndarray
    left: np.ndarray
    soft: bool = True  # False promises alpha in {0, max}: the soft-edge pass is skipped


def composite_layers(background: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, Provenance]:
    """Paste ``layers`` (bottom first) over ``background`` with the "over" operator.

    background: uint8 (T, H, W, 3) or float32 in [0, 1]; the clip keeps its dtype. uint8
    clips are blended in float32 per pasted region and rounded, so voxels with no alpha are
    the background bit for bit and alpha-1 voxels on top are the source pixel bit for bit;
    in between the provenance identity holds to 0.5/255 per layer. Only the regions the
    layers touch are computed (synthesis must cost little next to decoding a clip).

    Returns the clip and its :class:`Provenance` (K = len(layers); ``ids`` = the source with
    the largest visible weight, among weights > 0; on ties the lower source).
    """
    T, H, W, _ = background.shape
    state = _Canvas(clip=background.copy(),
                    weights=np.zeros((len(layers), T, H, W), np.float32),  # untouched pages stay unallocated
                    ids=np.zeros((T, H, W), np.int16))
    for k, layer in enumerate(layers):
        if layer.frames.shape != (T,) or layer.top.shape != (T,) or layer.left.shape != (T,):
            raise ValueError(f"layer {k}: frames/top/left must have shape ({T},)")
        state.rects.append([])
        for ts, src, top, left in _runs(layer):
            _paste(state, k, layer.rgba[src], ts, top, left, layer.soft)
    return state.clip, Provenance(ids=state.ids, alpha=state.weights)


@dataclass
class _Canvas:
    """Compositing state. ``best`` (T, H, W) is the visible weight of each voxel's id, needed
    only once a soft-edged pixel appears (before that it is 1 where ids > 0); ``rects[k]``
    are layer k's pasted boxes (t0, t1, y0, y1, x0, x1), so a layer only touches the weights
    of earlier layers it overlaps."""

    clip: np.ndarray
    weights: np.ndarray
    ids: np.ndarray
    best: np.ndarray | None = None
    rects: list = None

    def __post_init__(self):
        self.rects = []


def _runs(layer: Layer):
    """Yield (clip frame slice, source frame indices, top, left) per run of a constant position."""
    present = np.flatnonzero(layer.frames >= 0)
    if present.size == 0:
        return
    pos = layer.top[present] * 1_000_003 + layer.left[present]
    # A new run starts where the position changes or presence has a gap.
    cut = np.flatnonzero((np.diff(pos) != 0) | (np.diff(present) != 1)) + 1
    for run in np.split(present, cut):
        t0, t1 = int(run[0]), int(run[-1]) + 1
        src = layer.frames[t0:t1]
        if src[-1] - src[0] == t1 - t0 - 1 and (np.diff(src) == 1).all():
            src = slice(int(src[0]), int(src[-1]) + 1)  # consecutive tube frames: a view, not a copy
        yield slice(t0, t1), src, int(layer.top[t0]), int(layer.left[t0])


def _paste(state: _Canvas, k: int, rgba: np.ndarray, ts: slice, top: int, left: int, soft_edges: bool) -> None:
    """Blend ``rgba`` (n, h, w, 4) into ``clip[ts]`` at (top, left) and update the provenance.

    Opaque pixels are plain masked copies; only soft-edged ones are gathered and blended.
    Each voxel of layer k is written by exactly one run (runs are disjoint in time).
    """
    _, h, w, _ = rgba.shape
    clip = state.clip
    H, W = clip.shape[1:3]
    y0, y1, sy0, sy1 = _overlap(top, h, H)
    x0, x1, sx0, sx1 = _overlap(left, w, W)
    if y0 >= y1 or x0 >= x1:
        return
    box = (ts.start, ts.stop, y0, y1, x0, x1)
    under = [j for j in range(k) if any(_intersects(box, r) for r in state.rects[j])]
    state.rects[k].append(box)
    patch = rgba[:, sy0:sy1, sx0:sx1]
    a_raw = patch[..., 3]
    solid = a_raw == (255 if rgba.dtype == np.uint8 else 1.0)
    fg = patch[..., :3]
    if clip.dtype != rgba.dtype:
        fg = fg.astype(np.float32) / np.float32(255) if clip.dtype != np.uint8 else np.rint(fg * 255).astype(np.uint8)
    region = clip[ts, y0:y1, x0:x1]
    mine = state.weights[k, ts, y0:y1, x0:x1]
    ids_r = state.ids[ts, y0:y1, x0:x1]
    if fg.dtype == clip.dtype and fg.strides[-1] == fg.itemsize:
        # Pixels as single 3-channel items: the mask is not broadcast over channels, which
        # makes this masked copy (the bulk of the work) several times faster.
        item = f"V{3 * clip.itemsize}"
        np.copyto(region.view(item)[..., 0], fg.view(item)[..., 0], where=solid)
    else:
        np.copyto(region, fg, where=solid[..., None])
    if rgba.dtype == np.uint8:
        np.divide(a_raw, np.float32(255), out=mine)
    else:
        mine[...] = a_raw
    keep = ~solid
    for j in under:
        np.multiply(state.weights[j, ts, y0:y1, x0:x1], keep, out=state.weights[j, ts, y0:y1, x0:x1])
    # Ids so far are 0..k, so "k+1 where opaque" is a maximum (a fast ufunc, unlike masked copies).
    np.maximum(ids_r, solid.view(np.int8) * np.int16(k + 1), out=ids_r)
    if state.best is not None:
        np.maximum(state.best[ts, y0:y1, x0:x1], solid, out=state.best[ts, y0:y1, x0:x1])
    if soft_edges:
        _blend_soft(state, k, under, np.nonzero((a_raw != 0) & ~solid), fg, region, mine, ids_r, (ts, y0, y1, x0, x1))


def _intersects(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3] and a[4] < b[5] and b[4] < a[5]


def _blend_soft(state: _Canvas, k: int, under: list[int], soft: tuple, fg: np.ndarray, region: np.ndarray,
                mine: np.ndarray, ids_r: np.ndarray, where: tuple) -> None:
    """The "over" operator and provenance update on the soft-edged pixels ``soft`` of a region."""
    if soft[0].size == 0:
        return
    ts, y0, y1, x0, x1 = where
    if state.best is None:  # every earlier pixel was opaque: its id's visible weight is 1
        state.best = (state.ids > 0).astype(np.float32)
    best_r = state.best[ts, y0:y1, x0:x1]
    a = mine[soft]
    cover = 1.0 - a
    out = a[:, None] * fg[soft].astype(np.float32) + cover[:, None] * region[soft].astype(np.float32)
    region[soft] = np.rint(out).astype(np.uint8) if region.dtype == np.uint8 else out
    for j in under:
        state.weights[j, ts, y0:y1, x0:x1][soft] *= cover
    # Every earlier weight shrinks by the same factor, so the earlier argmax stays the
    # earlier argmax; the new source wins where its alpha is strictly larger.
    below = best_r[soft] * cover
    wins = a > below
    best_r[soft] = np.where(wins, a, below)
    ids_r[soft] = np.where(wins, k + 1, np.where(below > 0, ids_r[soft], 0))


def boxes_from_ids(ids: np.ndarray, num_sources: int,
                   regions: list[tuple[int, int, int, int] | None] | None = None) -> np.ndarray:
    """float32 (K, T, 4): per source and frame, the tight box of the voxels with ``ids == k+1``.

    Normalized x1, y1, x2, y2 with pixel edges (a pixel at column c spans [c, c+1) / W); NaN
    rows where the source owns no voxel in that frame. ``regions`` (optional, per source
    ``(y0, y1, x0, x1)`` pixels or None = nowhere) bounds where source k can own voxels, so
    only those windows are scanned.
    """
    T, H, W = ids.shape
    boxes = np.full((num_sources, T, 4), np.nan, np.float32)
    for k in range(num_sources):
        y0, y1, x0, x1 = (0, H, 0, W) if regions is None else (regions[k] or (0, 0, 0, 0))
        if y0 >= y1 or x0 >= x1:
            continue
        mine = ids[:, y0:y1, x0:x1] == k + 1
        rows, cols = mine.any(2), mine.any(1)
        has = rows.any(1)
        top = y0 + rows.argmax(1)
        bottom = y1 - rows[:, ::-1].argmax(1)
        lft = x0 + cols.argmax(1)
        rgt = x1 - cols[:, ::-1].argmax(1)
        found = np.stack([lft / W, top / H, rgt / W, bottom / H], -1).astype(np.float32)
        boxes[k, has] = found[has]
    return boxes


def layer_footprint(layer: Layer, height: int, width: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) pixels: the union over present frames of the layer's pasted rectangle
    clipped to a (height, width) frame; None when it never touches the frame."""
    present = layer.frames >= 0
    if not present.any():
        return None
    h, w = layer.rgba.shape[1:3]
    y0 = max(int(layer.top[present].min()), 0)
    y1 = min(int(layer.top[present].max()) + h, height)
    x0 = max(int(layer.left[present].min()), 0)
    x1 = min(int(layer.left[present].max()) + w, width)
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def swap_background(sample: Sample, background: np.ndarray) -> Sample:
    """The same sources over another ``background`` (T, H, W, 3), from the provenance identity
    ``clip = (1 - sum_k alpha_k) * background + sum_k alpha_k * source_k``.

    Returns a float32 clip in [0, 1] (``background`` and the sample's clip may be uint8 or
    float32); boxes, labels and provenance are unchanged (the sources did not move). Exact to
    float precision for float32 synthesis and for hard-edged uint8 synthesis; soft-edged uint8
    clips carry the compositor's rounding (at most 1/255). Needs ``sample.background``.
    """
    if sample.background is None or sample.provenance is None:
        raise ValueError("swap_background needs a synthesized sample with its background and provenance")
    if background.shape != sample.clip.shape:
        raise ValueError(f"background {background.shape} does not match the clip {sample.clip.shape}")
    rest = 1.0 - sample.provenance.alpha.sum(0)[..., None]
    clip = clip_as_float(sample.clip) + rest * (clip_as_float(background) - clip_as_float(sample.background))
    return replace(sample, clip=np.clip(clip, 0.0, 1.0).astype(np.float32), background=clip_as_float(background))
