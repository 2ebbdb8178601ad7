"""Alpha compositing of actor layers onto a background clip, recording provenance.

Layers are composited in list order (later layers on top) with the "over" operator:
``out = a * fg + (1 - a) * out``. The visible weight of layer k is its own alpha times
``(1 - alpha)`` of every layer pasted after it, which makes the provenance exact:
``clip == (1 - sum_k w_k) * background + sum_k w_k * fg_k`` to float precision.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np

from stal.structures import AlphaCrop, Provenance, Sample, clip_as_float, crop_window


def _overlap(start: int, size: int, limit: int) -> tuple[int, int, int, int]:
    """Clip [start, start+size) to [0, limit): (dst0, dst1, src0, src1)."""
    dst0, dst1 = max(start, 0), min(start + size, limit)
    return dst0, dst1, dst0 - start, dst1 - start


def _ids_from_weights(weights: np.ndarray) -> np.ndarray:
    """int16 (T, H, W): 1 + argmax_k weights where any weight > 0, else 0."""
    if weights.shape[0] == 0:
        return np.zeros(weights.shape[1:], np.int16)
    ids = weights.argmax(0).astype(np.int16) + 1
    ids[weights.max(0) <= 0] = 0
    return ids


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


def composite_layers(background: np.ndarray, layers: list[Layer | list[Layer]]) -> tuple[np.ndarray, Provenance]:
    """Paste ``layers`` (bottom first) over ``background`` with the "over" operator.

    background: uint8 (T, H, W, 3) or float32 in [0, 1]; the clip keeps its dtype. uint8
    clips are blended in float32 per pasted region and rounded, so voxels with no alpha are
    the background bit for bit and alpha-1 voxels on top are the source pixel bit for bit;
    in between the provenance identity holds to 0.5/255 per layer. Only the regions the
    layers touch are computed (synthesis must cost little next to decoding a clip).

    layers: one entry per source (source k = entry k-1). An entry is a Layer or a list of
    Layers that never show in the same frame (one tube pasted in pieces, each cropped to
    where it has alpha).

    Returns the clip and its :class:`Provenance` (K = len(layers); ``ids`` = the source with
    the largest visible weight, among weights > 0; on ties the lower source). The visible
    weights are recorded sparsely, one :class:`AlphaCrop` per layer spanning the frames from
    its first to its last appearance and the union of its pasted rectangles; the dense
    ``ids`` and ``alpha`` are built only if read.
    """
    T, H, W, _ = background.shape
    clip = background.copy()
    crops: list[list[AlphaCrop]] = []
    for k, entry in enumerate(layers):
        pieces = entry if isinstance(entry, list) else [entry]
        for layer in pieces:
            if layer.frames.shape != (T,) or layer.top.shape != (T,) or layer.left.shape != (T,):
                raise ValueError(f"layer {k}: frames/top/left must have shape ({T},)")
        if len(pieces) > 1 and (sum(layer.frames >= 0 for layer in pieces) > 1).any():
            raise ValueError(f"layer {k}: its pieces show in the same frame")
        crops.append([])
        for layer in pieces:
            runs = _runs(layer, H, W)
            if not runs:
                continue
            # The layer's crop: its first to last frame shown, the union of its pasted rectangles.
            t0, t1 = runs[0][0].start, runs[-1][0].stop
            y0, y1 = min(r[1][0] for r in runs), max(r[1][1] for r in runs)
            x0, x1 = min(r[2][0] for r in runs), max(r[2][1] for r in runs)
            # A single run writes every voxel of its crop: no zero fill (fresh zeroed pages cost).
            alloc = np.empty if len(runs) == 1 else np.zeros
            crops[k].append(AlphaCrop(values=alloc((t1 - t0, y1 - y0, x1 - x0), np.float32),
                                      start=t0, top=y0, left=x0))
            for ts, rows, cols, src in runs:
                _paste(clip, crops, k, layer.rgba[src], ts, rows, cols, layer.soft)
    return clip, Provenance.from_crops(crops, shape=(T, H, W))


def _meets(a: tuple, b: tuple) -> bool:
    """Whether cuboids (t0, t1, y0, y1, x0, x1) ``a`` and ``b`` share a voxel."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3] and a[4] < b[5] and b[4] < a[5]


