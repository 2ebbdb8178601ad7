"""UCF101-24 / JHMDB-21 frame-mAP and video-mAP (ACT protocol; YOWO's VOC-style frame-mAP).

Semantics follow the ACT detector's evaluation code (Kalogeiton et al. 2017, github
vkalogeiton/caffe, branch act-detector, ``act-detector-scripts/ACT.py``: ``load_frame_detections``,
``frameAP``, ``BuildTubes``, ``videoAP``; ``ACT_utils.py``: ``nms2d``, ``nms_tubelets``, ``iou2d``,
``iou3dt``, ``nms3dt``, ``pr_to_ap``), which MOC and later works reuse:

* Boxes are pixels of the original frame, ``x1, y1, x2, y2``; IoU uses the +1 pixel
  convention (``area = (x2 - x1 + 1) * (y2 - y1 + 1)``).
* Detections are tubelets of K frames (ACT's pickles; K = 1 for the per-frame CSV). For
  frame-AP each tubelet gives one box per frame it covers, with its score.
* Frame-AP (``protocol="act"``): per frame and class, greedy NMS at 0.3 (``frame_nms``, as
  ``load_frame_detections(..., 0.3)``); then per class, detections of all test frames pooled
  and ranked by score; each takes the *remaining* ground-truth box of its frame with the
  highest IoU (matched boxes are deleted, so a duplicate may fall back to another box); a TP
  iff that IoU >= threshold.  Precision/recall start at (1, 0) and are stored in float32; AP
  is the trapezoid area ``sum((r[i]-r[i-1]) * (p[i]+p[i-1]) / 2)``.  A class without ground
  truth has AP 0 and counts in the mean, as in ACT (where it has no detections; with
  detections ACT stops on a division by zero).
* Frame-AP (``protocol="yowo"``): the VOC code YOWO reports with (Padilla's
  Object-Detection-Metrics, YOWO's ``evaluation_ucf24_jhmdb/lib/Evaluator.py``): each
  detection takes the ground-truth box of highest IoU among all boxes of its frame (no
  fall-back), TP iff IoU >= threshold and the box is still free; VOC all-point AP; no NMS
  here (YOWO's model applies its own before writing); classes without ground truth are left
  out of the mean (``pascalvoc.py``).  YOWO's pipeline also evaluates only the frames of its
  ``testlist.txt`` (``frames``) and writes integer boxes (``round_boxes`` in the file reader).
* Video-AP: per video and class, tubelets are linked into tubes (:data:`LINKINGS`: ``act`` as
  ``BuildTubes``, ``moc`` with MOC-Detector's constants), tubes of a class are de-duplicated
  with ``nms3dt`` at 0.3; each detected tube takes the remaining ground-truth tube of its video
  with the highest ``temporal IoU x mean spatial IoU over the common frames``; AP as frame-AP.
* Ties: every order here is stable (equal scores keep file order); ACT sorts with numpy's
  unstable quicksort.  ACT computes IoUs of its float32 detections in float32, here in float64:
  the two can disagree only for an IoU within float32 rounding of a threshold.

Detection file (CSV, no header), one row per (frame, box, class)::

    video,frame,x1,y1,x2,y2,label,score

``video`` as in the pickle (e.g. ``Basketball/v_Basketball_g01_c01``), ``frame``
1-based, the box in pixels of the original frame, ``label`` the 0-based index into the
pickle's ``labels``, ``score`` finite.  Or a directory of ACT / MOC tubelet pickles
(:func:`stal.formats.act.read_video_tubelets`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from stal.errors import DataError
from stal.evaluation.frame_map import voc_average_precision
from stal.formats.act import ActTubelets, read_act_pickle, read_video_tubelets, read_yowo_testlist
from stal.formats.ava_csv import PathLike, iter_lines, sniff_columns

VIDEO_THRESHOLDS = (0.2, 0.5, 0.75)
# ACT's frameAP calls load_frame_detections(d, vlist, dirname, 0.3): per-frame, per-class NMS.
ACT_FRAME_NMS = 0.3
_DET_LAYOUT = "video,frame,x1,y1,x2,y2,label,score"


@dataclass
class FrameDetections:
    """Per-frame detections (N rows), pixels of the original frame.

    Attributes:
        videos: video names; ``video`` indexes into it.
        video: int64 (N,); frame: int64 (N,) 1-based; boxes: float64 (N, 4) x1, y1, x2, y2;
        label: int64 (N,) 0-based class index; score: float64 (N,).
    """

    videos: list[str]
    video: np.ndarray
    frame: np.ndarray
    boxes: np.ndarray
    label: np.ndarray
    score: np.ndarray


# ----------------------------------------------------------------------------------------
# IoU and AP of the ACT code
# ----------------------------------------------------------------------------------------


def iou2d_plus1(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU (+1 pixel convention) of each row of ``boxes`` (M, 4) with ``box`` (4,) or (M, 4)."""
    box = np.broadcast_to(box, boxes.shape)
    w = np.maximum(0.0, np.minimum(boxes[:, 2] + 1, box[:, 2] + 1) - np.maximum(boxes[:, 0], box[:, 0]))
    h = np.maximum(0.0, np.minimum(boxes[:, 3] + 1, box[:, 3] + 1) - np.maximum(boxes[:, 1], box[:, 1]))
    overlap = w * h
    area_a = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_b = (box[:, 2] - box[:, 0] + 1) * (box[:, 3] - box[:, 1] + 1)
    return overlap / (area_a + area_b - overlap)


