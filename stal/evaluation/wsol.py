"""Weakly supervised object localization metrics (the wsolevaluation protocol).

Semantics of Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right" (CVPR 2020), code github.com/clovaai/wsolevaluation (``evaluation.py``:
``BoxEvaluator``, ``MaskEvaluator``, ``compute_bboxes_from_scoremaps``, ``get_mask``,
``resize_bbox``, ``calculate_multiple_iou``; ``inference.py``: ``CAMComputer``,
``normalize_scoremap``; ``data_loaders.py``: the metadata files):

* A CAM (h, w) is upsampled to the evaluation size with ``cv2.resize(...,
  INTER_CUBIC)`` in float64 (:func:`upsample_cam`), then min-max normalized to [0, 1]
  (all zero if constant or NaN).  The reference evaluates at the network input, 224 x 224
  (``_RESIZE_LENGTH``); boxes are scaled there with ``int()`` (:func:`resize_box`), masks
  with nearest-neighbour (:func:`resize_mask_nearest`).
* For each CAM threshold ``t`` in ``np.arange(0, 1, interval)`` (interval 0.001, the
  reference's ``evaluate_wsol`` / ``CAMComputer`` / ``config.py`` default; its
  ``evaluation.py`` command line alone defaults to 0.01), the map as uint8
  (``floor(cam * 255)``) is binarized with ``pixel > int(t * max)`` (``THRESH_BINARY``).
  Each contour of ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` gives the box
  ``(x, y, x + w, y + h)`` of its ``boundingRect``, clipped to ``(W - 1, H - 1)``; no
  contour gives the box (0, 0, 0, 0).
* MaxBoxAccV2: all contours (outer borders and hole borders); an image is correct at
  ``t`` if some box has IoU >= delta (+1 pixel convention) with some ground-truth box;
  the best ``t``'s accuracy for delta = 30, 50, 70 %, averaged.  MaxBoxAcc (v1): only
  ``max(contours, key=cv2.contourArea)`` (the polygon area through the border pixels'
  centres: a one-pixel-wide part has area 0, a ring counts its hole, ties go to the first
  contour in OpenCV's order, i.e. the component found last in raster order), delta = 50 %.
* GT-known Loc: box accuracy at IoU 50 % at the best CAM threshold (= MaxBoxAccV2@50);
  Top-1 Loc: at that same threshold, the fraction of images whose top-1 class is right
  *and* whose box is right.  wsolevaluation reports neither; these are the usual
  definitions on its boxes.
* PxAP: pixel average precision of the normalized CAM against the union of the instance
  masks, over histograms with the CAM thresholds as bin edges (``sum(precision[1:] *
  diff(recall))``); the pixels of the ignore box that are not foreground are left out
  (``ignore & ~foreground``; the object is never ignored).

All metrics are fractions in [0, 1]; wsolevaluation prints them x 100.

OpenCV (``pip install 'stal[wsol]'``) is used where installed; it is what the reference
calls.  Without it: the bicubic resize is a numpy replica of OpenCV's (float32 kernel
weights, replicated border; bit-identical to cv2 5.1 in the tests), nearest-neighbour
likewise; MaxBoxAccV2's boxes come from connected components (scipy: 8-connected
foreground, 4-connected holes, a hole's contour box is its box grown by one pixel), equal
to OpenCV's in the tests.  MaxBoxAcc v1 is then *approximate* (:func:`v1_approximation`):
no scipy / scikit-image routine reproduces ``cv2.contourArea`` and OpenCV's contour order,
so the component with the most pixels stands in for the largest contour.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional

import numpy as np
from PIL import Image

from stal.errors import DataError
from stal.masks import component_boxes
from stal.progress import progress

try:  # optional (the "wsol" extra): the reference's own routines
    import cv2
except ImportError:  # pragma: no cover - exercised by monkeypatching ``cv2 = None``
    cv2 = None

CAM_CURVE_INTERVAL = 0.001  # the reference's evaluate_wsol / CAMComputer / config.py default
IOU_THRESHOLDS = (30, 50, 70)
RESIZE_LENGTH = 224  # wsolevaluation's _RESIZE_LENGTH: CAMs, boxes and masks are evaluated at 224 x 224


def cam_thresholds(interval: float = CAM_CURVE_INTERVAL) -> np.ndarray:
    """``np.arange(0, 1, interval)``, exactly the reference's list (float steps included)."""
    if not 0 < interval < 1:
        raise ValueError(f"the CAM threshold step (cam_curve_interval) must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


CAM_THRESHOLDS = cam_thresholds()


def v1_approximation() -> Optional[str]:
    """Why MaxBoxAcc v1 is approximate here, or None where it is exact (OpenCV installed)."""
    if cv2 is not None:
        return None
    return ("MaxBoxAcc (v1) is approximate: OpenCV (cv2) is not installed, so the largest contour is "
            "taken as the 8-connected component with the most pixels, where wsolevaluation takes "
            "max(contours, key=cv2.contourArea) (polygon area through the border pixels' centres, ties in "
            "OpenCV's contour order); pip install 'stal[wsol]' for the exact rule")


# --- resampling, as the reference's cv2.resize --------------------------------------------

def _cubic_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (dst, 4) and weights (dst, 4) of OpenCV's INTER_CUBIC along one axis.

    OpenCV (imgproc/resize.cpp, ``resize`` / ``interpolateCubic``): scale = 1 / (dst / src) in
    double, source position ``(float)((d + 0.5) * scale - 0.5)``, Keys kernel A = -0.75 in
    float32 with the last weight ``1 - w0 - w1 - w2``, indices clamped (replicated border).
    """
    scale = 1.0 / (dst / src)
    pos = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    start = np.floor(pos).astype(np.int64)
    x = pos - start.astype(np.float32)
    a, one = np.float32(-0.75), np.float32(1.0)
    x1, y = x + one, one - x
    w0 = ((a * x1 - np.float32(5) * a) * x1 + np.float32(8) * a) * x1 - np.float32(4) * a
    w1 = ((a + np.float32(2)) * x - (a + np.float32(3))) * x * x + one
    w2 = ((a + np.float32(2)) * y - (a + np.float32(3))) * y * y + one
    w3 = one - w0 - w1 - w2
    index = np.clip(start[:, None] + np.arange(-1, 3), 0, src - 1)
    return index, np.stack([w0, w1, w2, w3], axis=1).astype(np.float64)


def _cubic_numpy(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's float64 INTER_CUBIC: rows then columns, taps summed left to right in double."""
    ix, wx = _cubic_taps(cam.shape[1], width)
    iy, wy = _cubic_taps(cam.shape[0], height)
    g = cam[:, ix]  # (h, width, 4)
    rows = g[..., 0] * wx[:, 0] + g[..., 1] * wx[:, 1] + g[..., 2] * wx[:, 2] + g[..., 3] * wx[:, 3]
    r = rows[iy]  # (height, 4, width)
    return (r[:, 0] * wy[:, :1] + r[:, 1] * wy[:, 1:2] + r[:, 2] * wy[:, 2:3] + r[:, 3] * wy[:, 3:])


def upsample_cam(cam: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """float64 (height, width) bicubic resize of a score map (h, w), as the reference's
    ``cv2.resize(cam, dsize, interpolation=cv2.INTER_CUBIC)`` on its float64 CAM (inference.py
    ``CAMComputer``; it passes the square input size, so (H, W) vs OpenCV's (W, H) order never
    mattered there).  Not normalized (see :func:`normalize_scoremap`)."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"a score map must be a non-empty 2-D (H, W) array, got shape {cam.shape}")
    if cam.shape == (height, width):
        return cam.copy()  # cv2.resize copies when the size is unchanged
    if cv2 is not None:
        return cv2.resize(cam, (int(width), int(height)), interpolation=cv2.INTER_CUBIC)
    return _cubic_numpy(cam, int(height), int(width))


def resize_mask_nearest(mask: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """(height, width) nearest-neighbour resize as ``cv2.resize(..., INTER_NEAREST)`` (the
    reference's ``load_mask_image``): source index ``floor(d * src / dst)`` (OpenCV's rule,
    not the pixel-centre rule of PIL), clamped."""
    mask = np.asarray(mask)
    if cv2 is not None:
        return cv2.resize(mask.astype(np.float32), (int(width), int(height)), interpolation=cv2.INTER_NEAREST)
    rows = np.minimum(np.floor(np.arange(height) * (1.0 / (height / mask.shape[0]))).astype(np.int64),
                      mask.shape[0] - 1)
    cols = np.minimum(np.floor(np.arange(width) * (1.0 / (width / mask.shape[1]))).astype(np.int64),
                      mask.shape[1] - 1)
    return mask[rows][:, cols].astype(np.float32)


def resize_box(box, *, image_size: tuple[int, int], resize_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` (inclusive corners) scaled from ``image_size`` (W, H) to ``resize_size``
    (W, H) as the reference's ``resize_bbox``: ``int(x * new_w / w)`` in float64, each corner alike
    (so x1 stays inclusive and 62.0 stays 62)."""
    x0, y0, x1, y1 = map(float, box)
    w, h = map(float, image_size)
    new_w, new_h = map(float, resize_size)
    return int(x0 * new_w / w), int(y0 * new_h / h), int(x1 * new_w / w), int(y1 * new_h / h)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalize a score map (H, W) to [0, 1] in float64; constant or NaN maps become
    zeros (the reference's inference.py ``normalize_scoremap``)."""
    cam = np.asarray(cam, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    return cam / cam.max()


# --- boxes from a score map -----------------------------------------------------------------

def _cuts(scoremap: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image (H, W), int cut per threshold): ``pixel > int(t * max(image))`` is the mask."""
    if scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError("scoremap must be normalized to [0, 1] (see normalize_scoremap)")
    image = (scoremap * 255).astype(np.uint8)
    # t (float64) * max (uint8) is float64 in the reference too; int() of a non-negative = floor
    return image, (np.asarray(thresholds, np.float64) * int(image.max())).astype(np.int64)


def scoremap_boxes(scoremap: np.ndarray, thresholds: np.ndarray = CAM_THRESHOLDS, *,
                   multi_contour: bool = True) -> list[np.ndarray]:
    """Boxes of the thresholded map, one int64 (k, 4) ``x0, y0, x1, y1`` array per threshold.

    Args:
        scoremap: float (H, W) normalized to [0, 1] (see normalize_scoremap).
        thresholds: CAM thresholds in [0, 1).
        multi_contour: all contours (MaxBoxAccV2) or only the largest one (v1; approximate
            without OpenCV, see :func:`v1_approximation`).
    """
    image, cuts = _cuts(scoremap, thresholds)
    cache = {int(c): _mask_boxes(image > c)[multi_contour] for c in np.unique(cuts)}
    return [cache[int(c)] for c in cuts]


def best_ious(cam: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, *,
              modes: tuple[bool, ...] = (True, False)) -> dict[bool, np.ndarray]:
    """{multi_contour: float (T,) best IoU of any predicted box with any of ``gt_boxes`` (G, 4) at
    each threshold} for an (H, W) ``cam`` (normalized here); contours are traced once per cut."""
    image, cuts = _cuts(normalize_scoremap(cam), thresholds)
    unique, inverse = np.unique(cuts, return_inverse=True)
    per_cut = {m: np.empty(len(unique)) for m in modes}
    for k, c in enumerate(unique):
        boxes = _mask_boxes(image > c)
        for m in modes:
            per_cut[m][k] = multiple_iou(boxes[m], gt_boxes).max()
    return {m: v[inverse.reshape(-1)] for m, v in per_cut.items()}


def _mask_boxes(mask: np.ndarray) -> dict[bool, np.ndarray]:
    """{True: int64 (k, 4) boxes of all contours, False: (1, 4) the largest contour's} of a bool (H, W) mask."""
    height, width = mask.shape
    rects = _contour_rects_opencv(mask) if cv2 is not None else _contour_rects_numpy(mask)
    out = {}
    for multi, r in zip((True, False), rects):
        if len(r) == 0:
            out[multi] = np.zeros((1, 4), dtype=np.int64)
            continue
        # boundingRect (x, y, w, h) -> (x, y, x + w, y + h), clipped as the reference does
        x1, y1 = np.minimum(r[:, 0] + r[:, 2], width - 1), np.minimum(r[:, 1] + r[:, 3], height - 1)
        out[multi] = np.stack([r[:, 0], r[:, 1], x1, y1], axis=1).astype(np.int64)
    return out


def _contour_rects_opencv(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, 4) ``x, y, w, h`` of every contour OpenCV traces, and (<= 1, 4) of the largest by
    ``cv2.contourArea`` (compute_bboxes_from_scoremaps)."""
    # [-2]: contours in both OpenCV 3 (image, contours, hierarchy) and 4+ (contours, hierarchy)
    contours = cv2.findContours(mask.astype(np.uint8) * 255, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    rects = np.array([cv2.boundingRect(c) for c in contours], np.int64).reshape(-1, 4)
    if len(contours) == 0:
        return rects, rects
    areas = [cv2.contourArea(c) for c in contours]
    return rects, rects[[areas.index(max(areas))]]  # as Python's max(..., key=): the first of equal areas


def _contour_rects_numpy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same from connected components; the largest approximate (module docstring)."""
    height, width = mask.shape
    boxes, sizes = component_boxes(mask, connectivity=8)
    if len(boxes) == 0:
        return np.empty((0, 4), np.int64), np.empty((0, 4), np.int64)
    largest = boxes[[int(np.argmax(sizes))]]
    holes, _ = component_boxes(~mask, connectivity=4)
    inner = (holes[:, 0] > 0) & (holes[:, 1] > 0) & (holes[:, 2] < width - 1) & (holes[:, 3] < height - 1)
    holes = holes[inner]  # background touching the border is outside, not a hole
    if len(holes):  # a hole's contour runs on the foreground pixels around it
        boxes = np.concatenate([boxes, holes + np.array([-1, -1, 1, 1])])
    xywh = lambda b: np.concatenate([b[:, :2], b[:, 2:] - b[:, :2] + 1], axis=1)  # noqa: E731
    return xywh(boxes), xywh(largest)


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


# --- accumulators -----------------------------------------------------------------------------

class BoxAccumulator:
    """MaxBoxAcc(V2), GT-known Loc and Top-1 Loc over a set of images (BoxEvaluator).

    Args:
        multi_contour: True for MaxBoxAccV2 (all contours), False for MaxBoxAcc v1.
        iou_thresholds: in percent; V2 uses (30, 50, 70), v1 (50,).  IoU 50 is always
            counted too, for GT-known and Top-1 Loc.
        thresholds: CAM thresholds (see :func:`cam_thresholds`).
    """

    def __init__(self, *, multi_contour: bool = True, iou_thresholds: tuple[int, ...] = IOU_THRESHOLDS,
                 thresholds: np.ndarray = CAM_THRESHOLDS) -> None:
        self.multi_contour = multi_contour
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        if not self.iou_thresholds:
            raise ValueError("iou_thresholds is empty")
        self.thresholds = np.asarray(thresholds, np.float64)
        self.num_correct = {d: np.zeros(len(self.thresholds), np.int64) for d in set(self.iou_thresholds) | {50}}
        self.num_top1 = np.zeros(len(self.thresholds), np.int64)
        self.count = 0

    @property
    def approximate(self) -> Optional[str]:
        """Why these numbers are not exactly the reference's, or None (see v1_approximation)."""
        return None if self.multi_contour else v1_approximation()

    def add(self, cam: np.ndarray, gt_boxes: np.ndarray, *, class_correct: Optional[bool] = None) -> None:
        """One image.

        Args:
            cam: float (H, W) score map at the evaluation size (normalized here).
            gt_boxes: (G, 4) ``x0, y0, x1, y1`` pixels, inclusive corners (+1 convention), G >= 1.
            class_correct: whether the top-1 class is right (for Top-1 Loc); None = unknown.
        """
        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
        if len(gt_boxes) == 0:
            raise ValueError("an image needs at least one ground-truth box")
        best = best_ious(cam, gt_boxes, self.thresholds, modes=(self.multi_contour,))[self.multi_contour]
        self.add_best_ious(best, class_correct=class_correct)

    def add_best_ious(self, best: np.ndarray, *, class_correct: Optional[bool] = None) -> None:
        """One image from its float (T,) best IoU per threshold (see :func:`best_ious`)."""
        for d in self.num_correct:
            self.num_correct[d] += best >= d / 100
        if class_correct:
            self.num_top1 += best >= 0.5
        self.count += 1

    def compute(self) -> dict:
        """``{"MaxBoxAcc": mean over IoU thresholds, "MaxBoxAcc@<d>": ..., "best_cam_threshold@<d>",
        "GT-known Loc", "Top-1 Loc"}`` (fractions); warns when approximate."""
        if self.count == 0:
            raise ValueError("no image was added")
        if self.approximate:
            warnings.warn(self.approximate, stacklevel=2)
        out: dict = {}
        for d in self.iou_thresholds:
            accuracy = self.num_correct[d] / self.count
            out[f"MaxBoxAcc@{d}"] = float(accuracy.max())
            out[f"best_cam_threshold@{d}"] = float(self.thresholds[int(np.argmax(accuracy))])
        out["MaxBoxAcc"] = float(np.mean([out[f"MaxBoxAcc@{d}"] for d in self.iou_thresholds]))
        best = int(np.argmax(self.num_correct[50]))
        out["GT-known Loc"] = float(self.num_correct[50][best] / self.count)
        out["Top-1 Loc"] = float(self.num_top1[best] / self.count)
        return out


class PxAPAccumulator:
    """Pixel average precision over a set of images (wsolevaluation's MaskEvaluator)."""

    def __init__(self, thresholds: np.ndarray = CAM_THRESHOLDS) -> None:
        # bins [0, bw), ..., [1 - bw, 1), [1, 2), [2, 3] as the reference sets them
        self.edges = np.append(np.asarray(thresholds, np.float64), [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(len(self.edges) - 1)
        self.false_hist = np.zeros(len(self.edges) - 1)

    def add(self, cam: np.ndarray, gt_mask: np.ndarray, ignore: Optional[np.ndarray] = None) -> None:
        """One image: cam float (H, W) (normalized here); gt_mask: bool (H, W), the union of the
        instance masks; ignore: bool (H, W), the ignore box as the dataset gives it — only its
        pixels outside the object are left out (the reference's ``get_mask``)."""
        cam = normalize_scoremap(cam)
        gt_mask = np.asarray(gt_mask, dtype=bool)
        if gt_mask.shape != cam.shape:
            raise ValueError(f"mask shape {gt_mask.shape} differs from the score map's {cam.shape}")
        negative = ~gt_mask
        if ignore is not None:
            ignore = np.asarray(ignore, dtype=bool)
            if ignore.shape != cam.shape:
                raise ValueError(f"ignore mask shape {ignore.shape} differs from the score map's {cam.shape}")
            negative &= ~ignore
        self.true_hist += np.histogram(cam[gt_mask], bins=self.edges)[0]
        self.false_hist += np.histogram(cam[negative], bins=self.edges)[0]

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


# --- wsolevaluation's metadata layout and a file of CAMs ------------------------------------

META_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
PREDICTIONS_FILE = "predictions.txt"  # stal's addition: ``<image_id>,<predicted class>`` for Top-1 Loc


@dataclass
class WsolMetadata:
    """One split's metadata (data_loaders.py ``configure_metadata`` and the ``get_*`` readers).

    ``boxes``: id -> inclusive ``x0, y0, x1, y1`` boxes in image pixels (box layout), or
    ``masks``: id -> (mask paths, ignore path or "") (mask layout, OpenImages).  ``id_line``:
    id -> its line in image_ids.txt, for error messages.  ``counts``: lines left out, and why.
    """

    folder: str
    image_ids: list[str]
    id_line: dict[str, int]
    class_labels: Optional[dict[str, int]] = None
    image_sizes: Optional[dict[str, tuple[int, int]]] = None
    boxes: Optional[dict[str, list[tuple[int, int, int, int]]]] = None
    masks: Optional[dict[str, tuple[list[str], str]]] = None
    predictions: Optional[dict[str, int]] = None
    counts: dict[str, int] = field(default_factory=dict)

    def where(self, image_id: str) -> str:
        return f"{os.path.join(self.folder, 'image_ids.txt')}:{self.id_line[image_id]}"


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end) of a metadata file; a missing file is a DataError."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found (wsolevaluation metadata holds {', '.join(META_FILES)})")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            yield lineno, line.rstrip("\r\n")


def _fields(path: str, lineno: int, line: str, layout: str) -> list[str]:
    """The comma-separated fields of ``line``, as many as ``layout`` names."""
    fields = line.split(",")
    if len(fields) != layout.count(",") + 1 or not fields[0]:
        raise DataError(f"{path}:{lineno}: expected {layout}, got {line!r}")
    return fields


def _ints(path: str, lineno: int, line: str, values: list[str], layout: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DataError(f"{path}:{lineno}: expected {layout} with integers, got {line!r}") from None


def _read_image_ids(folder: str) -> tuple[list[str], dict[str, int]]:
    path = os.path.join(folder, "image_ids.txt")
    ids, where = [], {}
    for lineno, line in _lines(path):
        if not line:
            raise DataError(f"{path}:{lineno}: empty image id (one image id per line)")
        if line in where:
            raise DataError(f"{path}:{lineno}: duplicate image id {line!r} (first at line {where[line]})")
        ids.append(line)
        where[line] = lineno
    if not ids:
        raise DataError(f"{path}: no image id")
    return ids, where


def _read_keyed(path: str, layout: str, meta: WsolMetadata, *, positive: bool = False) -> dict[str, list[int]]:
    """``{id: integer fields}`` of a one-line-per-image file, checked to cover every image id."""
    out: dict[str, list[int]] = {}
    lines: dict[str, int] = {}
    for lineno, line in _lines(path):
        fields = _fields(path, lineno, line, layout)
        values = _ints(path, lineno, line, fields[1:], layout)
        if positive and min(values) <= 0:
            raise DataError(f"{path}:{lineno}: expected {layout} with positive sizes, got {line!r}")
        if fields[0] in lines:
            raise DataError(f"{path}:{lineno}: duplicate image id {fields[0]!r} (first at line {lines[fields[0]]})")
        out[fields[0]], lines[fields[0]] = values, lineno
    _check_covers(path, out, meta)
    return out


def _check_covers(path: str, table: Mapping[str, object], meta: WsolMetadata) -> None:
    for image_id in meta.image_ids:
        if image_id not in table:
            raise DataError(f"{path}: no line for image id {image_id!r} ({meta.where(image_id)})")
    extra = sum(1 for k in table if k not in meta.id_line)
    if extra:
        meta.counts[f"{os.path.basename(path)}_unlisted_ids"] = extra


def _read_boxes(path: str, meta: WsolMetadata) -> dict[str, list[tuple[int, int, int, int]]]:
    layout = "<image_id>,<x0>,<y0>,<x1>,<y1>"
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for lineno, line in _lines(path):
        fields = _fields(path, lineno, line, layout)
        x0, y0, x1, y1 = _ints(path, lineno, line, fields[1:], layout)
        if min(x0, y0) < 0 or x1 < x0 or y1 < y0:  # util.py check_box_convention
            raise DataError(f"{path}:{lineno}: box needs 0 <= x0 <= x1 and 0 <= y0 <= y1, got {line!r}")
        boxes.setdefault(fields[0], []).append((x0, y0, x1, y1))
    _check_covers(path, boxes, meta)
    return boxes


def _read_mask_paths(path: str, meta: WsolMetadata) -> dict[str, tuple[list[str], str]]:
    layout = "<image_id>,<mask path>,<ignore path or nothing>"
    masks: dict[str, tuple[list[str], str]] = {}
    for lineno, line in _lines(path):
        image_id, mask_path, ignore_path = _fields(path, lineno, line, layout)
        if not mask_path:
            raise DataError(f"{path}:{lineno}: expected {layout}, got an empty mask path")
        if image_id in masks:
            if ignore_path:  # data_loaders.py get_mask_paths: one ignore mask per image, on its first line
                raise DataError(f"{path}:{lineno}: an ignore path only on an image's first line, got {line!r}")
            masks[image_id][0].append(mask_path)
        else:
            masks[image_id] = ([mask_path], ignore_path)
    _check_covers(path, masks, meta)
    return masks


def read_metadata(folder: str, *, masks: bool) -> WsolMetadata:
    """One split of wsolevaluation's metadata (``metadata/<dataset>/<split>/``).

    Files (comma separated, no header, ids are image paths and may contain ``/``):
    ``image_ids.txt`` (``<id>``), ``image_sizes.txt`` (``<id>,<w>,<h>``; box layout),
    ``localization.txt`` (``<id>,<x0>,<y0>,<x1>,<y1>`` inclusive pixel corners, one line per
    box; or with ``masks`` ``<id>,<mask>,<ignore>``), and for Top-1 Loc ``class_labels.txt``
    (``<id>,<class>``) with stal's ``predictions.txt`` (``<id>,<predicted class>``).
    """
    ids, where = _read_image_ids(folder)
    meta = WsolMetadata(folder=folder, image_ids=ids, id_line=where)
    j = lambda name: os.path.join(folder, name)  # noqa: E731
    if masks:
        meta.masks = _read_mask_paths(j("localization.txt"), meta)
    else:
        sizes = _read_keyed(j("image_sizes.txt"), "<image_id>,<width>,<height>", meta, positive=True)
        meta.image_sizes = {k: (v[0], v[1]) for k, v in sizes.items()}
        meta.boxes = _read_boxes(j("localization.txt"), meta)
    if os.path.exists(j(PREDICTIONS_FILE)):
        labels = _read_keyed(j("class_labels.txt"), "<image_id>,<class>", meta)
        predicted = _read_keyed(j(PREDICTIONS_FILE), "<image_id>,<predicted class>", meta)
        meta.class_labels = {k: v[0] for k, v in labels.items()}
        meta.predictions = {k: v[0] for k, v in predicted.items()}
    return meta


def open_cams(path: str) -> Mapping[str, np.ndarray]:
    """The ``.npz`` archive (``np.savez``) mapping image ids to score maps, read lazily without pickle."""
    try:
        cams = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read score maps: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if not isinstance(cams, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive (np.savez(path, **{{image_id: cam}})), got one array")
    return cams


def load_cam(cams: Mapping[str, np.ndarray], image_id: str, *, cams_path: str, meta: WsolMetadata) -> np.ndarray:
    """float64 (h, w) score map of ``image_id``; a missing, non-2-D, non-numeric or infinite map is a DataError."""
    if image_id not in cams:
        raise DataError(f"{cams_path}: no score map for image id {image_id!r} ({meta.where(image_id)})")
    try:
        cam = cams[image_id]
    except ValueError as exc:  # object arrays (pickles) are refused
        raise DataError(f"{cams_path}: score map {image_id!r}: {exc}") from None
    if cam.ndim != 2 or cam.size == 0 or not (np.issubdtype(cam.dtype, np.integer)
                                               or np.issubdtype(cam.dtype, np.floating)):
        raise DataError(f"{cams_path}: score map {image_id!r} has shape {cam.shape} and dtype {cam.dtype}; "
                        f"expected a non-empty 2-D (H, W) array of numbers")
    cam = cam.astype(np.float64)
    if np.isinf(cam).any():
        raise DataError(f"{cams_path}: score map {image_id!r} has infinite values")
    return cam  # NaN maps are allowed: normalize_scoremap makes them zeros, as the reference does


def read_mask(path: str, *, size: int) -> np.ndarray:
    """bool (size, size): a mask image read as grey (``cv2.imread(..., IMREAD_GRAYSCALE)``),
    resized nearest-neighbour, ``> 0.5`` (evaluation.py ``load_mask_image`` / ``get_mask``)."""
    grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE) if cv2 is not None and os.path.isfile(path) else None
    if grey is None:
        try:
            with Image.open(path) as img:
                grey = np.asarray(img.convert("L"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read mask {path}: {exc}") from None
    return resize_mask_nearest(grey.astype(np.float32), height=size, width=size) > 0.5


def evaluate_cams(*, meta: WsolMetadata, cams: Mapping[str, np.ndarray], cams_path: str,
                  cam_curve_interval: float = CAM_CURVE_INTERVAL, iou_thresholds: tuple[int, ...] = IOU_THRESHOLDS,
                  mask_root: Optional[str] = None, resize_length: int = RESIZE_LENGTH) -> dict:
    """wsolevaluation's numbers for ``cams`` (id -> (h, w) score map) on ``meta``, in percent.

    Each map is upsampled to ``resize_length`` squared (bicubic), normalized and scored against
    the boxes scaled to that size (box layout: MaxBoxAccV2 and its parts, MaxBoxAcc v1,
    gt_known_loc, top1_loc with predictions) or the masks (``mask_root``: PxAP).
    """
    if (meta.masks is not None) != (mask_root is not None):
        raise ValueError("mask_root goes with metadata read with masks=True, and only with it")
    thresholds = cam_thresholds(cam_curve_interval)
    boxes_v2 = BoxAccumulator(multi_contour=True, iou_thresholds=iou_thresholds, thresholds=thresholds)
    boxes_v1 = BoxAccumulator(multi_contour=False, iou_thresholds=(50,), thresholds=thresholds)
    pxap = PxAPAccumulator(thresholds)
    size = (resize_length, resize_length)
    for image_id in progress(meta.image_ids, desc="WSOL", unit="img"):
        cam = load_cam(cams, image_id, cams_path=cams_path, meta=meta)
        cam = normalize_scoremap(upsample_cam(cam, height=resize_length, width=resize_length))
        if meta.masks is not None:
            paths, ignore_path = meta.masks[image_id]
            mask = np.any([read_mask(os.path.join(mask_root, p), size=resize_length) for p in paths], axis=0)
            ignore = read_mask(os.path.join(mask_root, ignore_path), size=resize_length) if ignore_path else None
            pxap.add(cam, mask, ignore)
            continue
        gt = np.array([resize_box(b, image_size=meta.image_sizes[image_id], resize_size=size)
                       for b in meta.boxes[image_id]], np.int64)
        ok = None if meta.predictions is None else meta.predictions[image_id] == meta.class_labels[image_id]
        best = best_ious(cam, gt, thresholds)  # contours traced once for V2 and v1
        boxes_v2.add_best_ious(best[True], class_correct=ok)
        boxes_v1.add_best_ious(best[False])
    out: dict = {"num_images": len(meta.image_ids), "cam_curve_interval": cam_curve_interval,
                 "resize_length": resize_length, "units": "percent", "approximate": {}}
    if meta.masks is not None:
        out["PxAP"] = 100.0 * pxap.compute()
    else:
        out.update(_box_results(boxes_v2, boxes_v1, top1=meta.predictions is not None))
    extra = sum(1 for k in cams if k not in meta.id_line)
    out["counts"] = {**meta.counts, **({"cams_unlisted_ids": extra} if extra else {})}
    return out


def _box_results(boxes_v2: BoxAccumulator, boxes_v1: BoxAccumulator, *, top1: bool) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note goes into the result instead
        v2, v1 = boxes_v2.compute(), boxes_v1.compute()
    out = {"MaxBoxAccV2": 100.0 * v2["MaxBoxAcc"],
           **{f"MaxBoxAccV2@{d}": 100.0 * v2[f"MaxBoxAcc@{d}"] for d in boxes_v2.iou_thresholds},
           "MaxBoxAcc": 100.0 * v1["MaxBoxAcc"], "gt_known_loc": 100.0 * v2["GT-known Loc"],
           "top1_loc": 100.0 * v2["Top-1 Loc"] if top1 else None,
           "best_cam_threshold": {**{f"MaxBoxAccV2@{d}": v2[f"best_cam_threshold@{d}"]
                                     for d in boxes_v2.iou_thresholds},
                                  "MaxBoxAcc": v1["best_cam_threshold@50"]}}
    out["approximate"] = {"MaxBoxAcc": boxes_v1.approximate} if boxes_v1.approximate else {}
    return out


__all__ = ["BoxAccumulator", "CAM_CURVE_INTERVAL", "CAM_THRESHOLDS", "IOU_THRESHOLDS", "META_FILES",
           "PREDICTIONS_FILE", "PxAPAccumulator", "RESIZE_LENGTH", "WsolMetadata", "best_ious", "cam_thresholds",
           "evaluate_cams", "load_cam", "multiple_iou", "normalize_scoremap", "open_cams", "read_mask",
           "read_metadata", "resize_box", "resize_mask_nearest", "scoremap_boxes", "upsample_cam",
           "v1_approximation"]