def _runs(layer: Layer, height: int, width: int) -> list[tuple]:
    """Per run of frames with a constant position (and presence without gaps):
    ``(clip frame slice, (y0, y1, sy0, sy1), (x0, x1, sx0, sx1), source frames)``, the pasted
    rows / columns in the clip and in ``rgba`` (clipped to the frame; runs that fall
    outside it are dropped) and the source frame indices (a slice when consecutive).

    Plain Python over the T per-frame values: numpy calls on arrays this small cost more
    than they compute, and this runs for every layer of every sample.
    """
    frames, tops, lefts = layer.frames.tolist(), layer.top.tolist(), layer.left.tolist()
    h, w = layer.rgba.shape[1:3]
    runs, t, T = [], 0, len(frames)
    while t < T:
        if frames[t] < 0:
            t += 1
            continue
        t0 = t
        while t + 1 < T and frames[t + 1] >= 0 and tops[t + 1] == tops[t0] and lefts[t + 1] == lefts[t0]:
            t += 1
        t += 1
        rows, cols = _overlap(tops[t0], h, height), _overlap(lefts[t0], w, width)
        if rows[0] >= rows[1] or cols[0] >= cols[1]:
            continue
        src = frames[t0:t]
        consecutive = src[-1] - src[0] == t - t0 - 1 and all(b - a == 1 for a, b in zip(src, src[1:]))
        # Consecutive tube frames: a view of the tube, not a copy.
        runs.append((slice(t0, t), rows, cols, slice(src[0], src[-1] + 1) if consecutive else np.array(src)))
    return runs


def _solid(patch: np.ndarray) -> np.ndarray:
    """bool (n, h, w): where the RGBA ``patch`` (n, h, w, 4) is opaque."""
    if patch.dtype == np.uint8 and patch.strides[-1] == 1 and _LITTLE_ENDIAN:
        # One uint32 per pixel, alpha in the top byte: a contiguous compare instead of a
        # strided one over every fourth byte (several times faster).
        return patch.view(np.uint32)[..., 0] >= np.uint32(0xFF000000)
    return patch[..., 3] == (255 if patch.dtype == np.uint8 else 1.0)


_LITTLE_ENDIAN = sys.byteorder == "little"


def _paste(clip: np.ndarray, crops: list[list[AlphaCrop]], k: int, rgba: np.ndarray, ts: slice,
           rows: tuple[int, int, int, int], cols: tuple[int, int, int, int], soft_edges: bool) -> None:
    """Blend ``rgba`` (n, h, w, 4) into ``clip[ts]`` (rows / cols as :func:`_runs` gives them)
    and record its weight in source k's last crop (which holds this run), shrinking the
    earlier sources' weights.

    Opaque pixels are plain masked copies; only soft-edged ones are gathered and blended.
    Each voxel of a layer is written by exactly one run (runs are disjoint in time).
    """
    (y0, y1, sy0, sy1), (x0, x1, sx0, sx1) = rows, cols
    cuboid = (ts.start, ts.stop, y0, y1, x0, x1)
    patch = rgba[:, sy0:sy1, sx0:sx1]
    solid = _solid(patch)
    fg = patch[..., :3]
    if clip.dtype != rgba.dtype:
        fg = fg.astype(np.float32) / np.float32(255) if clip.dtype != np.uint8 else np.rint(fg * 255).astype(np.uint8)
    region = clip[ts, y0:y1, x0:x1]
    mine = crop_window(crops[k][-1], cuboid)[0]
    if fg.dtype == clip.dtype and fg.strides[-1] == fg.itemsize:
        # Pixels as single 3-channel items: the mask is not broadcast over channels, which
        # makes this masked copy (the bulk of the work) several times faster.
        item = f"V{3 * clip.itemsize}"
        np.copyto(region.view(item)[..., 0], fg.view(item)[..., 0], where=solid)
    else:
        np.copyto(region, fg, where=solid[..., None])
    a_raw = patch[..., 3]
    if not soft_edges:
        np.copyto(mine, solid)  # alpha in {0, max}: the weight is the opaque mask
    elif rgba.dtype == np.uint8:
        np.divide(a_raw, np.float32(255), out=mine)
    else:
        mine[...] = a_raw
    # Everything pasted earlier is covered by this layer's alpha.
    overlaps = [crop_window(c, cuboid) for j in range(k) for c in crops[j] if _meets(c.cuboid, cuboid)]
    if overlaps:
        keep = ~solid
        for theirs, (t0, t1, a0, a1, b0, b1) in overlaps:
            np.multiply(theirs, keep[t0:t1, a0:a1, b0:b1], out=theirs)
    if soft_edges:
        _blend_soft(overlaps, np.nonzero((a_raw != 0) & ~solid), fg, region, mine)