def iou3dt(a: np.ndarray, b: np.ndarray) -> float:
    """Tube overlap: temporal IoU x mean spatial IoU over the common frames.

    Args:
        a, b: (n, 5+) rows ``frame, x1, y1, x2, y2`` with increasing frames.
    """
    tmin, tmax = max(a[0, 0], b[0, 0]), min(a[-1, 0], b[-1, 0])
    if tmax < tmin:
        return 0.0
    temporal = (tmax - tmin + 1) / (max(a[-1, 0], b[-1, 0]) - min(a[0, 0], b[0, 0]) + 1)
    common, ia, ib = np.intersect1d(a[:, 0], b[:, 0], return_indices=True)
    if len(common) == 0:
        return 0.0
    return float(np.mean(iou2d_plus1(a[ia, 1:5].astype(np.float64), b[ib, 1:5].astype(np.float64))) * temporal)


def act_ap(is_tp: np.ndarray, num_gt: int) -> float:
    """ACT's ``pr_to_ap`` of TP flags in rank order: float32 PR curve from (1, 0), trapezoids."""
    tp = np.cumsum(is_tp, dtype=np.int64)
    fp = np.arange(1, len(is_tp) + 1) - tp
    pr = np.empty((len(is_tp) + 1, 2), dtype=np.float32)
    pr[0] = (1.0, 0.0)
    pr[1:, 0] = tp / (tp + fp)
    pr[1:, 1] = tp / num_gt  # tp + fn stays num_gt
    return float(np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5))


# ----------------------------------------------------------------------------------------
# Frame-mAP
# ----------------------------------------------------------------------------------------


def act_frame_map(annotations, detections: FrameDetections, *, split: int = 1, protocol: str = "act",
                  iou_threshold: float = 0.5, frame_nms: Union[float, None, str] = "protocol",
                  frames: Optional[set] = None) -> dict:
    """Frame-mAP over the test videos of ``split`` (module doc).

    Args:
        annotations: :class:`stal.formats.act.ActAnnotations` (labels, gttubes, splits).
        detections: per-frame detections (videos outside the test split are ignored).
        protocol: "act" (fall-back matching, trapezoid AP) or "yowo" (VOC, module doc).
        frame_nms: per-frame, per-class NMS overlap applied first; "protocol": 0.3 for act
            (ACT's frameAP), none for yowo (YOWO's evaluator has none); None: none.
        frames: {(video, frame)} to evaluate (YOWO's testlist.txt); ground truth and detections
            elsewhere are left out, and these videos replace the split's.

    Returns:
        ``{"frame_mAP", "per_class_AP": {str(label index): AP or None}, "num_gt", "num_det",
        "labels", "protocol", "counts"}``; counts of detections suppressed by the NMS, left
        out by ``frames``, and of classes without ground truth.
    """
    if protocol not in ("act", "yowo"):
        raise ValueError(f"protocol must be 'act' or 'yowo', got {protocol!r}")
    counts = {}
    if frame_nms == "protocol":
        frame_nms = ACT_FRAME_NMS if protocol == "act" else None
    test_videos = annotations.videos(split=split, train=False)
    if frames is not None:
        test_videos = sorted({v for v, _ in frames})
        detections, counts["det_outside_testlist"] = _keep_frames(detections, frames)
    in_test = np.isin(detections.video, [i for i, v in enumerate(detections.videos) if v in set(test_videos)])
    detections = _subset(detections, np.flatnonzero(in_test))
    if frame_nms is not None:
        detections, counts["det_suppressed_by_frame_nms"] = per_frame_nms(detections, overlap=frame_nms)
    per_class, num_gt, num_det, empty = {}, {}, {}, []
    gt_left_out = 0
    for label in range(len(annotations.labels)):
        gt, left_out = _frame_ground_truth(annotations, test_videos, label, detections.videos, frames)
        gt_left_out += left_out
        rows = np.flatnonzero(detections.label == label)
        rows = rows[np.argsort(-detections.score[rows], kind="stable")]
        n = sum(len(b) for b in gt.values())
        num_gt[str(label)], num_det[str(label)] = n, len(rows)
        if n == 0:
            empty.append(label)
            per_class[str(label)] = None if protocol == "yowo" else 0.0
            continue
        is_tp = _match_frames(detections, rows, gt, iou_threshold, fall_back=protocol == "act")
        per_class[str(label)] = act_ap(is_tp, n) if protocol == "act" else voc_average_precision(is_tp, n)
    if frames is not None:
        counts["gt_boxes_outside_testlist"] = gt_left_out
    counts["classes_without_gt"] = len(empty)
    _warn_empty_classes(annotations, empty, protocol, "frame")
    aps = [v for v in per_class.values() if v is not None]
    return {"frame_mAP": float(np.mean(aps)) if aps else float("nan"), "per_class_AP": per_class,
            "num_gt": num_gt, "num_det": num_det, "labels": list(annotations.labels), "protocol": protocol,
            "counts": counts}


