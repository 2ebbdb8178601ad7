"""Small typed containers passed between synthesis, data loading and training.

Conventions (used everywhere in stal):
- A clip is ``float32 (T, H, W, 3)`` in [0, 1] inside synthesis (numpy, channels last, as
  decoders return frames) and ``float32 (3, T, H, W)`` once it is a tensor for a model.
- Dataset-level boxes are normalized ``x1, y1, x2, y2`` in [0, 1] (AVA convention);
  model-level boxes are pixels of the network input.
- Provenance: ``ids int16 (T, H, W)``, 0 = from no labelled source (background), k = source
  k (1-based); ``alpha float32 (K, T, H, W)``: the visible weight of source k in each voxel
  (its own alpha times whatever is composited above it), so that
  ``clip = (1 - alpha.sum(0)) * background + sum_k alpha[k] * source_k`` exactly. The
  compositor stores each source's weight as an :class:`AlphaCrop` (its bounding box only);
  ``Provenance.alpha`` builds the dense array on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class AlphaCrop:
    """The visible weight of one source in a cuboid of the clip.

    values: float32 (n, h, w); the weight at clip voxel (start + t, top + y, left + x).
    start, top, left: the cuboid's first frame, top row and left column (it lies inside the clip).
    """

    values: np.ndarray
    start: int
    top: int
    left: int

    @cached_property  # read for every pair of crops that might overlap
    def cuboid(self) -> tuple[int, int, int, int, int, int]:
        """(t0, t1, y0, y1, x0, x1): the clip voxels covered by ``values``."""
        n, h, w = self.values.shape
        return self.start, self.start + n, self.top, self.top + h, self.left, self.left + w


def crop_window(crop: AlphaCrop, cuboid: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """``crop``'s values over its intersection with ``cuboid`` (t0, t1, y0, y1, x0, x1) and that
    intersection relative to ``cuboid``'s corner; None when they do not meet. The window is a
    view: writing it writes the crop."""
    c0, c1, y0, y1, x0, x1 = crop.cuboid
    b0, b1, u0, u1, v0, v1 = cuboid
    t0, t1, r0, r1, s0, s1 = max(b0, c0), min(b1, c1), max(u0, y0), min(u1, y1), max(v0, x0), min(v1, x1)
    if t0 >= t1 or r0 >= r1 or s0 >= s1:
        return None
    window = crop.values[t0 - c0:t1 - c0, r0 - y0:r1 - y0, s0 - x0:s1 - x0]
    return window, (t0 - b0, t1 - b0, r0 - u0, r1 - u0, s0 - v0, s1 - v0)


class Provenance:
    """Where every voxel of a synthesized clip came from.

    ids: int16 (T, H, W); 0 = background, k = source k (the source with the largest visible
        weight in that voxel, among sources with weight > 0; on ties the lower k).
    alpha: float32 (K, T, H, W); visible weight of source k+1 (index 0 is source 1).

    Built either dense, ``Provenance(ids, alpha)``, or with :meth:`from_crops` from a list of
    :class:`AlphaCrop` cuboids per source (disjoint; zero weight outside them), which is what
    the compositor records: a dense alpha is K times the clip's voxel count in float32, mostly
    zeros, and writing it and the ids cost more than compositing the clip. The missing forms
    are derived on first use and kept; :meth:`source_alpha`, :meth:`weight_sum` and
    :meth:`target_mask` and :meth:`sources_alpha` use the crops directly.
    """

    def __init__(self, ids: np.ndarray, alpha: np.ndarray):
        self._ids, self._alpha, self._crops = ids, alpha, None
        self.shape = tuple(ids.shape)
        self._exclusive = False

    @classmethod
    def from_crops(cls, crops: list[list[AlphaCrop]], *, shape: tuple[int, int, int],
                   ids: np.ndarray | None = None, exclusive: bool = False) -> "Provenance":
        """Sparse provenance of a (T, H, W) = ``shape`` clip; ``ids`` (int16 (T, H, W), which the
        crops must imply) when the caller has them, else computed when first read.
        ``exclusive``: the caller guarantees at most one source has weight > 0 in any voxel
        (hard pastes), so the ids are built without comparing weights."""
        self = cls.__new__(cls)
        self._ids, self._alpha, self._crops = ids, None, [list(c) for c in crops]
        self.shape = tuple(shape)
        self._exclusive = exclusive
        return self

    def __repr__(self) -> str:
        return f"Provenance(shape={self.shape}, num_sources={self.num_sources})"

    @property
    def num_sources(self) -> int:
        return len(self._crops) if self._crops is not None else int(self._alpha.shape[0])

    @property
    def ids(self) -> np.ndarray:
        """int16 (T, H, W), from the crops on first use (see the class docstring for the rule)."""
        if self._ids is None:
            self._ids = _ids_from_crops(self._crops, self.shape, exclusive=self._exclusive)
        return self._ids

    @property
    def alpha(self) -> np.ndarray:
        """float32 (K, T, H, W), densified from the crops on first use."""
        if self._alpha is None:
            self._alpha = np.zeros((self.num_sources, *self.shape), np.float32)
            for k in range(self.num_sources):
                self._add_source(self._alpha[k], k)
        return self._alpha

    @property
    def crops(self) -> list[list[AlphaCrop]]:
        """Per source, its :class:`AlphaCrop` cuboids (from a dense alpha: one, the box of its
        nonzero weight over all frames)."""
        if self._crops is None:
            self._crops = [_crops_of(a) for a in self._alpha]
        return self._crops

    def source_alpha(self, k: int) -> np.ndarray:
        """float32 (T, H, W): the visible weight of source k+1 (0-based ``k``, as in ``alpha``)."""
        if self._alpha is not None:
            return self._alpha[k]
        out = np.zeros(self.shape, np.float32)
        self._add_source(out, k)
        return out

    def sources_alpha(self, sources: np.ndarray) -> np.ndarray:
        """float32 (len(sources), T, H, W): ``alpha[sources]`` (0-based int indices), from the
        crops of those sources only when the dense alpha was not built."""
        if self._alpha is not None:
            return np.ascontiguousarray(self._alpha[sources], np.float32)
        out = np.zeros((len(sources), *self.shape), np.float32)
        for row, k in enumerate(np.asarray(sources).tolist()):
            self._add_source(out[row], k)
        return out

    def source_totals(self) -> np.ndarray:
        """float64 (K,): each source's visible weight summed over the clip
        (``alpha.sum((1, 2, 3))``), from the crops when the dense alpha was not built."""
        if self._alpha is not None:
            return self._alpha.sum(axis=(1, 2, 3), dtype=np.float64)
        return np.array([sum(float(c.values.sum(dtype=np.float64)) for c in source) for source in self._crops],
                        np.float64).reshape(len(self._crops))

    def weight_sum(self) -> np.ndarray:
        """float32 (T, H, W): sum over sources of the visible weight (``alpha.sum(0)``)."""
        if self._alpha is not None:
            return self._alpha.sum(0, dtype=np.float32)
        out = np.zeros(self.shape, np.float32)
        for k in range(self.num_sources):
            self._add_source(out, k)
        return out

    def target_mask(self) -> np.ndarray:
        """float32 (T, H, W) in [0, 1]: the union of all labelled sources' visible weight."""
        return np.clip(self.weight_sum(), 0.0, 1.0, dtype=np.float32)

    def take_frames(self, idx: np.ndarray) -> "Provenance":
        """The provenance of frames ``idx`` (int64 indices into T), in the form(s) this one has."""
        if self._crops is None:
            return Provenance(self._ids[idx], self._alpha[:, idx])
        out = Provenance.from_crops([[_crop_frames(c, idx) for c in source] for source in self._crops],
                                    shape=(len(idx), *self.shape[1:]))
        out._ids = None if self._ids is None else self._ids[idx]
        return out

    def _add_source(self, out: np.ndarray, k: int) -> None:
        """out (T, H, W) += source k's crops, in place."""
        for crop in self._crops[k]:
            t0, t1, y0, y1, x0, x1 = crop.cuboid
            out[t0:t1, y0:y1, x0:x1] += crop.values