def _blend_soft(overlaps: list, soft: tuple, fg: np.ndarray, region: np.ndarray, mine: np.ndarray) -> None:
    """The "over" operator on the soft-edged pixels ``soft`` (t, y, x indices into the
    region) and the matching shrink of the earlier sources' weights; ``overlaps`` are their
    crop windows over the region, as :func:`~stal.structures.crop_window` gives them."""
    if soft[0].size == 0:
        return
    a = mine[soft]
    cover = 1.0 - a
    out = a[:, None] * fg[soft].astype(np.float32) + cover[:, None] * region[soft].astype(np.float32)
    region[soft] = np.rint(out).astype(np.uint8) if region.dtype == np.uint8 else out
    t, y, x = soft
    for theirs, (t0, t1, a0, a1, b0, b1) in overlaps:
        inside = (t >= t0) & (t < t1) & (y >= a0) & (y < a1) & (x >= b0) & (x < b1)
        theirs[t[inside] - t0, y[inside] - a0, x[inside] - b0] *= cover[inside]


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


def boxes_from_crops(crops: list[list[AlphaCrop]], shape: tuple[int, int, int]) -> np.ndarray:
    """float32 (K, T, 4): per source and frame, the tight box of the voxels the source owns
    (``ids == k+1``: its visible weight is > 0 and beats every other source's, ties going to
    the lower source), from the crops alone: only the crops are scanned, no dense array.

    ``crops`` as in :meth:`Provenance.from_crops` of a (T, H, W) = ``shape`` clip. Same
    output as :func:`boxes_from_ids` on the ids: normalized x1, y1, x2, y2 with pixel edges,
    NaN rows where the source owns nothing.
    """
    T, H, W = shape
    boxes = np.full((len(crops), T, 4), np.nan, np.float32)
    every = [(j, c, c.cuboid) for j, cs in enumerate(crops) for c in cs]
    for k, crop, cub in every:
        mine = crop.values > 0
        for j, other, oc in every:
            if j != k and _meets(oc, cub):
                theirs, (t0, t1, a0, a1, b0, b1) = crop_window(other, cub)
                ours = crop.values[t0:t1, a0:a1, b0:b1]
                mine[t0:t1, a0:a1, b0:b1] &= ours > theirs if j < k else ours >= theirs
        rows, cols = mine.any(2), mine.any(1)
        has = rows.any(1)
        n, h, w = mine.shape
        # First and one-past-last row / column with an owned voxel, in clip pixels.
        found = np.stack([cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], -1)
        found = (found + (cub[4], cub[2], cub[4], cub[2])) / np.array([W, H, W, H], np.float64)
        boxes[k, cub[0]:cub[1]][has] = found[has]
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
    rest = 1.0 - sample.provenance.weight_sum()[..., None]
    clip = clip_as_float(sample.clip) + rest * (clip_as_float(background) - clip_as_float(sample.background))
    return replace(sample, clip=np.clip(clip, 0.0, 1.0).astype(np.float32), background=clip_as_float(background))