def _warn_empty_classes(annotations, empty: list[int], protocol: str, what: str) -> None:
    if not empty:
        return
    names = ", ".join(repr(annotations.labels[i]) for i in empty[:3]) + (", ..." if len(empty) > 3 else "")
    rule = ("left out of the mean, as YOWO's pascalvoc.py does" if protocol == "yowo" else
            "0, counted in the mean, as ACT's frameAP / videoAP give it (ACT stops on a division by zero "
            "if such a class has detections)")
    warnings.warn(f"{len(empty)} classes have no ground truth in the evaluated videos ({names}): "
                  f"their {what}-AP is {rule}", stacklevel=3)


def per_frame_nms(det: FrameDetections, *, overlap: float) -> tuple[FrameDetections, int]:
    """ACT's per-frame, per-class NMS (``load_frame_detections`` with ``nms2d``).

    Greedy by score within each (video, frame, label), equal scores in file order; a box is
    suppressed by a kept one when their IoU (+1 convention) is > ``overlap``.  Written here, not
    torchvision's ``batched_nms``: that one has no +1 (x2 + 1 would fix it) but loops over
    groups in Python past 4,000 boxes: over 600 s for 1M rows in 881k (frame, class) groups
    on this machine, where this vectorised greedy pass takes seconds.

    Returns:
        (the kept rows in file order, number suppressed).
    """
    n = len(det.score)
    if n == 0:
        return det, 0
    rank = np.empty(n, np.int64)
    rank[np.argsort(-det.score, kind="stable")] = np.arange(n)
    group = np.unique(np.stack([det.video, det.frame, det.label], axis=1), axis=0, return_inverse=True)[1]
    order = np.lexsort((rank, group.reshape(-1)))  # by group, best first within it
    g = group.reshape(-1)[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[first, n])
    keep = np.ones(n, dtype=bool)  # in `order` positions
    for lo, hi in _size_buckets(sizes):
        chosen = np.flatnonzero((sizes > lo) & (sizes <= hi))
        step = max(1, (1 << 22) // (hi * hi))  # about 4M IoU entries per chunk
        for c in range(0, len(chosen), step):
            _greedy_padded(det.boxes[order], first[chosen[c:c + step]], sizes[chosen[c:c + step]], hi,
                           overlap, keep)
    kept = np.sort(order[keep])
    return _subset(det, kept), n - len(kept)


def _size_buckets(sizes: np.ndarray) -> list[tuple[int, int]]:
    """(lo, hi] ranges of group sizes >= 2, powers of two (padding at most doubles a group)."""
    top = int(sizes.max())
    return [(lo, min(2 * lo, top)) for lo in (1 << i for i in range(top.bit_length())) if lo < top]


def _greedy_padded(boxes: np.ndarray, first: np.ndarray, sizes: np.ndarray, m: int, overlap: float,
                   keep: np.ndarray) -> None:
    """Greedy NMS of G groups at once: rows first[g] .. first[g] + sizes[g] - 1 of ``boxes``
    (best first), padded to m; clears ``keep`` of the suppressed rows."""
    index = first[:, None] + np.arange(m)[None, :]
    valid = np.arange(m)[None, :] < sizes[:, None]
    b = boxes[np.where(valid, index, first[:, None])]  # (G, m, 4); padding repeats row 0
    x1, y1, x2, y2 = (b[..., i] for i in range(4))
    w = np.clip(np.minimum(x2[:, :, None], x2[:, None, :]) + 1 - np.maximum(x1[:, :, None], x1[:, None, :]), 0, None)
    h = np.clip(np.minimum(y2[:, :, None], y2[:, None, :]) + 1 - np.maximum(y1[:, :, None], y1[:, None, :]), 0, None)
    inter = w * h
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    alive = valid.copy()
    for i in range(m - 1):
        alive[:, i + 1:] &= ~(alive[:, i, None] & (iou[:, i, i + 1:] > overlap))
    keep[index[valid & ~alive]] = False


def _subset(det: FrameDetections, rows: np.ndarray) -> FrameDetections:
    return FrameDetections(det.videos, det.video[rows], det.frame[rows], det.boxes[rows], det.label[rows],
                           det.score[rows])


def _keep_frames(det: FrameDetections, frames: set) -> tuple[FrameDetections, int]:
    index = {v: i for i, v in enumerate(det.videos)}
    keys = np.array([(index[v] << 32) | f for v, f in frames if v in index], dtype=np.int64)
    rows = np.flatnonzero(np.isin((det.video << 32) | det.frame, keys))
    return _subset(det, rows), len(det.score) - len(rows)


def _frame_ground_truth(annotations, videos: list[str], label: int, det_videos: list[str],
                        frames: Optional[set]) -> tuple[dict, int]:
    """({(video index in det_videos or name, frame): float64 (m, 4) boxes} of one class,
    boxes left out as not in ``frames``)."""
    index = {v: i for i, v in enumerate(det_videos)}
    gt: dict = {}
    left_out = 0
    for video in videos:
        for tube in annotations.gttubes.get(video, {}).get(label, []):
            for row in np.asarray(tube, dtype=np.float64):
                if frames is not None and (video, int(row[0])) not in frames:
                    left_out += 1
                    continue
                gt.setdefault((index.get(video, video), int(row[0])), []).append(row[1:5])
    return {k: np.array(v) for k, v in gt.items()}, left_out


def _match_frames(det: FrameDetections, rows: np.ndarray, gt: dict, threshold: float, *,
                  fall_back: bool) -> np.ndarray:
    """TP flags (len(rows),) of detections ``rows`` visited in that (rank) order."""
    is_tp = np.zeros(len(rows), dtype=bool)
    remaining = {k: np.ones(len(v), dtype=bool) for k, v in gt.items()}
    # Only detections on frames with ground truth can be TPs: find them without a loop.
    gt_keys = np.array([(v << 32) | f for v, f in gt if isinstance(v, int)], dtype=np.int64)
    on_gt = np.isin((det.video[rows] << 32) | det.frame[rows], gt_keys)
    for i in np.flatnonzero(on_gt).tolist():
        r = int(rows[i])
        key = (int(det.video[r]), int(det.frame[r]))
        boxes = gt[key]
        ious = iou2d_plus1(boxes, det.boxes[r])
        free = remaining[key]
        if fall_back:  # ACT deletes matched boxes: argmax over the remaining ones
            if not free.any():
                continue
            candidates = np.flatnonzero(free)
            best = candidates[np.argmax(ious[candidates])]
            if ious[best] >= threshold:
                is_tp[i], free[best] = True, False
        else:
            best = int(np.argmax(ious))
            if ious[best] >= threshold and free[best]:
                is_tp[i], free[best] = True, False
    return is_tp


# ----------------------------------------------------------------------------------------
# Linking and video-mAP
# ----------------------------------------------------------------------------------------


def iou_matrix_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, N) IoU (+1 pixel convention) of boxes a (M, 4) and b (N, 4), same formula as iou2d_plus1."""
    a, b = a[:, None, :], b[None, :, :]
    w = np.maximum(0.0, np.minimum(a[..., 2] + 1, b[..., 2] + 1) - np.maximum(a[..., 0], b[..., 0]))
    h = np.maximum(0.0, np.minimum(a[..., 3] + 1, b[..., 3] + 1) - np.maximum(a[..., 1], b[..., 1]))
    overlap = w * h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return overlap / (area_a + area_b - overlap)


@dataclass(frozen=True)
class LinkParams:
    """Constants of the tube linking (``BuildTubes``; module doc).

    Attributes:
        nms: per start frame, tubelets suppressed at mean +1 IoU over their K frames > nms.
        top_k: tubelets kept per start frame after that NMS.
        link_iou: a tube extends with the best-scoring free tubelet whose IoU with it (mean over
            the frames they share, else last box against first box) is >= link_iou.
        end_after: a tube without a match ends once the frame is this many frames after the
            start of its last tubelet; None: K (MOC-Detector's ``offset >= opt.K``).
        min_score: tubes with a mean tubelet score below it are dropped.
    """

    nms: float
    top_k: int
    link_iou: float
    end_after: Optional[int]
    min_score: float


# act: ACT.py BuildTubes (vkalogeiton/caffe, act-detector). moc: the constants of MOC-Detector's
# src/ACT_utils/ACT_build.py BuildTubes (NMS 0.6, end at offset >= K, min score 0.005), with ACT's
# hard NMS and link IoU 0.2 kept: MOC itself decays scores (soft NMS) and links at IoU >= 0.5.
LINKINGS = {
    "act": LinkParams(nms=0.3, top_k=10, link_iou=0.2, end_after=5, min_score=0.01),
    "moc": LinkParams(nms=0.6, top_k=10, link_iou=0.2, end_after=None, min_score=0.005),
}
BRIDGED = ("interpolate", "nan")


def nms_tubelets(boxes: np.ndarray, scores: np.ndarray, *, overlap: float, top_k: int,
                 summed_ious: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices kept by ACT's ``nms_tubelets``, best first (equal scores: first index), at most ``top_k``.

    Args:
        boxes: (n, K, 4) tubelets; scores: (n,).
    A kept tubelet suppresses the others whose summed +1 IoU over the K frames is > overlap * K
    (ACT's comparison). Written here: torchvision's NMS has no tubelet (mean over K) overlap.
    Like ACT, only the kept tubelets' overlaps are computed (at most top_k passes), unless
    ``summed_ious`` (:func:`summed_tubelet_ious` of ``boxes``) gives them all.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    k = boxes.shape[1]
    alive = np.ones(len(order), dtype=bool)
    keep = []
    while len(keep) < top_k:
        cand = np.flatnonzero(alive)
        if len(cand) == 0:
            break
        i, rest = cand[0], cand[1:]
        keep.append(order[i])
        alive[i] = False
        if summed_ious is None:
            ious = sum(iou2d_plus1(b[rest, j], b[i, j]) for j in range(k))
        else:
            ious = summed_ious[order[i], order[rest]]
        alive[rest[~(ious <= overlap * k)]] = False
    return np.array(keep, dtype=np.int64)


def summed_tubelet_ious(boxes: np.ndarray) -> np.ndarray:
    """(n, n) sum over the K frames of the +1 IoU of tubelets (n, K, 4), for :func:`nms_tubelets`
    when many classes rank the same tubelets (ACT's ``dets_all``)."""
    return sum(iou_matrix_plus1(boxes[:, j], boxes[:, j]) for j in range(boxes.shape[1]))


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, *, overlap: float, top_k: int) -> np.ndarray:
    """:func:`nms_tubelets` for single boxes (n, 4) (ACT's ``nms2d`` with a top-k)."""
    return nms_tubelets(boxes[:, None, :], scores, overlap=overlap, top_k=top_k)


def link_tubelets(starts: dict[int, tuple[np.ndarray, np.ndarray]], num_frames: int, k: int, *,
                  params: LinkParams, min_length: int = 15,
                  bridged: str = "interpolate") -> list[tuple[np.ndarray, float]]:
    """ACT's ``BuildTubes`` for one video and class.

    Args:
        starts: {start frame (1-based): (tubelets (n, K, 4) pixels, scores (n,))}.
        num_frames: frames of the video; start frames run 1 .. num_frames - K + 1.
        bridged: frames of a tube that no tubelet covers (a match after a gap: K < 5 with ACT's
            constants) get boxes interpolated linearly between their neighbours ("interpolate")
            or NaN ("nan": ACT's code divides by a zero count there, so such a tube never
            matches a ground-truth tube and, in tube NMS, removes the tubes it overlaps).

    Returns:
        [(tube float32 (L, 6) rows ``frame, x1, y1, x2, y2, score``, tube score)], the tube
        score being the mean of its tubelets' scores; tubes shorter than ``min_length`` frames
        or below ``params.min_score`` dropped.
    """
    end_after = k if params.end_after is None else params.end_after
    current: list[dict] = []  # {"starts": [...], "boxes": [(K, 4)], "scores": [...], "sum": float}
    finished = []
    empty = (np.empty((0, k, 4)), np.empty(0))
    for frame in range(1, num_frames - k + 2):
        boxes, scores, *summed = starts.get(frame, empty)
        keep = nms_tubelets(boxes, scores, overlap=params.nms, top_k=params.top_k,
                            summed_ious=summed[0] if summed else None) if len(scores) else []
        boxes, scores = boxes[keep], scores[keep]
        current.sort(key=lambda t: -t["sum"] / len(t["scores"]))  # stable: ties keep age order
        links = _link_ious(current, boxes, frame) >= params.link_iou  # (tubes, tubelets)
        free = np.ones(len(scores), dtype=bool)
        still = []
        for tube, link in zip(current, links):
            offset = frame - tube["starts"][-1]
            valid = np.flatnonzero(free & link)
            if len(valid):  # the best-scoring valid tubelet (first on ties)
                pick = valid[np.argmax(scores[valid])]
                free[pick] = False
                tube["starts"].append(frame)
                tube["boxes"].append(boxes[pick])
                tube["scores"].append(scores[pick])
                tube["sum"] += scores[pick]
                still.append(tube)
            elif offset >= end_after:
                finished.append(tube)
            else:
                still.append(tube)
        current = still + [{"starts": [frame], "boxes": [boxes[i]], "scores": [scores[i]], "sum": scores[i]}
                           for i in np.flatnonzero(free)]
    output = []
    for tube in finished + current:
        score = float(np.mean(tube["scores"]))
        length = tube["starts"][-1] + k - tube["starts"][0]
        if score < params.min_score or length < min_length:
            continue
        output.append((_tube_rows(tube, k, bridged), score))
    return output


def _link_ious(tubes: list[dict], boxes: np.ndarray, frame: int) -> np.ndarray:
    """(T, n) IoU of each tube's last tubelet with tubelets ``boxes`` (n, K, 4) starting at ``frame``:
    the mean +1 IoU over the frames both cover (ACT sums, then divides), else (no common frame)
    the IoU of the new first box with the last box."""
    n, k = boxes.shape[0], boxes.shape[1]
    if not tubes or n == 0:
        return np.zeros((len(tubes), n))
    last = np.stack([t["boxes"][-1] for t in tubes])  # (T, K, 4)
    offset = frame - np.array([t["starts"][-1] for t in tubes])
    j = np.arange(k)[None, :] + offset[:, None]  # frame j of the last tubelet meets frame i of a new one
    used = j < k
    aligned = np.take_along_axis(last, np.minimum(j, k - 1)[:, :, None], axis=1)  # (T, K, 4)
    far = offset >= k  # no common frame: new first box against the last box
    used[far, 0] = True
    aligned[far, 0] = last[far, k - 1]
    a, b = aligned[:, None], boxes[None]  # (T, 1, K, 4), (1, n, K, 4)
    w = np.maximum(0.0, np.minimum(a[..., 2] + 1, b[..., 2] + 1) - np.maximum(a[..., 0], b[..., 0]))
    h = np.maximum(0.0, np.minimum(a[..., 3] + 1, b[..., 3] + 1) - np.maximum(a[..., 1], b[..., 1]))
    inter = w * h
    iou = inter / ((b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
                   + (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1) - inter)
    total = np.zeros((len(tubes), n))
    for i in range(k):  # frame by frame, as ACT adds them
        total += np.where(used[:, i, None], iou[:, :, i], 0.0)
    return total / used.sum(axis=1)[:, None]


def _tube_rows(tube: dict, k: int, bridged: str) -> np.ndarray:
    """(L, 6) rows ``frame, x1, y1, x2, y2, score``: per frame the mean of the tubelets covering it."""
    first = tube["starts"][0]
    length = tube["starts"][-1] + k - first
    total = np.zeros((length, 5))
    count = np.zeros(length)
    for start, boxes, score in zip(tube["starts"], tube["boxes"], tube["scores"]):
        total[start - first:start - first + k, :4] += boxes
        total[start - first:start - first + k, 4] += score
        count[start - first:start - first + k] += 1
    covered = count > 0
    rows = np.full((length, 5), np.nan)
    rows[covered] = total[covered] / count[covered, None]
    if bridged == "interpolate" and not covered.all():
        at = np.flatnonzero(covered)
        for c in range(5):
            rows[~covered, c] = np.interp(np.flatnonzero(~covered), at, rows[covered, c])
    frames = np.arange(first, first + length, dtype=np.float64)[:, None]
    return np.concatenate([frames, rows], axis=1).astype(np.float32)


def link_tubes(frames: dict[int, tuple[np.ndarray, np.ndarray]], num_frames: int, *,
               min_length: int = 15, linking: str = "act",
               bridged: str = "interpolate") -> list[tuple[np.ndarray, float]]:
    """:func:`link_tubelets` for per-frame detections {frame: (boxes (n, 4), scores (n,))} (K = 1)."""
    starts = {f: (b[:, None, :], s) for f, (b, s) in frames.items()}
    return link_tubelets(starts, num_frames, 1, params=LINKINGS[linking], min_length=min_length, bridged=bridged)


def nms3dt(tubes: list[tuple[np.ndarray, float]], overlap: float = 0.3) -> list[int]:
    """Indices of tubes kept by tube NMS (suppress iou3dt > overlap), best first."""
    order = list(np.argsort([-s for _, s in tubes], kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou3dt(tubes[j][0], tubes[i][0]) <= overlap]
    return keep


Detections = Union[FrameDetections, str, "os.PathLike[str]"]


def act_video_map(annotations, detections: Detections, *, split: int = 1,
                  thresholds: tuple[float, ...] = VIDEO_THRESHOLDS, min_length: int = 15,
                  linking: str = "act", bridged: str = "interpolate", protocol: str = "act") -> dict:
    """Video-mAP at each threshold and averaged over 0.5:0.95 (module doc).

    Args:
        detections: per-frame detections (K = 1) or a directory of ACT / MOC tubelet pickles.
        linking: a key of :data:`LINKINGS`; bridged: see :func:`link_tubelets`.
        protocol: "act": a class without ground truth has AP 0 in the mean (ACT's videoAP);
            "yowo": it is left out (None).

    Returns:
        ``{"video_mAP": {"0.2": ..., "0.5": ..., "0.75": ..., "0.5:0.95": ...},
        "per_class_video_AP": {threshold: {str(label): AP or None}}, "linking"}``.
    """
    if linking not in LINKINGS or bridged not in BRIDGED:
        raise ValueError(f"linking must be one of {sorted(LINKINGS)} and bridged one of {BRIDGED}, "
                         f"got {linking!r}, {bridged!r}")
    test_videos = annotations.videos(split=split, train=False)
    tubes = _all_tubes(annotations, detections, test_videos, min_length=min_length, params=LINKINGS[linking],
                       bridged=bridged)
    all_thresholds = sorted(set(thresholds) | {round(0.5 + 0.05 * i, 2) for i in range(10)})
    empty = [label for label in range(len(annotations.labels))
             if not any(annotations.gttubes.get(v, {}).get(label) for v in test_videos)]
    _warn_empty_classes(annotations, empty, protocol, "video")
    per_threshold = {}
    for th in all_thresholds:
        per_class = {}
        for label in range(len(annotations.labels)):
            ap = _video_ap(annotations, test_videos, tubes.get(label, []), label, th)
            per_class[str(label)] = ap if ap is not None or protocol == "yowo" else 0.0
        per_threshold[th] = per_class
    mean = {th: _nanmean(pc.values()) for th, pc in per_threshold.items()}
    summary = {f"{th:g}": mean[th] for th in thresholds}
    summary["0.5:0.95"] = float(np.mean([mean[round(0.5 + 0.05 * i, 2)] for i in range(10)]))
    return {"video_mAP": summary, "linking": linking,
            "per_class_video_AP": {f"{th:g}": per_threshold[th] for th in thresholds}}


def _nanmean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _all_tubes(annotations, det: Detections, videos: list[str], *, min_length: int, params: LinkParams,
               bridged: str) -> dict:
    """{label: [(video, tube, score)]} after linking and per-video tube NMS (ACT's videoAP)."""
    out: dict = {}
    for video in videos:
        per_start = video_tubelets(det, video, annotations.nframes[video], num_labels=len(annotations.labels))
        if not per_start:
            continue
        k = next(iter(per_start.values())).k
        # every class ranks the same dets_all tubelets: their overlaps once per start frame
        summed = {s: (summed_tubelet_ious(t.all_boxes),) for s, t in per_start.items() if t.all_scores is not None}
        for label in range(len(annotations.labels)):
            starts = {s: (*t.link_candidates(label), *summed.get(s, ())) for s, t in per_start.items()}
            starts = {s: c for s, c in starts.items() if len(c[1])}
            if not starts:
                continue
            linked = link_tubelets(starts, annotations.nframes[video], k, params=params, min_length=min_length,
                                   bridged=bridged)
            out.setdefault(label, []).extend((video, linked[i][0], linked[i][1]) for i in nms3dt(linked))
    return out


def video_tubelets(det: Detections, video: str, nframes: int, *, num_labels: int) -> dict[int, ActTubelets]:
    """{start frame: tubelets} of ``video``: from a tubelet directory, or the per-frame rows as K = 1."""
    if not isinstance(det, FrameDetections):
        return read_video_tubelets(det, video, nframes, num_labels=num_labels)
    if video not in det.videos:
        return {}
    rows = np.flatnonzero(det.video == det.videos.index(video))
    rows = rows[np.argsort(det.frame[rows], kind="stable")]
    frames, first = np.unique(det.frame[rows], return_index=True)
    out = {}
    for f, r in zip(frames.tolist(), np.split(rows, first[1:])):
        out[f] = ActTubelets(1, det.boxes[r][:, None, :], det.label[r], det.score[r])
    return out


def tubelet_frame_detections(per_video: dict[str, dict[int, ActTubelets]]) -> FrameDetections:
    """Per-frame rows of tubelets: each box of a tubelet on its frame with the tubelet's label and
    score (ACT's ``load_frame_detections`` before its NMS)."""
    videos = list(per_video)
    parts = []
    for vi, video in enumerate(videos):
        for start, t in per_video[video].items():
            n = len(t.score)
            for j in range(t.k):
                parts.append((np.full(n, vi), np.full(n, start + j), t.boxes[:, j], t.label, t.score))
    if not parts:
        return FrameDetections(videos, *(np.empty(0, np.int64),) * 2, np.empty((0, 4)), np.empty(0, np.int64),
                               np.empty(0))
    v, f, b, lab, sc = (np.concatenate(c) for c in zip(*parts))
    return FrameDetections(videos, v.astype(np.int64), f.astype(np.int64), b, lab.astype(np.int64), sc)


def _video_ap(annotations, videos: list[str], tubes: list, label: int, threshold: float) -> Optional[float]:
    gt = {v: list(annotations.gttubes.get(v, {}).get(label, [])) for v in videos}
    gt = {v: t for v, t in gt.items() if t}
    n = sum(len(t) for t in gt.values())
    if n == 0:
        return None
    order = np.argsort([-s for _, _, s in tubes], kind="stable")
    is_tp = np.zeros(len(tubes), dtype=bool)
    for i, j in enumerate(order.tolist()):
        video, tube, _ = tubes[j]
        if gt.get(video):
            ious = [iou3dt(np.asarray(g, np.float64), tube.astype(np.float64)) for g in gt[video]]
            best = int(np.argmax(ious))  # a NaN IoU (bridged="nan") is argmax, and no TP: as ACT
            if ious[best] >= threshold:
                is_tp[i] = True
                del gt[video][best]
    return act_ap(is_tp, n)


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------


def read_frame_detections(path: PathLike, *, num_labels: int) -> FrameDetections:
    """Read a per-frame detection CSV (module doc); DataError with file and line if bad."""
    if sniff_columns(path) is None:
        return FrameDetections([], *(np.empty(0, np.int64),) * 2, np.empty((0, 4)), np.empty(0, np.int64), np.empty(0))
    columnar = _read_columnar(path, num_labels=num_labels)
    if columnar is not None:
        return columnar
    # The line parser names the first bad line (or reads what pyarrow would not).
    videos: dict[str, int] = {}
    rows = []
    for lineno, line in iter_lines(path):
        rows.append(_parse_det_row(path, lineno, line, num_labels, videos))
    video, frame, x1, y1, x2, y2, label, score = (np.array(c) for c in zip(*rows))
    return FrameDetections(list(videos), video.astype(np.int64), frame.astype(np.int64),
                           np.stack([x1, y1, x2, y2], axis=1).astype(np.float64),
                           label.astype(np.int64), score.astype(np.float64))


def _read_columnar(path: PathLike, *, num_labels: int) -> Optional[FrameDetections]:
    """pyarrow read of a well-formed file; None when any row needs the line parser."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = ["video", "frame", "x1", "y1", "x2", "y2", "label", "score"]
    types = {"video": pa.dictionary(pa.int32(), pa.string()), "frame": pa.int64(), "label": pa.int64(),
             **{n: pa.float64() for n in ("x1", "y1", "x2", "y2", "score")}}
    try:
        table = pacsv.read_csv(
            str(path), read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if any(table.column(i).null_count for i in range(8)):
        return None
    video = table.column("video")
    codes: dict[str, int] = {}
    parts = []
    for chunk in video.chunks:
        mapping = np.array([codes.setdefault(v, len(codes)) for v in chunk.dictionary.to_pylist()], np.int64)
        parts.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
    col = {n: table.column(n).to_numpy() for n in names[1:]}
    boxes = np.stack([col["x1"], col["y1"], col["x2"], col["y2"]], axis=1)
    ok = (len(boxes) == 0 or (np.isfinite(boxes).all() and (boxes[:, 0] <= boxes[:, 2]).all()
          and (boxes[:, 1] <= boxes[:, 3]).all() and np.isfinite(col["score"]).all()
          and col["frame"].min() >= 1 and col["label"].min() >= 0 and col["label"].max() < num_labels))
    if not ok or any(v != v.strip() or not v for v in codes):
        return None
    return FrameDetections(list(codes), np.concatenate(parts) if parts else np.empty(0, np.int64),
                           col["frame"], boxes, col["label"], col["score"])


def _parse_det_row(path, lineno: int, line: str, num_labels: int, videos: dict) -> tuple:
    where = f"{path}:{lineno}"
    fields = line.split(",")
    if len(fields) != 8:
        raise DataError(f"{where}: expected 8 columns ({_DET_LAYOUT}), got {len(fields)}")
    try:
        frame = int(fields[1])
    except ValueError:
        frame = 0
    if frame < 1:
        raise DataError(f"{where}: column 2 (frame): expected a 1-based frame number, got {fields[1]!r}")
    try:
        x1, y1, x2, y2, score = (float(fields[i]) for i in (2, 3, 4, 5, 7))
    except ValueError:
        raise DataError(f"{where}: expected numbers in columns 3-6 (box) and 8 (score), got {line!r}") from None
    if not all(np.isfinite([x1, y1, x2, y2, score])) or x2 < x1 or y2 < y1:
        raise DataError(f"{where}: expected a finite box with x1 <= x2, y1 <= y2 and a finite score, "
                        f"got {line!r}")
    try:
        label = int(fields[6])
    except ValueError:
        label = -1
    if not 0 <= label < num_labels:
        raise DataError(f"{where}: column 7 (label): expected a class index in [0, {num_labels}), "
                        f"got {fields[6]!r}")
    video = videos.setdefault(fields[0], len(videos))
    return video, frame, x1, y1, x2, y2, label, score


def act_evaluate_files(gt_pkl: PathLike, det: PathLike, *, split: int = 1, protocol: str = "act",
                       iou_threshold: float = 0.5, video_map: bool = False, strict: bool = False,
                       frame_nms: Union[float, None, str] = "protocol", testlist: Optional[PathLike] = None,
                       round_boxes: bool = False, linking: str = "act", bridged: str = "interpolate") -> dict:
    """Frame-mAP (and video-mAP) from an ACT pickle and detections (module doc).

    Args:
        det: a per-frame detection CSV, or a directory of ACT / MOC tubelet pickles
            (``<det>/<video>/<start:05d>.pkl``, every test video of the split).
        frame_nms: per-frame NMS overlap before frame matching; "protocol": 0.3 for act (ACT's
            frameAP), none for yowo; None: none.
        testlist: YOWO's testlist.txt: only its frames are evaluated (frame-mAP).
        round_boxes: round detection boxes to integers (half to even, Python's ``round``), as
            YOWO writes its detection files.
        linking, bridged: video-mAP linking, see :func:`act_video_map`.

    Detections of videos the pickle does not know are left out, as ACT does, with a warning
    naming how many rows and the first such video (``strict``: a DataError): usually a path
    prefix or a split mix-up that would otherwise only show as a low mAP.
    """
    annotations = read_act_pickle(gt_pkl)
    if os.path.isdir(det):
        test_videos = annotations.videos(split=split, train=False)
        detections = tubelet_frame_detections({v: video_tubelets(det, v, annotations.nframes[v],
                                                                 num_labels=len(annotations.labels))
                                               for v in test_videos})
        link_source = det
    else:
        detections = read_frame_detections(det, num_labels=len(annotations.labels))
        _report_unknown_videos(det, gt_pkl, annotations, detections, strict=strict)
        link_source = detections
    if round_boxes:  # in place: a CSV's linking sees the rounded boxes too
        detections.boxes = np.round(detections.boxes)  # numpy and Python 3 round halves to even
    frames = None if testlist is None else read_yowo_testlist(testlist, nframes=annotations.nframes)
    result = act_frame_map(annotations, detections, split=split, protocol=protocol, iou_threshold=iou_threshold,
                           frame_nms=frame_nms, frames=frames)
    result["counts"]["gt_tubes_past_nframes"] = len(annotations.tubes_past_end)
    if video_map:
        result.update(act_video_map(annotations, link_source, split=split, linking=linking, bridged=bridged,
                                    protocol=protocol))
    return result


def _report_unknown_videos(det_csv, gt_pkl, annotations, detections: "FrameDetections", *, strict: bool) -> None:
    unknown = [i for i, v in enumerate(detections.videos) if v not in annotations.nframes]
    if not unknown:
        return
    rows = int(np.isin(detections.video, unknown).sum())
    message = (f"{det_csv}: {rows} rows of {len(unknown)} videos that {gt_pkl} does not have (first: "
               f"{detections.videos[unknown[0]]!r}); they are left out")
    if strict:
        raise DataError(message.replace("; they are left out", " (--strict)"))
    warnings.warn(message, stacklevel=3)


__all__ = ["ACT_FRAME_NMS", "BRIDGED", "FrameDetections", "LINKINGS", "LinkParams", "act_ap", "act_evaluate_files",
           "act_frame_map", "act_video_map", "iou2d_plus1", "iou3dt", "iou_matrix_plus1", "link_tubelets",
           "link_tubes", "nms3dt", "nms_boxes", "nms_tubelets", "per_frame_nms", "read_frame_detections",
           "tubelet_frame_detections", "video_tubelets"]
