"""Compiled (numba) compositors of the loader default: nearest resize, no edge treatment.

Why compiled: the numpy path cost about 4 ms per 16x224x224 clip with 3 actors, half of a
decord decode, in ~500 numpy calls (resize, masked copy, weights, occlusion, boxes per
4-frame piece) and several passes over the ~330k voxels the actors cover. Here one call
makes the clip: frame by frame, it copies the background frame and pastes every actor into
it, the top layer first, while the frame is still in the cache. A source pixel is read
through the nearest index maps (no resized copy); the clip pixel, the actor's visible
weight and its per-frame box are written in the same step; a voxel is taken by the first
opaque layer that reaches it (a per-frame stamp marks it). With alpha in {0, 255} this is
exactly the "over" operator bottom first (the clip shows the topmost opaque source, whose
visible weight is 1, every other source's 0), so the result equals
:func:`stal.synthesis.compose.composite_layers` bit for bit (tested against it). Soft alpha
(any value strictly between 0 and 255: feathered box tubes, soft masks) needs the blend,
bottom layer first: :func:`compose_soft_nearest` does it in the numpy path's float32
arithmetic, also bit for bit. The dense ids are not written: the training item reads the
visible weights from the crops, and :class:`stal.structures.Provenance` builds the ids from
them when something reads them.

The per-actor arrays travel as tuples, so numba compiles each compositor once per number
of actors and clip dtype (about 1.5 s each, on the 2-core development machine; the first
call, with the shared helpers, about 5 s for the hard and 3 s more for the soft one). Everything is
cached (``cache=True``) in ``NUMBA_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/stal/numba`` (default
``~/.cache/stal/numba``), never in the installed package (whose ``__pycache__`` is the source tree of
an editable install): later processes load the machine code in about 0.2 s. Where no cache
directory is writable, plain ``njit(cache=True)`` raises at import; :func:`_jit` then compiles
without a cache, once per process (tested).

Pixels are read as one little-endian uint32 (R in the low byte): the caller takes the
numpy path on big-endian machines.
"""

from __future__ import annotations

import os

import numba
import numpy as np


def user_cache_dir() -> str:
    """Where the compiled kernels go: NUMBA_CACHE_DIR, else $XDG_CACHE_HOME/stal/numba."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stal", "numba")


# numba read NUMBA_CACHE_DIR when it was imported; without it, it would cache next to this file.
numba.config.CACHE_DIR = user_cache_dir()


def _jit(fn):
    """``numba.njit(cache=True, nogil=True)``, without the cache where none can be written."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


@_jit
def _nearest_map(size, source_size):
    """int64 (size,): the source row (or column) each output row samples, nondecreasing
    (the float64 arithmetic of :func:`stal.synthesis.paste._nearest_index`, same results)."""
    out = np.empty(size, np.int64)
    step = source_size / size
    for i in range(size):
        out[i] = np.int64((i + 0.5) * step)
    return out


