"""Weakly supervised object localization metrics (the wsolevaluation protocol).

Semantics of Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right" (CVPR 2020), code ``wsolevaluation`` (``evaluation.py``: ``BoxEvaluator``,
``MaskEvaluator``, ``compute_bboxes_from_scoremaps``; ``util.py``:
``calculate_multiple_iou``):

* A score map (CAM) is min-max normalized to [0, 1] (all zero if constant or NaN), at
  the image's resolution.  For each CAM threshold ``t`` in ``np.arange(0, 1, 0.01)``,
  the map as uint8 (``floor(cam * 255)``) is binarized with ``pixel > int(t * max)``
  (OpenCV ``THRESH_BINARY``).  Each contour of the mask gives a box ``(x, y, x + w,
  y + h)`` clipped to ``(W - 1, H - 1)`` (the reference's own convention); an empty
  mask gives the box (0, 0, 0, 0).
* MaxBoxAccV2: all contours (outer borders of 8-connected components *and* the borders
  of their holes, as ``cv2.RETR_TREE`` returns them); an image is correct at ``t`` if
  some box has IoU >= delta (IoU with the +1 pixel convention) with some ground-truth
  box; accuracy at the best ``t``, for delta = 30, 50, 70 %, averaged.  MaxBoxAcc (v1):
  only the largest contour, delta = 50 %.
* GT-known Loc: box accuracy at IoU 50 % at the best CAM threshold (= MaxBoxAcc@50);
  Top-1 Loc: at that same threshold, the fraction of images whose top-1 class is
  correct *and* whose box is correct.
* PxAP: pixel-level average precision of the normalized CAM against a binary mask
  (histograms over the same thresholds; ``sum(precision[1:] * diff(recall))``);
  pixels of an optional ignore mask are left out.

All metrics are fractions in [0, 1]; wsolevaluation prints them x 100.

OpenCV is not a dependency: components come from run-length union-find in numpy.  The
box of a hole's contour is the hole's bounding box grown by one pixel (the contour runs
on the surrounding foreground pixels).  MaxBoxAcc v1 picks the component with the most
pixels, where OpenCV picks the largest polygon area of the traced contour: the two can
differ for shapes of nearly equal size.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from stal.masks import component_boxes

CAM_THRESHOLDS = np.arange(0, 1, 0.01)  # exactly the reference's list (float steps included)
IOU_THRESHOLDS = (30, 50, 70)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalize a score map (H, W) to [0, 1]; constant or NaN maps become zeros."""
    cam = np.asarray(cam, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    return cam / cam.max()


def scoremap_boxes(scoremap: np.ndarray, thresholds: np.ndarray = CAM_THRESHOLDS, *,
                   multi_contour: bool = True) -> list[np.ndarray]:
    """Boxes of the thresholded map, one int64 (k, 4) ``x0, y0, x1, y1`` array per threshold.

    Args:
        scoremap: float (H, W) normalized to [0, 1] (see normalize_scoremap).
        thresholds: CAM thresholds in [0, 1).
        multi_contour: all contours (MaxBoxAccV2) or only the largest one (v1).
    """
    if scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError("scoremap must be normalized to [0, 1] (see normalize_scoremap)")
    image = (scoremap * 255).astype(np.uint8)
    peak = int(image.max())
    cache: dict[int, np.ndarray] = {}
    out = []
    for t in thresholds:
        cut = int(t * peak)
        if cut not in cache:
            cache[cut] = _mask_boxes(image > cut, multi_contour=multi_contour)
        out.append(cache[cut])
    return out


def _mask_boxes(mask: np.ndarray, *, multi_contour: bool) -> np.ndarray:
    height, width = mask.shape
    boxes, sizes = component_boxes(mask, connectivity=8)
    if len(boxes) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        boxes = boxes[[int(np.argmax(sizes))]]
    else:
        holes, _ = component_boxes(~mask, connectivity=4)
        inner = (holes[:, 0] > 0) & (holes[:, 1] > 0) & (holes[:, 2] < width - 1) & (holes[:, 3] < height - 1)
        holes = holes[inner]  # holes touching the border are outside, not holes
        if len(holes):
            boxes = np.concatenate([boxes, holes + np.array([-1, -1, 1, 1])])
    # contour box (x, y, w, h) -> (x, y, x + w, y + h), clipped as the reference does
    x1 = np.minimum(boxes[:, 2] + 1, width - 1)
    y1 = np.minimum(boxes[:, 3] + 1, height - 1)
    return np.stack([boxes[:, 0], boxes[:, 1], x1, y1], axis=1).astype(np.int64)


def multiple_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU (+1 pixel convention) of every box of (A, 4) with every box of (B, 4): (A, B).
    Degenerate pairs (union <= 0) get 0, as in the reference."""
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = w * h
    union = ((a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
             + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1) - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class BoxAccumulator:
    """MaxBoxAcc(V2), GT-known Loc and Top-1 Loc over a set of images.

    Args:
        multi_contour: True for MaxBoxAccV2 (all contours), False for MaxBoxAcc.
        iou_thresholds: in percent; V2 uses (30, 50, 70), v1 (50,).
        thresholds: CAM thresholds.
    """

    def __init__(self, *, multi_contour: bool = True, iou_thresholds: tuple[int, ...] = IOU_THRESHOLDS,
                 thresholds: np.ndarray = CAM_THRESHOLDS) -> None:
        self.multi_contour = multi_contour
        self.iou_thresholds = tuple(iou_thresholds)
        self.thresholds = np.asarray(thresholds)
        self.num_correct = {d: np.zeros(len(self.thresholds), np.int64) for d in self.iou_thresholds}
        self.num_top1 = np.zeros(len(self.thresholds), np.int64)
        self.count = 0

    def add(self, cam: np.ndarray, gt_boxes: np.ndarray, *, class_correct: Optional[bool] = None) -> None:
        """One image.

        Args:
            cam: float (H, W) score map at the image's resolution (normalized here).
            gt_boxes: (G, 4) ``x0, y0, x1, y1`` pixels, inclusive corners (+1 convention).
            class_correct: whether the top-1 class is right (for Top-1 Loc); None = unknown.
        """
        boxes = scoremap_boxes(normalize_scoremap(cam), self.thresholds, multi_contour=self.multi_contour)
        best = np.array([multiple_iou(b, gt_boxes).max() for b in boxes])
        for d in self.iou_thresholds:
            self.num_correct[d] += best >= d / 100
        if class_correct:
            self.num_top1 += best >= 0.5
        self.count += 1

    def compute(self) -> dict:
        """``{"MaxBoxAcc": mean over IoU thresholds, "MaxBoxAcc@<d>": ..., "best_cam_threshold@<d>",
        "GT-known Loc", "Top-1 Loc"}``; the last two need 50 among the IoU thresholds."""
        if self.count == 0:
            raise ValueError("no image was added")
        out: dict = {}
        for d in self.iou_thresholds:
            accuracy = self.num_correct[d] / self.count
            out[f"MaxBoxAcc@{d}"] = float(accuracy.max())
            out[f"best_cam_threshold@{d}"] = float(self.thresholds[int(np.argmax(accuracy))])
        out["MaxBoxAcc"] = float(np.mean([out[f"MaxBoxAcc@{d}"] for d in self.iou_thresholds]))
        if 50 in self.iou_thresholds:
            best = int(np.argmax(self.num_correct[50]))
            out["GT-known Loc"] = float(self.num_correct[50][best] / self.count)
            out["Top-1 Loc"] = float(self.num_top1[best] / self.count)
        return out


class PxAPAccumulator:
    """Pixel average precision over a set of images (wsolevaluation's MaskEvaluator)."""

    def __init__(self, thresholds: np.ndarray = CAM_THRESHOLDS) -> None:
        self.edges = np.append(np.asarray(thresholds), [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(len(self.edges) - 1)
        self.false_hist = np.zeros(len(self.edges) - 1)

    def add(self, cam: np.ndarray, gt_mask: np.ndarray, ignore: Optional[np.ndarray] = None) -> None:
        """One image: cam float (H, W) (normalized here); gt_mask, ignore: bool (H, W)."""
        cam = normalize_scoremap(cam)
        gt_mask = np.asarray(gt_mask, dtype=bool)
        if gt_mask.shape != cam.shape:
            raise ValueError(f"mask shape {gt_mask.shape} differs from the score map's {cam.shape}")
        keep = ~np.asarray(ignore, dtype=bool) if ignore is not None else np.ones_like(gt_mask)
        self.true_hist += np.histogram(cam[gt_mask & keep], bins=self.edges)[0]
        self.false_hist += np.histogram(cam[~gt_mask & keep], bins=self.edges)[0]

    def compute(self) -> float:
        """PxAP in [0, 1]."""
        tp = self.true_hist[::-1].cumsum()
        fp = self.false_hist[::-1].cumsum()
        if tp[-1] <= 0:
            raise ValueError("no positive ground-truth pixel in the evaluated masks")
        predicted = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / predicted
        recall = tp / tp[-1]
        nonzero = predicted != 0
        return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum())


def gt_boxes_inclusive(box_xyxy: np.ndarray) -> np.ndarray:
    """int64 (G, 4) inclusive corners of float (G, 4) ``x1, y1, x2, y2`` input-pixel boxes (exclusive end)."""
    box = np.asarray(box_xyxy, np.float64).reshape(-1, 4)
    return np.stack([np.floor(box[:, 0]), np.floor(box[:, 1]), np.ceil(box[:, 2]) - 1,
                     np.ceil(box[:, 3]) - 1], 1).astype(np.int64)


__all__ = ["BoxAccumulator", "CAM_THRESHOLDS", "PxAPAccumulator", "gt_boxes_inclusive", "multiple_iou",
           "normalize_scoremap", "scoremap_boxes"]

