"""Small typed containers passed between synthesis, data loading and training.

Conventions (used everywhere in stal):
- A clip is ``float32 (T, H, W, 3)`` in [0, 1] inside synthesis (numpy, channels last, as
  decoders return frames) and ``float32 (3, T, H, W)`` once it is a tensor for a model.
- Dataset-level boxes are normalized ``x1, y1, x2, y2`` in [0, 1] (AVA convention);
  model-level boxes are pixels of the network input.
- Provenance: ``ids int16 (T, H, W)``, 0 = from no labelled source (background), k = source
  k (1-based); ``alpha float32 (K, T, H, W)``: the visible weight of source k in each voxel
  (its own alpha times whatever is composited above it), so that
  ``clip = (1 - alpha.sum(0)) * background + sum_k alpha[k] * source_k`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Provenance:
    """Where every voxel of a synthesized clip came from.

    ids: int16 (T, H, W); 0 = background, k = source k (the source with the largest visible
        weight in that voxel, among sources with weight > 0).
    alpha: float32 (K, T, H, W); visible weight of source k+1 (index 0 is source 1).
    """

    ids: np.ndarray
    alpha: np.ndarray

    @property
    def num_sources(self) -> int:
        return int(self.alpha.shape[0])

    def target_mask(self) -> np.ndarray:
        """float32 (T, H, W) in [0, 1]: the union of all labelled sources' visible weight."""
        if self.num_sources == 0:
            return np.zeros(self.ids.shape, np.float32)
        return np.clip(self.alpha.sum(0), 0.0, 1.0).astype(np.float32)


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
