"""WSOL metrics (wsolevaluation protocol): boxes from score maps, MaxBoxAccV2, Top-1/GT-known Loc, PxAP."""

from __future__ import annotations

import numpy as np
import pytest

from stal.evaluation import wsol


def _blob(h: int, w: int, box: tuple, value: float = 1.0) -> np.ndarray:
    cam = np.zeros((h, w))
    x0, y0, x1, y1 = box
    cam[y0:y1 + 1, x0:x1 + 1] = value
    return cam


def test_boxes_of_components_holes_and_thresholds() -> None:
    cam = _blob(20, 30, (2, 3, 9, 8)) + _blob(20, 30, (15, 10, 20, 14), 0.5)
    cam[5, 5] = 0.0  # a one-pixel hole in the first blob
    boxes = wsol.scoremap_boxes(cam, np.array([0.0, 0.6]))
    # (x, y, x + w, y + h) of each contour: two blobs, then the hole's border (grown by one pixel)
    assert boxes[0].tolist() == [[2, 3, 10, 9], [15, 10, 21, 15], [4, 4, 7, 7]]
    assert boxes[1].tolist() == [[2, 3, 10, 9], [4, 4, 7, 7]]  # 0.5 * 255 = 127 <= int(0.6 * 255)
    assert wsol.scoremap_boxes(cam, np.array([0.6]), multi_contour=False)[0].tolist() == [[2, 3, 10, 9]]
    # a blob touching the right/bottom edge is clipped to (W - 1, H - 1); an empty mask gives zeros
    edge = wsol.scoremap_boxes(_blob(10, 10, (5, 5, 9, 9)), np.array([0.5]))[0]
    assert edge.tolist() == [[5, 5, 9, 9]]
    assert wsol.scoremap_boxes(np.zeros((4, 4)), np.array([0.5]))[0].tolist() == [[0, 0, 0, 0]]


def test_eight_connected_foreground() -> None:
    cam = np.zeros((6, 6))
    cam[1, 1] = cam[2, 2] = cam[3, 3] = 1.0  # diagonal: one 8-connected component
    assert wsol.scoremap_boxes(cam, np.array([0.5]))[0].tolist() == [[1, 1, 4, 4]]


def test_multiple_iou_plus_one() -> None:
    iou = wsol.multiple_iou(np.array([[0, 0, 9, 9], [0, 0, 4, 9]]), np.array([[0, 0, 9, 9]]))
    assert iou[:, 0].tolist() == [1.0, 0.5]


def test_max_box_acc_top1_and_gt_known() -> None:
    acc = wsol.BoxAccumulator()
    gt = np.array([[10, 10, 29, 29]])
    # image 1: a CAM that is exactly the object; image 2: a CAM about twice as wide; class wrong
    acc.add(_blob(64, 64, (10, 10, 28, 28)), gt, class_correct=True)
    acc.add(_blob(64, 64, (10, 10, 50, 28)), gt, class_correct=False)  # IoU 400 / 840
    out = acc.compute()
    assert out["MaxBoxAcc@30"] == 1.0 and out["MaxBoxAcc@50"] == 0.5 and out["MaxBoxAcc@70"] == 0.5
    assert out["MaxBoxAcc"] == pytest.approx(2 / 3)
    assert out["GT-known Loc"] == 0.5 and out["Top-1 Loc"] == 0.5
    v1 = wsol.BoxAccumulator(multi_contour=False, iou_thresholds=(50,))
    v1.add(_blob(64, 64, (10, 10, 28, 28)), gt, class_correct=False)
    assert v1.compute()["MaxBoxAcc"] == 1.0 and v1.compute()["Top-1 Loc"] == 0.0


def test_pxap() -> None:
    mask = _blob(16, 16, (4, 4, 11, 11)).astype(bool)
    perfect = wsol.PxAPAccumulator()
    perfect.add(mask * 0.9 + 0.05, mask)
    assert perfect.compute() == pytest.approx(1.0)
    # a CAM that ranks 4 background pixels above the object: precision 64/68 at full recall
    cam = mask * 0.5
    cam[0, :4] = 1.0
    noisy = wsol.PxAPAccumulator()
    noisy.add(cam, mask)
    assert noisy.compute() == pytest.approx(64 / 68)
    ignored = wsol.PxAPAccumulator()
    ignore = np.zeros_like(mask)
    ignore[0, :4] = True
    ignored.add(cam, mask, ignore)
    assert ignored.compute() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no positive"):
        wsol.PxAPAccumulator().compute()
