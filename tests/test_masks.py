"""stal.masks: connected components (scipy.ndimage) against a breadth-first flood fill."""

from collections import deque

import numpy as np
import pytest

from stal.masks import component_boxes, label_components


def _flood_fill_boxes(mask, connectivity):
    """Reference: boxes (inclusive x0, y0, x1, y1) and sizes in row-major order of first pixel."""
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    seen, boxes, sizes = np.zeros_like(mask), [], []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        seen[y, x], queue, pixels = True, deque([(y, x)]), []
        while queue:
            cy, cx = queue.popleft()
            pixels.append((cy, cx))
            for dy, dx in steps:
                ny, nx = cy + dy, cx + dx
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        ys, xs = np.array(pixels).T
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        sizes.append(len(pixels))
    return np.array(boxes, np.int64).reshape(-1, 4), np.array(sizes, np.int64)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_component_boxes_equal_flood_fill(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(150):
        mask = rng.random(tuple(rng.integers(1, 24, 2))) < rng.uniform(0.1, 0.9)
        boxes, sizes = component_boxes(mask, connectivity=connectivity)
        ref_boxes, ref_sizes = _flood_fill_boxes(mask, connectivity)
        np.testing.assert_array_equal(boxes, ref_boxes)
        np.testing.assert_array_equal(sizes, ref_sizes)


def test_stack_labels_stay_in_their_frame():
    mask = np.zeros((2, 8, 10), bool)
    mask[0, 1:3, 1:3] = True
    mask[0, 3, 3] = True  # diagonal neighbour: same component with 8-connectivity
    mask[0, 6, 6:9] = True
    mask[1, :, :] = True  # overlaps frame 0's blobs, but frames never connect
    labels, count = label_components(mask, connectivity=8)
    assert count == 3 and labels.dtype == np.int64 and (labels[~mask] == 0).all()
    assert labels[0, 1, 1] == labels[0, 3, 3] != labels[0, 6, 6]
    assert len(np.unique(labels[1])) == 1 and labels[1, 0, 0] not in labels[0]
    assert label_components(mask[0], connectivity=4)[1] == 3  # the diagonal pixel is its own


def test_bad_connectivity():
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        component_boxes(np.ones((2, 2), bool), connectivity=6)