@_jit
def _first_at_least(index, value):
    """The first i with ``index[i] >= value`` (``np.searchsorted(index, value)``), len if none."""
    lo, hi = 0, index.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if index[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _footprints(frames, top, left, height, width, flip, alpha_boxes, ys, xs, clip_h, clip_w):
    """int64 (T, 4): per clip frame, the clip rows / columns ``(y0, y1, x0, x1)`` whose source
    pixel lies in the frame's alpha box (so may be opaque), cut to the clip; y0 >= y1 where
    none (absent frame, empty alpha, outside the clip)."""
    T = frames.shape[0]
    rect = np.zeros((T, 4), np.int64)
    for t in range(T):
        f = frames[t]
        if f < 0:
            continue
        r0, r1, c0, c1 = alpha_boxes[f, 0], alpha_boxes[f, 1], alpha_boxes[f, 2], alpha_boxes[f, 3]
        # Canvas rows / columns sampling inside the box (the maps are nondecreasing).
        ya, yb = _first_at_least(ys, r0), _first_at_least(ys, r1)
        xa, xb = _first_at_least(xs, c0), _first_at_least(xs, c1)
        if flip:
            xa, xb = width - xb, width - xa
        rect[t, 0], rect[t, 1] = max(top[t] + ya, 0), min(top[t] + yb, clip_h)
        rect[t, 2], rect[t, 3] = max(left[t] + xa, 0), min(left[t] + xb, clip_w)
        if rect[t, 0] >= rect[t, 1] or rect[t, 2] >= rect[t, 3]:
            rect[t, 0], rect[t, 1] = 0, 0
    return rect


@_jit
def _crop_layout(rect, span):
    """int64 (n, 7): per group of ``span`` clip frames where ``rect`` (T, 4) has a footprint,
    the cuboid (t0, t1, y0, y1, x0, x1) spanning its frames with a footprint and the union of
    their footprints, and in column 6 its offset in a flat buffer of all the cuboids (C order
    each); the last row's offset + size is the buffer size."""
    T = rect.shape[0]
    out = np.zeros(((T + span - 1) // span, 7), np.int64)
    n, offset = 0, 0
    for g in range(0, T, span):
        t0, t1, y0, y1, x0, x1 = T, 0, 1 << 30, 0, 1 << 30, 0
        for t in range(g, min(g + span, T)):
            if rect[t, 0] < rect[t, 1]:
                t0, t1 = min(t0, t), t + 1
                y0, y1 = min(y0, rect[t, 0]), max(y1, rect[t, 1])
                x0, x1 = min(x0, rect[t, 2]), max(x1, rect[t, 3])
        if t0 < t1:
            out[n, 0], out[n, 1], out[n, 2], out[n, 3], out[n, 4], out[n, 5] = t0, t1, y0, y1, x0, x1
            out[n, 6] = offset
            offset += (t1 - t0) * (y1 - y0) * (x1 - x0)
            n += 1
    return out[:n], offset


@_jit
def _first_canvas_column(xs, source_size):
    """int64 (source_size + 1,): per tube column c, the first canvas column j with
    ``xs[j] >= c`` (``len(xs)`` if none): the inverse of the nondecreasing map ``xs``, so a
    row's span of tube columns becomes canvas columns with two lookups."""
    inv = np.empty(source_size + 1, np.int64)
    j = 0
    for c in range(source_size + 1):
        while j < xs.shape[0] and xs[j] < c:
            j += 1
        inv[c] = j
    return inv


@_jit
def compose_hard_nearest(clip, background, tubes, alpha_boxes, row_spans, frames, top, left, canvas, flips, lut, span):
    """Paste A placed tubes over ``background`` into ``clip``, frame by frame.

    clip: (T, H, W, 3) uint8 or float32, C-contiguous, overwritten (may come uninitialized).
    background: (T, H, W, 3), the clip's dtype, C-contiguous: copied into ``clip`` one frame
        at a time, each frame just before its actors are pasted (it is still in the cache).
    tubes: tuple of A uint32 (T_s, h_s, w_s), C-contiguous: tube a before resizing, one RGBA
        pixel per item as a little-endian machine reads uint8 (..., 4) memory (R in the low
        byte, alpha in the high one), alpha in {0, 255}. Layer a is source a + 1; later
        layers are on top.
    alpha_boxes: tuple of A int64 (T_s, 4): per tube frame the box (y0, y1, x0, x1) of
        alpha > 0 in tube pixels, (h_s, 0, w_s, 0) when empty: it bounds the crops.
    row_spans: tuple of A int64 (T_s, h_s, 2): per tube frame and row, the first and
        one-past-last column with alpha > 0, (w_s, 0) when none: only canvas pixels mapping
        inside are visited.
    frames: int64 (A, T): per actor and clip frame the tube frame shown, -1 where absent.
    top, left: int64 (A, T): clip row / column of the resized canvas's top-left corner (may
        be negative or beyond the clip).
    canvas: int64 (A, 2): the resized canvas (height, width); canvas pixel (i, j) shows tube
        pixel (rows[i], cols[j]) with the nearest maps of :func:`_nearest_map`, and
        ``flips[a]`` mirrors actor a's canvas (column j shows column width - 1 - j).
    lut: None for a uint8 clip (the colour bytes are copied), else (256,) float32: the clip
        value of each uint8 colour value (a lookup costs more than the copy of a byte).
    span: clip frames per crop of the visible weight (fewer: tighter crops, more of them).

    Returns:
        values float32 (N,) and cuboids int64 (n, 8): the visible weight of each source (1
            where it is the topmost opaque source, else 0) in n crops; row (a, t0, t1, y0,
            y1, x0, x1, off) is actor a's crop ``values[off:off + size]`` in C order over
            clip voxels [t0:t1, y0:y1, x0:x1].
        boxes float32 (A, T, 4): per actor and frame the normalized x1, y1, x2, y2 of its
            visible voxels with pixel edges (x / W, y / H, (x + 1) / W, (y + 1) / H, the
            division in float64 as :func:`stal.synthesis.compose.boxes_from_crops` does),
            NaN where it has none.
    """
    T, H, W, A = clip.shape[0], clip.shape[1], clip.shape[2], len(tubes)
    maps, rect, cuboids, where, values, boxes = _layout(tubes, alpha_boxes, row_spans, frames, top, left, canvas,
                                                        flips, span, H, W)
    # taken[y, x] == t + 1: a layer above already owns pixel (y, x) of frame t (no clearing
    # between frames).
    taken = np.zeros((H, W), np.int16)
    clipf, backf = clip.reshape(-1), background.reshape(-1)
    for t in range(T):
        frame = np.uint64(t * H * W * 3)
        for i in range(np.uint64(H * W * 3)):
            clipf[frame + i] = backf[frame + i]
        for a in range(A - 1, -1, -1):  # the top layer first
            c = where[a, t]
            if c < 0 or rect[a, t, 0] >= rect[a, t, 1]:
                continue
            _paste_actor_frame(clipf, taken, values, boxes[a, t], tubes[a][frames[a, t]], row_spans[a][frames[a, t]],
                               maps[a], rect[a, t], cuboids[c], t, top[a, t], left[a, t], canvas[a, 1], flips[a],
                               lut, W)
    return values, cuboids, boxes


@_jit
def _layout(tubes, alpha_boxes, row_spans, frames, top, left, canvas, flips, span, H, W):
    """(maps, rect, cuboids, where, values, boxes) of the A actors (arguments as in
    :func:`compose_hard_nearest`; each actor's rows as :func:`_actor_layout` writes them;
    the weights zeroed, the boxes NaN), after touching the tube rows the paste will read
    (:func:`_touch_tube_rows`). This and the two compositors take the tuples (numba compiles
    them once per number of actors); the helpers get one actor's arrays and are compiled once."""
    A, T, M = len(tubes), frames.shape[1], 1
    for a in range(A):
        M = max(M, canvas[a, 0], canvas[a, 1], tubes[a].shape[2] + 1)
    maps = np.zeros((A, 3, M), np.int64)
    rect = np.zeros((A, T, 4), np.int64)
    cuboids = np.zeros((A * ((T + span - 1) // span), 8), np.int64)
    where = np.full((A, T), -1, np.int64)
    n, size = 0, 0
    for a in range(A):
        n, size = _actor_layout(a, tubes[a].shape[1], tubes[a].shape[2], alpha_boxes[a], frames[a], top[a], left[a],
                                canvas[a], flips[a], span, H, W, maps[a], rect[a], cuboids, where[a], n, size)
    for a in range(A):
        _touch_tube_rows(tubes[a], row_spans[a], frames[a], top[a], maps[a], rect[a])
    return maps, rect, cuboids[:n], where, np.zeros(size, np.float32), np.full((A, T, 4), np.nan, np.float32)


@_jit
def _actor_layout(a, hs, ws, alpha_boxes, frames, top, left, canvas, flip, span, H, W, maps, rect, cuboids, where, n,
                  size):
    """Actor a's layout (tube frames hs x ws, canvas (height, width), its rows of the
    arrays of :func:`compose_hard_nearest`), written in place: ``maps`` int64 (3, M) = the
    canvas row map, the canvas column -> tube column map (mirrored when flipped) and the
    inverse column map of :func:`_first_canvas_column`; ``rect`` (T, 4) its per-frame
    footprints (:func:`_footprints`); its crops appended to ``cuboids`` from row n as (a, t0,
    t1, y0, y1, x0, x1, off), offsets from ``size`` on; ``where`` (T,) the row of the crop
    holding each frame. Returns the new (n, size)."""
    height, width = canvas[0], canvas[1]
    ys, xs = _nearest_map(height, hs), _nearest_map(width, ws)
    inv = _first_canvas_column(xs, ws)
    # Element loops rather than slice assignments: numba compiles those several times slower.
    for i in range(height):
        maps[0, i] = ys[i]
    for j in range(width):
        maps[1, j] = xs[width - 1 - j] if flip else xs[j]
    for c in range(ws + 1):
        maps[2, c] = inv[c]
    footprint = _footprints(frames, top, left, height, width, flip, alpha_boxes, ys, xs, H, W)
    for t in range(rect.shape[0]):
        for k in range(4):
            rect[t, k] = footprint[t, k]
    layout, total = _crop_layout(rect, span)
    for i in range(layout.shape[0]):
        cuboids[n, 0] = a
        for k in range(7):
            cuboids[n, 1 + k] = layout[i, k]
        cuboids[n, 7] += size
        for t in range(layout[i, 0], layout[i, 1]):
            where[t] = n
        n += 1
    return n, size + total


@_jit
def _row_run(y, top, left, width, flip, rect, ys, inv, spans):
    """(sy, xa, xb): the tube row shown in clip row y of an actor's frame (canvas at (top,
    left), ``width`` wide, footprint ``rect``) and the clip columns [xa, xb) sampling that
    row's span of alpha > 0 (``spans`` (h_s, 2); mirrored when ``flip``); xa >= xb: none."""
    sy = ys[y - top]
    ja, jb = inv[spans[sy, 0]], inv[spans[sy, 1]]
    if flip:
        ja, jb = width - jb, width - ja
    return sy, max(rect[2], left + ja), min(rect[3], left + jb)


@_jit
def _paste_actor_frame(clipf, taken, values, box, tube, spans, maps, rect, cuboid, t, top, left, width, flip, lut, W):
    """One actor in clip frame t of :func:`compose_hard_nearest`: ``tube`` uint32 (h_s, w_s)
    is the tube frame shown, ``spans`` (h_s, 2) its row spans, the canvas at (top, left) is
    visited within ``rect`` (y0, y1, x0, x1); the pixels it takes (opaque and not ``taken``)
    go into the flat clip, ``taken`` and its crop ``cuboid`` (a, t0, t1, y0, y1, x0, x1,
    off); ``box`` (4,) gets the normalized box of the pixels taken, if any."""
    H = taken.shape[0]
    ys, cols, inv = maps[0], maps[1], maps[2]
    ws = tube.shape[1]
    tubef, takenf = tube.reshape(-1), taken.reshape(-1)
    _, t0, _, y0, y1, x0, x1, off = cuboid
    stamp = np.int16(t + 1)
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    by0, by1, bx0, bx1 = 1 << 30, -1, 1 << 30, -1
    for y in range(rect[0], rect[1]):
        sy, xa, xb = _row_run(y, top, left, width, flip, rect, ys, inv, spans)
        if xa >= xb:
            continue
        # Flat offsets, unsigned: numba then skips the negative-index wraparound test on every
        # access and makes no per-row array views (with the inverse column map, the per-actor
        # kernel went from 0.85 to 0.72 ms per clip in a loop; measured).
        pix0 = np.uint64(y * W + xa)  # pixel (y, xa) of the frame
        clip0 = np.uint64(t * H * W) + pix0
        src0 = np.uint64(sy * ws)
        col0 = np.uint64(xa - left)
        w0 = np.uint64(off + ((t - t0) * (y1 - y0) + y - y0) * (x1 - x0) + xa - x0)
        first, last = np.int64(-1), np.int64(-1)
        for u in range(np.uint64(xb - xa)):
            pixel = tubef[src0 + np.uint64(cols[col0 + u])]
            if pixel < 0xFF000000 or takenf[pix0 + u] == stamp:
                continue
            takenf[pix0 + u] = stamp
            c = three * (clip0 + u)
            if lut is None:  # uint8 clip: the bytes as they are (resolved at compile time)
                clipf[c], clipf[c + one], clipf[c + two] = pixel & 0xFF, (pixel >> 8) & 0xFF, (pixel >> 16) & 0xFF
            else:
                clipf[c], clipf[c + one], clipf[c + two] = lut[pixel & 0xFF], lut[(pixel >> 8) & 0xFF], lut[(pixel >> 16) & 0xFF]
            values[w0 + u] = 1.0
            if first < 0:
                first = np.int64(u)
            last = np.int64(u)
        if first >= 0:
            by0, by1 = min(by0, y), y
            bx0, bx1 = min(bx0, xa + first), max(bx1, xa + last)
    if by1 >= 0:
        box[0], box[1] = np.float32(bx0 / W), np.float32(by0 / H)
        box[2], box[3] = np.float32((bx1 + 1) / W), np.float32((by1 + 1) / H)


@_jit
def _touch_tube_rows(tube, row_spans, frames, top, maps, rect):
    """Read one word per cache line of every row of ``tube`` (T_s, h_s, w_s) that the paste
    will read (one actor, all frames; arguments as in :func:`compose_hard_nearest`) before
    pasting. The tube bank is cold when a sample is made (the loader decoded a video in
    between); these independent loads overlap their cache misses, where the paste loop meets
    them one row at a time. Measured on the bench, three alternating runs: the loader-default
    row went from 1.48-1.53 to 1.41-1.43 ms. Returns the sum, so the loads are not optimized
    away; the caller ignores it, and the call stays (numba compiles it as a function of its
    own: checked in the LLVM IR)."""
    acc = np.uint32(0)
    ys, ws = maps[0], tube.shape[2]
    for t in range(frames.shape[0]):
        if rect[t, 0] >= rect[t, 1]:
            continue
        flat, spans, prev = tube[frames[t]].reshape(-1), row_spans[frames[t]], -1
        for y in range(rect[t, 0], rect[t, 1]):
            sy = ys[y - top[t]]
            if sy != prev:  # canvas rows sampling the same tube row read it once
                prev = sy
                for c in range(spans[sy, 0], spans[sy, 1], 16):  # 16 uint32 = one 64-byte line
                    acc += flat[np.uint64(sy * ws + c)]
    return acc


@_jit
def compose_soft_nearest(clip, background, tubes, alpha_boxes, row_spans, frames, top, left, canvas, flips, lut,
                         span):
    """:func:`compose_hard_nearest` for tubes whose alpha may take any value in [0, 255]
    (feathered box tubes, soft masks): same arguments and returns.

    Layers are blended bottom first with the "over" operator, in the float32 arithmetic of
    :func:`stal.synthesis.compose.composite_layers` (a = alpha / 255, ``a * fg + (1 - a) *
    clip``, rounded half to even for uint8 clips; the earlier layers' weights times 1 - a),
    so the Sample is the numpy path's bit for bit (tested). A voxel's owner, for the boxes,
    is the source with the largest visible weight (ties to the lower source), found after
    the frame's last layer.
    """
    T, H, W, A = clip.shape[0], clip.shape[1], clip.shape[2], len(tubes)
    maps, rect, cuboids, where, values, boxes = _layout(tubes, alpha_boxes, row_spans, frames, top, left, canvas,
                                                        flips, span, H, W)
    planes = np.zeros((A, 5), np.int64)  # per layer shown in frame t: its weights' plane (see _frame_planes)
    alut = np.arange(256).astype(np.float32) / np.float32(255)  # alpha byte -> a, as the numpy path divides
    stamp, best, owner = np.zeros((H, W), np.int32), np.empty((H, W), np.float32), np.empty((H, W), np.int64)
    clipf, backf = clip.reshape(-1), background.reshape(-1)
    for t in range(T):
        frame = np.uint64(t * H * W * 3)
        for i in range(np.uint64(H * W * 3)):
            clipf[frame + i] = backf[frame + i]
        shown = _frame_planes(planes, where, rect, cuboids, t)
        for a in range(A):  # the bottom layer first
            if planes[a, 0] >= 0:
                _blend_actor_frame(clipf, values, tubes[a][frames[a, t]], row_spans[a][frames[a, t]], maps[a],
                                   rect[a, t], planes, a, t, top[a, t], left[a, t], canvas[a, 1], flips[a], lut, alut,
                                   H, W)
        if shown:
            _frame_boxes(values, planes, stamp, best, owner, t, boxes[:, t], H, W)
    return values, cuboids, boxes


@_jit
def _frame_planes(planes, where, rect, cuboids, t):
    """Fill ``planes`` (A, 5) for clip frame t: per layer with a footprint there, (flat offset
    of its weight at (y0, x0) in frame t, y0, y1, x0, x1) of its crop; -1 in column 0 where
    it has none. Returns how many layers have one."""
    shown = 0
    for a in range(planes.shape[0]):
        c = where[a, t]
        planes[a, 0] = -1
        if c < 0 or rect[a, t, 0] >= rect[a, t, 1]:
            continue
        _, t0, _, y0, y1, x0, x1, off = cuboids[c]
        planes[a, 0] = off + (t - t0) * (y1 - y0) * (x1 - x0)
        planes[a, 1], planes[a, 2], planes[a, 3], planes[a, 4] = y0, y1, x0, x1
        shown += 1
    return shown


@_jit
def _weight_index(planes, j, y, x):
    """Flat index of layer j's weight at (y, x) of the current frame, -1 outside its crop."""
    if planes[j, 0] < 0 or not (planes[j, 1] <= y < planes[j, 2] and planes[j, 3] <= x < planes[j, 4]):
        return -1
    return planes[j, 0] + (y - planes[j, 1]) * (planes[j, 4] - planes[j, 3]) + x - planes[j, 3]


@_jit
def _blend_actor_frame(clipf, values, tube, spans, maps, rect, planes, a, t, top, left, width, flip, lut, alut, H, W):
    """Layer a in clip frame t of :func:`compose_soft_nearest` (arguments as in
    :func:`_paste_actor_frame`; ``planes`` from :func:`_frame_planes`): blends its visited
    pixels over the clip and scales the earlier layers' weights by 1 - a."""
    ys, cols, inv = maps[0], maps[1], maps[2]
    ws = tube.shape[1]
    tubef = tube.reshape(-1)
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    below = 0  # earlier layers whose crop meets this one's in this frame
    for j in range(a):
        if (planes[j, 0] >= 0 and planes[j, 1] < planes[a, 2] and planes[a, 1] < planes[j, 2]
                and planes[j, 3] < planes[a, 4] and planes[a, 3] < planes[j, 4]):
            below += 1
    for y in range(rect[0], rect[1]):
        sy, xa, xb = _row_run(y, top, left, width, flip, rect, ys, inv, spans)
        if xa >= xb:
            continue
        clip0 = np.uint64((t * H + y) * W + xa)
        src0 = np.uint64(sy * ws)
        col0 = np.uint64(xa - left)
        w0 = np.uint64(_weight_index(planes, a, y, xa))
        for u in range(np.uint64(xb - xa)):
            pixel = tubef[src0 + np.uint64(cols[col0 + u])]
            alpha = pixel >> 24
            if alpha == 0:
                continue
            c = three * (clip0 + u)
            if alpha == 255:
                cover = np.float32(0.0)
                if lut is None:
                    clipf[c], clipf[c + one], clipf[c + two] = pixel & 0xFF, (pixel >> 8) & 0xFF, (pixel >> 16) & 0xFF
                else:
                    clipf[c], clipf[c + one], clipf[c + two] = lut[pixel & 0xFF], lut[(pixel >> 8) & 0xFF], lut[(pixel >> 16) & 0xFF]
            else:
                cover = np.float32(np.float32(1.0) - alut[alpha])
                _blend_pixel(clipf, c, pixel, alut[alpha], cover, lut)
            values[w0 + u] = alut[alpha]
            if below:
                x = xa + np.int64(u)
                for j in range(a):
                    k = _weight_index(planes, j, y, x)
                    if k >= 0:
                        values[k] = values[k] * cover
    return below


@_jit
def _blend_pixel(clipf, c, pixel, a, cover, lut):
    """clip[c:c + 3] = a * fg + cover * clip in float32 (rounded half to even into a uint8
    clip), fg the colour bytes of ``pixel`` (as clip values through ``lut`` for a float clip)."""
    for i in range(3):
        byte = (pixel >> (8 * i)) & 0xFF
        at = c + np.uint64(i)
        if lut is None:
            out = a * np.float32(byte) + cover * np.float32(clipf[at])
            clipf[at] = np.uint8(np.rint(out))
        else:
            clipf[at] = a * lut[byte] + cover * clipf[at]


@_jit
def _frame_boxes(values, planes, stamp, best, owner, t, boxes, H, W):
    """``boxes`` (A, 4) of frame t: per layer, the normalized box of the voxels it owns
    (weight > 0 and the largest, ties going to the lower layer: the rule of
    :func:`stal.synthesis.compose.boxes_from_crops`). ``stamp`` int32, ``best`` float32
    and ``owner`` int64 (H, W) are scratch: a voxel's best weight and owner so far are
    valid where ``stamp == t + 1``."""
    A = planes.shape[0]
    mark = np.int32(t + 1)
    stampf, bestf, ownerf = stamp.reshape(-1), best.reshape(-1), owner.reshape(-1)
    for a in range(A):  # lower layers first: a strictly larger weight takes the voxel
        if planes[a, 0] < 0:
            continue
        base, y0, y1, x0, x1 = planes[a, 0], planes[a, 1], planes[a, 2], planes[a, 3], planes[a, 4]
        for y in range(y0, y1):
            row, pix = np.uint64(base + (y - y0) * (x1 - x0)), np.uint64(y * W + x0)
            for u in range(np.uint64(x1 - x0)):
                w, p = values[row + u], pix + u
                if w > 0 and (stampf[p] != mark or w > bestf[p]):
                    stampf[p], bestf[p], ownerf[p] = mark, w, a
    for a in range(A):
        if planes[a, 0] < 0:
            continue
        by0, by1, bx0, bx1 = 1 << 30, -1, 1 << 30, -1
        for y in range(planes[a, 1], planes[a, 2]):
            pix = np.uint64(y * W + planes[a, 3])
            for u in range(np.uint64(planes[a, 4] - planes[a, 3])):
                if stampf[pix + u] == mark and ownerf[pix + u] == a:
                    x = planes[a, 3] + np.int64(u)
                    by0, by1 = min(by0, y), max(by1, y)
                    bx0, bx1 = min(bx0, x), max(bx1, x)
        if by1 >= 0:
            boxes[a, 0], boxes[a, 1] = np.float32(bx0 / W), np.float32(by0 / H)
            boxes[a, 2], boxes[a, 3] = np.float32((bx1 + 1) / W), np.float32((by1 + 1) / H)
