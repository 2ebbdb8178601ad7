"""Connected components of boolean masks (scipy.ndimage), the one implementation in stal.

Used by the tube extraction (8-connected foreground blobs per frame) and by the WSOL box
extraction (8-connected CAM regions and 4-connected holes, the connectivities OpenCV's
``findContours`` traces in wsolevaluation). Coordinates are pixel indices, x = column,
y = row, (0, 0) the top-left pixel; boxes are inclusive.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    """Neighbourhood within one (H, W) image; leading axes (frames) never connect."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    plane = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    out = np.zeros((3,) * (ndim - 2) + (3, 3), bool)
    out[(1,) * (ndim - 2)] = plane
    return out


def label_components(mask: np.ndarray, *, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """(int64 labels of ``mask``'s shape (..., H, W), count): components of each (H, W) image,
    0 = background, 1..count unique over the whole stack and numbered in row-major order of
    their first pixel."""
    mask = np.asarray(mask, bool)
    labels, count = ndimage.label(mask, structure=_structure(mask.ndim, connectivity))
    return labels.astype(np.int64, copy=False), int(count)


def component_boxes(mask: np.ndarray, *, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (C, 4) int64 inclusive ``xmin, ymin, xmax, ymax`` and pixel counts (C,) of the
    components of a 2-D ``mask`` (H, W), in row-major order of their first pixel."""
    labels, count = label_components(mask, connectivity=connectivity)
    if count == 0:
        return np.empty((0, 4), np.int64), np.empty(0, np.int64)
    slices = ndimage.find_objects(labels)
    boxes = np.array([[sx.start, sy.start, sx.stop - 1, sy.stop - 1] for sy, sx in slices], np.int64)
    return boxes, np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