def _ids_from_crops(crops: list[list[AlphaCrop]], shape: tuple[int, int, int], *,
                    exclusive: bool = False) -> np.ndarray:
    """int16 (T, H, W): 1 + the argmax over sources of the visible weight where one is > 0, else 0.

    Sources are visited in order and take a voxel only with a strictly larger weight, so ties
    go to the lower source, as ``argmax`` does. ``exclusive`` (at most one source > 0 per
    voxel): each source takes its voxels > 0 without the comparison (a third of the time).
    """
    ids = np.zeros(shape, np.int16)
    if exclusive:
        for k, source in enumerate(crops):
            for crop in source:
                t0, t1, y0, y1, x0, x1 = crop.cuboid
                ids[t0:t1, y0:y1, x0:x1][crop.values > 0] = k + 1
        return ids
    best = np.zeros(shape, np.float32)  # the winning weight so far
    for k, source in enumerate(crops):
        for crop in source:
            t0, t1, y0, y1, x0, x1 = crop.cuboid
            best_w, ids_w = best[t0:t1, y0:y1, x0:x1], ids[t0:t1, y0:y1, x0:x1]
            ids_w[crop.values > best_w] = k + 1
            np.maximum(best_w, crop.values, out=best_w)
    return ids


def _crops_of(alpha: np.ndarray) -> list[AlphaCrop]:
    """[the AlphaCrop of a dense (T, H, W) weight: its nonzero box over all frames], or []."""
    rows, cols = np.flatnonzero(alpha.any((0, 2))), np.flatnonzero(alpha.any((0, 1)))
    if rows.size == 0:
        return []
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return [AlphaCrop(values=np.ascontiguousarray(alpha[:, y0:y1, x0:x1], np.float32), start=0, top=y0, left=x0)]


