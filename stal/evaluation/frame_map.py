"""AVA frame-mAP with the semantics of the official evaluator, vectorised with numpy.

The official evaluator is ActivityNet's ``Evaluation/get_ava_performance.py`` on
top of the TensorFlow object-detection API (``object_detection_evaluation.py``,
``per_image_evaluation.py``, ``metrics.py``, ``np_box_ops.py``); PySlowFast and
mmaction2 ship copies of it.  What it computes, and what is reproduced here:

* Only classes in the label map are evaluated; rows with other action ids are
  dropped when the CSVs are read.  Keyframes listed as excluded are dropped from
  both ground truth and detections.
* Detections whose box has ``x2 <= x1`` or ``y2 <= y1`` are removed before
  matching (``PerImageEvaluation._remove_invalid_boxes``); they are neither TP
  nor FP.  Degenerate ground-truth boxes are kept and counted.
* Per keyframe and class, detections are visited in descending score order.
  Each takes the ground-truth box of highest IoU in that keyframe (``np.argmax``:
  the first one on ties); it is a TP iff that IoU >= threshold and that box is
  not matched yet, else a FP.  There is no fall-back to the second-best box.
  Detections in keyframes without ground truth of the class (or without any
  ground truth) are FPs.
* IoU in normalized coordinates, no +1 convention, computed with the same
  float64 operations as ``np_box_ops.iou`` (so ties with the threshold agree).
* Per class, all detections are ranked by score; precision and recall as in
  ``metrics.compute_precision_recall``; AP as ``metrics.compute_average_precision``
  (VOC all-point: recall padded with 0 and 1, precision padded with 0 and 0, made
  non-increasing from the right, summed over the recall steps).  A class with
  ground truth but no detection has AP 0; a class without ground truth has no AP
  (None here, NaN there) and is left out of the mean, which is ``np.nanmean``
  over the AP array indexed by class id exactly as the official code builds it.

Order of tied scores (the only place where results may differ):

* Here every sort is stable: among equal scores, the detection that comes first
  in the detection table (file order) is visited first, both in per-keyframe
  matching and in the per-class ranking.  Results are deterministic.
* The official ranking is ``np.argsort(scores)[::-1]`` (quicksort, not stable):
  tie order depends on the numpy version and array length (for arrays of at most
  16 elements it is reversed input order).  Its per-keyframe order is a stable
  sort of a heap's array order (ActivityNet) or file order without sorting at
  all (PySlowFast).  With distinct scores per class all of these agree with this
  module bit for bit; with ties they may differ by about 1e-4 AP.
* The ground-truth box taken on an IoU tie (two boxes at exactly the same IoU) is
  the first one in the ground-truth table, as in PySlowFast; ActivityNet's
  reader reorders ground truth through a heap and may take the other one.

ActivityNet additionally keeps only the 50 highest-scoring detections per
keyframe (``read_csv(..., capacity=50)``); PySlowFast and mmaction2 do not.
``max_dets_per_keyframe=50`` reproduces that cap (ties at the cut: file order).

Implementation: detections and ground truth are grouped by (class, keyframe) with
integer codes and ``searchsorted``; all (detection, same-group ground truth)
pairs are expanded in chunks and their IoUs computed at once.  Because a
detection's target box does not depend on earlier matches (no fall-back), a
detection is a TP iff its IoU with its target reaches the threshold and it is the
highest-ranked such detection for that target, which is a sort, not a loop.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np

from stal.data.ava_format import (
    AvaTable,
    PathLike,
    read_ava_csv,
    read_excluded,
    read_labelmap,
)

# Number of (detection, ground truth) pairs expanded at once: bounds memory at about
# 20 float64 arrays of this length (a few hundred MB) whatever the number of rows.
_PAIRS_PER_CHUNK = 4_000_000
# Beyond this class id the official per-id AP array is not materialised (see _mean_ap).
_MAX_DENSE_CLASS_ID = 100_000


def ava_frame_map(
    gt: AvaTable,
    det: AvaTable,
    labelmap: dict[int, str],
    *,
    excluded: Iterable[tuple[str, int]] = frozenset(),
    iou_threshold: float = 0.5,
    max_dets_per_keyframe: Optional[int] = None,
) -> dict:
    """AVA frame-mAP of ``det`` against ``gt``, with the official semantics (module doc).

    Args:
        gt: ground-truth rows (``extra`` = person id, unused), boxes normalized
            ``x1, y1, x2, y2``.
        det: detection rows (``extra`` = score, must be finite), same box convention.
        labelmap: ``{class_id: name}``; only these classes are evaluated.  Ids must
            be >= 1, as in the official evaluator.
        excluded: ``(video_id, timestamp)`` keyframes dropped from both tables.
        iou_threshold: a match needs IoU >= this.
        max_dets_per_keyframe: keep only this many highest-scoring detections per
            keyframe (over all evaluated classes), as ActivityNet does with 50;
            None keeps all.

    Returns:
        ``{"frame_mAP": float, "per_class_AP": {str(id): float or None},
        "num_gt": {str(id): int}, "num_det": {str(id): int}}``; classes in
        increasing id order.  ``frame_mAP`` is NaN when no class has ground truth.
        ``num_det`` counts the detections that took part (after the filters).
    """
    class_ids = _check_labelmap(labelmap)
    _check_scores(det)
    gt = gt.take(np.isin(gt.action, class_ids))
    det = det.take(np.isin(det.action, class_ids))
    gt_frame, det_frame, excluded_codes, num_frames = _frame_codes(gt, det, excluded)

    keep_gt = ~np.isin(gt_frame, excluded_codes)
    gt, gt_frame = gt.take(keep_gt), gt_frame[keep_gt]
    keep_det = ~np.isin(det_frame, excluded_codes)
    if max_dets_per_keyframe is not None:
        keep_det &= _top_k_per_frame(det_frame, det.extra, max_dets_per_keyframe)
    keep_det &= _valid_boxes(det.boxes)
    det, det_frame = det.take(keep_det), det_frame[keep_det]

    num_classes = len(class_ids)
    if num_classes * num_frames >= 2**62:
        raise ValueError("timestamps too large to index (class, keyframe) groups in int64")
    gt_class = np.searchsorted(class_ids, gt.action)
    det_class = np.searchsorted(class_ids, det.action)
    scores = det.extra.astype(np.float64)
    # Stable: ties keep table order (module doc). rank[i] = position of detection i.
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))

    is_tp = _match(
        gt_group=gt_class * num_frames + gt_frame,
        gt_boxes=gt.boxes.astype(np.float64),
        det_group=det_class * num_frames + det_frame,
        det_boxes=det.boxes.astype(np.float64),
        det_rank=rank,
        iou_threshold=iou_threshold,
    )

    num_gt = np.bincount(gt_class, minlength=num_classes)
    num_det = np.bincount(det_class, minlength=num_classes)
    per_class_ap = _per_class_ap(class_ids, is_tp, order, det_class, num_gt, num_det)

    return {
        "frame_mAP": _mean_ap(class_ids, per_class_ap),
        "per_class_AP": per_class_ap,
        "num_gt": {str(k): int(v) for k, v in zip(class_ids.tolist(), num_gt.tolist())},
        "num_det": {str(k): int(v) for k, v in zip(class_ids.tolist(), num_det.tolist())},
    }


def ava_frame_map_files(
    gt_csv: PathLike,
    det_csv: PathLike,
    labelmap_pbtxt: PathLike,
    excluded_csv: Optional[PathLike] = None,
    iou_threshold: float = 0.5,
    *,
    max_dets_per_keyframe: Optional[int] = None,
) -> dict:
    """:func:`ava_frame_map` on AVA files (ground-truth CSV, detection CSV, label map,
    optional excluded-timestamps CSV).

    The CSVs are read in float64, the precision the official evaluator parses them
    with, so IoUs and scores are bit-identical to its own.

    Raises:
        stal.errors.DataError (AvaFormatError) for a missing or malformed file.
    """
    labelmap = read_labelmap(labelmap_pbtxt)
    excluded = read_excluded(excluded_csv) if excluded_csv is not None else set()
    gt = read_ava_csv(gt_csv, float_dtype=np.float64)
    det = read_ava_csv(det_csv, float_dtype=np.float64)
    return ava_frame_map(
        gt, det, labelmap,
        excluded=excluded,
        iou_threshold=iou_threshold,
        max_dets_per_keyframe=max_dets_per_keyframe,
    )


# ----------------------------------------------------------------------------------------
# AP and IoU: the official formulas
# ----------------------------------------------------------------------------------------


def voc_average_precision(tp_sorted: np.ndarray, num_gt: int) -> float:
    """VOC all-point AP of detections already ranked by descending score.

    Same arithmetic as the TF object-detection API's ``compute_precision_recall``
    followed by ``compute_average_precision``, so the result is bit-identical for the
    same ranking.

    Args:
        tp_sorted: bool (K,), True where the k-th ranked detection is a true positive.
        num_gt: number of ground-truth boxes of the class (> 0).

    Returns:
        AP in [0, 1]; 0.0 when there is no detection.
    """
    if num_gt <= 0:
        raise ValueError("num_gt must be positive; a class without ground truth has no AP")
    if tp_sorted.size == 0:
        return 0.0
    tp = tp_sorted.astype(np.int64)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp)
    precision = cum_tp.astype(np.float64) / (cum_tp + cum_fp)
    recall = cum_tp.astype(np.float64) / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    # Precision envelope: the best precision at this recall or any higher one.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row i of ``boxes_a`` with row i of ``boxes_b``.

    Args:
        boxes_a, boxes_b: float64 (P, 4) normalized ``x1, y1, x2, y2``.

    Returns:
        float64 (P,).  No +1 convention.  The operations and their order are those
        of ``np_box_ops.iou`` (intersection heights times widths; union = area_a +
        area_b - intersection), so values equal to the threshold compare the same.
    """
    ax1, ay1, ax2, ay2 = boxes_a.T
    bx1, by1, bx2, by2 = boxes_b.T
    heights = np.maximum(0.0, np.minimum(ay2, by2) - np.maximum(ay1, by1))
    widths = np.maximum(0.0, np.minimum(ax2, bx2) - np.maximum(ax1, bx1))
    intersection = heights * widths
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (area_a + area_b - intersection)