def _crop_frames(crop: AlphaCrop, idx: np.ndarray) -> AlphaCrop:
    """``crop`` seen through the frame selection ``idx``: a crop over all len(idx) frames."""
    t0, t1 = crop.cuboid[:2]
    values = np.zeros((len(idx), *crop.values.shape[1:]), np.float32)
    inside = (idx >= t0) & (idx < t1)
    values[inside] = crop.values[idx[inside] - t0]
    return AlphaCrop(values=values, start=0, top=crop.top, left=crop.left)


@dataclass
class Sample:
    """One synthesized or loaded clip with its labelled sources.

    clip: float32 (T, H, W, 3) in [0, 1].
    boxes: float32 (K, T, 4) normalized x1, y1, x2, y2 of each source in each frame;
        NaN rows where the source is not visible in that frame.
    labels: int64 (K,) action class of each source (0-based), or multi-hot (K, num_classes).
    keyframe: index into T of the annotated frame (boxes[:, keyframe] are the ROIs).
    provenance: per-voxel source ids and weights (None for real, unsynthesized data).
    background: the clip before anything was pasted, same shape and dtype as ``clip``
        (synthesizers fill it for previews and tests; None otherwise).
    info: where the sources came from (tube files, mixed clips); free-form, for previews.

    The synthesizers of :mod:`stal.synthesis` may also return ``clip`` (and ``background``)
    as uint8 (T, H, W, 3) in [0, 255], the loader's fast path: see :func:`clip_as_float`.
    """

    clip: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    keyframe: int
    provenance: Provenance | None = None
    background: np.ndarray | None = None
    info: dict | None = None


def clip_as_float(clip: np.ndarray) -> np.ndarray:
    """float32 (T, H, W, 3) in [0, 1] from a uint8 [0, 255] or float32 [0, 1] clip."""
    if clip.dtype == np.uint8:
        return clip.astype(np.float32) * np.float32(1.0 / 255.0)
    return clip.astype(np.float32, copy=False)