def _per_class_ap(
    class_ids: np.ndarray,
    is_tp: np.ndarray,
    order: np.ndarray,
    det_class: np.ndarray,
    num_gt: np.ndarray,
    num_det: np.ndarray,
) -> dict[str, Optional[float]]:
    """{str(class id): AP, or None without ground truth}.

    Args:
        class_ids: int64 (C,) sorted evaluated ids; det_class indexes into it.
        is_tp: bool (D,); order: int64 (D,) detections in rank order.
        det_class: int64 (D,); num_gt, num_det: int64 (C,) counts per class.
    """
    # Detections grouped by class, each group in rank order.
    by_class = order[np.argsort(det_class[order], kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(num_det)])
    per_class_ap: dict[str, Optional[float]] = {}
    for c, class_id in enumerate(class_ids.tolist()):
        if num_gt[c] == 0:
            per_class_ap[str(class_id)] = None
            continue
        tp_sorted = is_tp[by_class[bounds[c]:bounds[c + 1]]]
        per_class_ap[str(class_id)] = voc_average_precision(tp_sorted, int(num_gt[c]))
    return per_class_ap


# ----------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------


def _match(
    *,
    gt_group: np.ndarray,
    gt_boxes: np.ndarray,
    det_group: np.ndarray,
    det_boxes: np.ndarray,
    det_rank: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """TP flags (D,) of detections matched greedily within their (class, keyframe) group.

    Args:
        gt_group, det_group: int64 (G,), (D,) group codes (class * frames + frame).
        gt_boxes, det_boxes: float64 (G, 4), (D, 4) normalized x1, y1, x2, y2.
        det_rank: int64 (D,), visiting order (0 = highest score).
        iou_threshold: minimum IoU of a match.
    """
    num_det = len(det_group)
    # Ground truth sorted by group, table order kept inside a group: np.argmax over a
    # group's boxes then picks the first box of the table on IoU ties.
    gt_order = np.argsort(gt_group, kind="stable")
    gt_sorted_group = gt_group[gt_order]
    gt_sorted_boxes = gt_boxes[gt_order]
    first = np.searchsorted(gt_sorted_group, det_group, side="left")
    count = np.searchsorted(gt_sorted_group, det_group, side="right") - first

    target = np.full(num_det, -1, dtype=np.int64)  # index into the sorted ground truth
    best_iou = np.full(num_det, -np.inf)
    for lo, hi in _chunks(count, _PAIRS_PER_CHUNK):
        _best_gt_in_chunk(
            lo, hi, first, count, det_boxes, gt_sorted_boxes, target, best_iou
        )

    # A detection claims its target box iff it reaches the threshold; the box goes to
    # the best-ranked claimant, every later claimant is a FP (no fall-back).
    claims = np.flatnonzero(best_iou >= iou_threshold)
    by_target = claims[np.lexsort((det_rank[claims], target[claims]))]
    winners = by_target[_run_starts(target[by_target])]
    is_tp = np.zeros(num_det, dtype=bool)
    is_tp[winners] = True
    return is_tp


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """(K,) bool: True at the first element of each run of equal keys."""
    starts = np.ones(len(sorted_keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def _chunks(count: np.ndarray, pairs_per_chunk: int) -> Iterable[tuple[int, int]]:
    """Consecutive detection ranges [lo, hi) with about ``pairs_per_chunk`` pairs each."""
    ends = np.cumsum(count)
    lo = 0
    while lo < len(count):
        start_pairs = ends[lo - 1] if lo > 0 else 0
        hi = int(np.searchsorted(ends, start_pairs + pairs_per_chunk, side="right"))
        hi = max(hi, lo + 1)  # one detection with more pairs than the budget still runs
        yield lo, hi
        lo = hi


def _best_gt_in_chunk(
    lo: int,
    hi: int,
    first: np.ndarray,
    count: np.ndarray,
    det_boxes: np.ndarray,
    gt_sorted_boxes: np.ndarray,
    target: np.ndarray,
    best_iou: np.ndarray,
) -> None:
    """Fill ``target`` and ``best_iou`` for detections lo..hi-1 that have ground truth."""
    idx = lo + np.flatnonzero(count[lo:hi] > 0)
    if len(idx) == 0:
        return
    n_pairs = count[idx]
    pair_det = np.repeat(idx, n_pairs)
    seg_start = np.concatenate([[0], np.cumsum(n_pairs)[:-1]])
    within = np.arange(len(pair_det)) - np.repeat(seg_start, n_pairs)
    pair_gt = np.repeat(first[idx], n_pairs) + within
    iou = paired_iou(det_boxes[pair_det], gt_sorted_boxes[pair_gt])
    seg_max = np.maximum.reduceat(iou, seg_start)
    # First pair of each segment reaching the segment maximum = np.argmax semantics.
    at_max = np.flatnonzero(iou == np.repeat(seg_max, n_pairs))
    seg_of = np.repeat(np.arange(len(idx)), n_pairs)[at_max]
    firsts = at_max[_run_starts(seg_of)]
    target[idx] = pair_gt[firsts]
    best_iou[idx] = iou[firsts]


# ----------------------------------------------------------------------------------------
# Grouping and filters
# ----------------------------------------------------------------------------------------


def _frame_codes(
    gt: AvaTable, det: AvaTable, excluded: Iterable[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Integer keyframe codes shared by both tables.

    Returns:
        gt codes (G,), det codes (D,), codes of the excluded keyframes that occur,
        and the number of possible codes (codes are in [0, that)).
    """
    # A dict is far faster than sorting a million Python strings with np.unique.
    video_code = {v: i for i, v in enumerate(dict.fromkeys(
        list(gt.video.tolist()) + list(det.video.tolist())))}
    max_ts = 0
    for table in (gt, det):
        if len(table):
            if table.timestamp.min() < 0:
                raise ValueError("timestamps must be non-negative")
            max_ts = max(max_ts, int(table.timestamp.max()))
    span = max_ts + 1
    if max(len(video_code), 1) * span >= 2**62:
        raise ValueError("timestamps too large to index keyframes in int64")

    def codes(table: AvaTable) -> np.ndarray:
        v = np.fromiter(map(video_code.__getitem__, table.video.tolist()), np.int64, len(table))
        return v * span + table.timestamp

    excluded_codes = np.array(
        [video_code[v] * span + int(t) for v, t in excluded
         if v in video_code and 0 <= int(t) < span],
        dtype=np.int64,
    )
    return codes(gt), codes(det), excluded_codes, max(len(video_code), 1) * span


def _top_k_per_frame(frame: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """(D,) bool: among the rows of each keyframe, the k highest scores (ties: table order)."""
    if k < 0:
        raise ValueError(f"max_dets_per_keyframe must be >= 0, got {k}")
    order = np.lexsort((np.arange(len(frame)), -scores.astype(np.float64), frame))
    sorted_frame = frame[order]
    group_start = np.searchsorted(sorted_frame, sorted_frame, side="left")
    position = np.arange(len(order)) - group_start
    keep = np.zeros(len(frame), dtype=bool)
    keep[order[position < k]] = True
    return keep


def _valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: positive width and height (the official evaluator drops the others)."""
    return (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])


def _check_labelmap(labelmap: dict[int, str]) -> np.ndarray:
    """Sorted int64 class ids; the official evaluator requires a non-empty, 1-based map."""
    if not labelmap:
        raise ValueError("the label map is empty: no class to evaluate")
    class_ids = np.array(sorted(int(k) for k in labelmap), dtype=np.int64)
    if class_ids[0] < 1:
        raise ValueError(f"class ids must be >= 1 (as in the official evaluator), got {class_ids[0]}")
    return class_ids


def _check_scores(det: AvaTable) -> None:
    if len(det) and not np.isfinite(det.extra).all():
        raise ValueError("detection scores (AvaTable.extra) must be finite")


def _mean_ap(class_ids: np.ndarray, per_class_ap: dict[str, Optional[float]]) -> float:
    """``np.nanmean`` over the per-id AP array (NaN for ids without ground truth).

    The official evaluator averages an array indexed by class id - 1 holding NaN for
    ids without ground truth; building the same array keeps its summation order and
    so its last bit.
    """
    values = [(k, v) for k, v in zip(class_ids.tolist(), per_class_ap.values()) if v is not None]
    if not values:
        return math.nan
    if class_ids[-1] > _MAX_DENSE_CLASS_ID:
        return float(np.mean([v for _, v in values]))
    dense = np.full(int(class_ids[-1]), np.nan)
    for class_id, ap in values:
        dense[class_id - 1] = ap
    return float(np.nanmean(dense))
