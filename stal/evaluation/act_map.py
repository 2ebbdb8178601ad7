"""UCF101-24 / JHMDB-21 frame-mAP and video-mAP (ACT protocol; YOWO's VOC-style frame-mAP).

Semantics follow the ACT detector's evaluation code (Kalogeiton et al. 2017,
``ACT.py``: ``frameAP``, ``BuildTubes``, ``videoAP``; ``ACT_utils.py``: ``iou2d``,
``iou3dt``, ``nms_tubelets``, ``nms3dt``, ``pr_to_ap``), which MOC and later works reuse:

* Boxes are pixels of the original frame, ``x1, y1, x2, y2``; IoU uses the +1 pixel
  convention (``area = (x2 - x1 + 1) * (y2 - y1 + 1)``).
* Frame-AP (``protocol="act"``): per class, detections of all test frames pooled and
  ranked by score; each takes the *remaining* ground-truth box of its frame with the
  highest IoU (matched boxes are deleted, so a duplicate may fall back to another box);
  a TP iff that IoU >= threshold.  Precision/recall start at (1, 0) and are stored in
  float32; AP is the trapezoid area ``sum((r[i]-r[i-1]) * (p[i]+p[i-1]) / 2)``.
* Frame-AP (``protocol="yowo"``): the VOC code YOWO reports with (Padilla's
  Object-Detection-Metrics): each detection takes the ground-truth box of highest IoU
  among all boxes of its frame (no fall-back), TP iff IoU >= threshold and the box is
  still free; VOC all-point AP.  Numbers differ from ACT's by a few points: say which.
* Video-AP: per video and class, per-frame detections are linked into tubes as
  ``BuildTubes`` does for tubelets of length K = 1 (per-frame NMS at 0.6 keeping 10;
  tubes visited by mean score take the best-scoring detection with IoU >= 0.2 to their
  last box, else end; tubes with mean score < 0.005 or fewer than 15 frames are
  dropped); tubes of a class are de-duplicated with ``nms3dt`` at 0.3; each detected
  tube takes the remaining ground-truth tube of its video with the highest
  ``temporal IoU x mean spatial IoU over the common frames``; AP as frame-AP (ACT).
* Classes without ground truth have no AP (None) and are left out of the mean (ACT
  would average a NaN).  Ties: every order here is stable (equal scores keep file
  order); ACT sorts with numpy's unstable quicksort.

Detection file (CSV, no header), one row per (frame, box, class)::

    video,frame,x1,y1,x2,y2,label,score

``video`` as in the pickle (e.g. ``Basketball/v_Basketball_g01_c01``), ``frame``
1-based, the box in pixels of the original frame, ``label`` the 0-based index into the
pickle's ``labels``, ``score`` finite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from stal.errors import DataError
from stal.evaluation.frame_map import voc_average_precision
from stal.formats.act import read_act_pickle
from stal.formats.ava_csv import PathLike, iter_lines, sniff_columns

VIDEO_THRESHOLDS = (0.2, 0.5, 0.75)
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
                  iou_threshold: float = 0.5) -> dict:
    """Frame-mAP over the test videos of ``split``.

    Args:
        annotations: :class:`stal.formats.act.ActAnnotations` (labels, gttubes, splits).
        detections: per-frame detections (videos outside the test split are ignored).
        protocol: "act" (fall-back matching, trapezoid AP) or "yowo" (VOC, module doc).

    Returns:
        ``{"frame_mAP", "per_class_AP": {str(label index): AP or None}, "num_gt", "num_det",
        "labels", "protocol"}``.
    """
    if protocol not in ("act", "yowo"):
        raise ValueError(f"protocol must be 'act' or 'yowo', got {protocol!r}")

    test_videos = annotations.videos(split=split, train=False)
    in_test = np.isin(detections.video, [i for i, v in enumerate(detections.videos) if v in set(test_videos)])
    per_class, num_gt, num_det = {}, {}, {}
    for label in range(len(annotations.labels)):
        gt = _frame_ground_truth(annotations, test_videos, label, detections.videos)
        rows = np.flatnonzero(in_test & (detections.label == label))
        rows = rows[np.argsort(-detections.score[rows], kind="stable")]
        n = sum(len(b) for b in gt.values())
        num_gt[str(label)], num_det[str(label)] = n, len(rows)
        if n == 0:
            per_class[str(label)] = None
            continue
        is_tp = _match_frames(detections, rows, gt, iou_threshold, fall_back=protocol == "act")
        per_class[str(label)] = act_ap(is_tp, n) if protocol == "act" else voc_average_precision(is_tp, n)
    aps = [v for v in per_class.values() if v is not None]
    return {"frame_mAP": float(np.mean(aps)) if aps else float("nan"), "per_class_AP": per_class,
            "num_gt": num_gt, "num_det": num_det, "labels": list(annotations.labels), "protocol": protocol}


def _frame_ground_truth(annotations, videos: list[str], label: int, det_videos: list[str]) -> dict:
    """{(video index in det_videos or name, frame): float64 (m, 4) boxes} of one class."""
    index = {v: i for i, v in enumerate(det_videos)}
    gt: dict = {}
    for video in videos:
        for tube in annotations.gttubes.get(video, {}).get(label, []):
            for row in np.asarray(tube, dtype=np.float64):
                gt.setdefault((index.get(video, video), int(row[0])), []).append(row[1:5])
    return {k: np.array(v) for k, v in gt.items()}


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


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, *, overlap: float, top_k: int) -> np.ndarray:
    """Indices kept by greedy NMS (+1 IoU; suppress IoU > overlap), best first, at most top_k."""
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix_plus1(boxes[order], boxes[order])  # one matrix, then a cheap greedy pass
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if alive[i]:
            keep.append(order[i])
            if len(keep) == top_k:
                break
            alive &= ious[i] <= overlap
    return np.array(keep, dtype=np.int64)


def link_tubes(frames: dict[int, tuple[np.ndarray, np.ndarray]], num_frames: int, *,
               min_length: int = 15, min_score: float = 0.005) -> list[tuple[np.ndarray, float]]:
    """ACT ``BuildTubes`` with K = 1 for one video and class.

    Args:
        frames: {frame (1-based): (boxes float64 (n, 4) pixels, scores (n,))}.
        num_frames: frames of the video.

    Returns:
        [(tube float32 (L, 6) rows ``frame, x1, y1, x2, y2, score``, tube score)], the tube
        score being the mean of its detections' scores.
    """
    current: list[dict] = []  # {"rows": [(frame, x1, y1, x2, y2, score)], "sum": float}
    finished = []
    for frame in range(1, num_frames + 1):
        boxes, scores = frames.get(frame, (np.empty((0, 4)), np.empty(0)))
        keep = nms_boxes(boxes, scores, overlap=0.6, top_k=10) if len(scores) else np.empty(0, np.int64)
        boxes, scores = boxes[keep], scores[keep]
        current.sort(key=lambda t: -t["sum"] / len(t["rows"]))  # stable: ties keep age order
        free = np.ones(len(keep), dtype=bool)
        ious = (iou_matrix_plus1(np.array([t["rows"][-1][1:5] for t in current]), boxes)
                if current and len(keep) else np.zeros((len(current), len(keep))))
        still = []
        for tube, row in zip(current, ious):
            valid = np.flatnonzero(free & (row >= 0.2))
            if len(valid):  # the best-scoring valid detection (first on ties)
                pick = valid[np.argmax(scores[valid])]
                free[pick] = False
                tube["rows"].append((frame, *boxes[pick], scores[pick]))
                tube["sum"] += scores[pick]
                still.append(tube)
            else:
                finished.append(tube)  # K = 1: a tube without a match ends
        current = still + [{"rows": [(frame, *boxes[i], scores[i])], "sum": scores[i]}
                           for i in np.flatnonzero(free)]
    output = []
    for tube in finished + current:
        score = float(np.mean([r[-1] for r in tube["rows"]]))
        if score < min_score or len(tube["rows"]) < min_length:
            continue
        output.append((np.array(tube["rows"], dtype=np.float32), score))
    return output


def nms3dt(tubes: list[tuple[np.ndarray, float]], overlap: float = 0.3) -> list[int]:
    """Indices of tubes kept by tube NMS (suppress iou3dt > overlap), best first."""
    order = list(np.argsort([-s for _, s in tubes], kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou3dt(tubes[j][0], tubes[i][0]) <= overlap]
    return keep


def act_video_map(annotations, detections: FrameDetections, *, split: int = 1,
                  thresholds: tuple[float, ...] = VIDEO_THRESHOLDS, min_length: int = 15) -> dict:
    """Video-mAP at each threshold and averaged over 0.5:0.95 (module doc).

    Returns:
        ``{"video_mAP": {"0.2": ..., "0.5": ..., "0.75": ..., "0.5:0.95": ...},
        "per_class_video_AP": {threshold: {str(label): AP or None}}}``.
    """
    test_videos = annotations.videos(split=split, train=False)
    tubes = _all_tubes(annotations, detections, test_videos, min_length=min_length)
    all_thresholds = sorted(set(thresholds) | {round(0.5 + 0.05 * i, 2) for i in range(10)})
    per_threshold = {}
    for th in all_thresholds:
        per_class = {}
        for label in range(len(annotations.labels)):
            per_class[str(label)] = _video_ap(annotations, test_videos, tubes.get(label, []), label, th)
        per_threshold[th] = per_class
    mean = {th: _nanmean(pc.values()) for th, pc in per_threshold.items()}
    summary = {f"{th:g}": mean[th] for th in thresholds}
    summary["0.5:0.95"] = float(np.mean([mean[round(0.5 + 0.05 * i, 2)] for i in range(10)]))
    return {"video_mAP": summary,
            "per_class_video_AP": {f"{th:g}": per_threshold[th] for th in thresholds}}


def _nanmean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def _all_tubes(annotations, det: FrameDetections, videos: list[str], *, min_length: int) -> dict:
    """{label: [(video, tube, score)]} after linking and per-video tube NMS."""
    index = {v: i for i, v in enumerate(det.videos)}
    out: dict = {}
    for video in videos:
        vi = index.get(video)
        if vi is None:
            continue
        rows = np.flatnonzero(det.video == vi)
        for label in np.unique(det.label[rows]).tolist():
            r = rows[det.label[rows] == label]
            frames = {}
            for f in np.unique(det.frame[r]).tolist():
                fr = r[det.frame[r] == f]
                frames[f] = (det.boxes[fr], det.score[fr])
            linked = link_tubes(frames, annotations.nframes[video], min_length=min_length)
            out.setdefault(label, []).extend((video, linked[i][0], linked[i][1]) for i in nms3dt(linked))
    return out


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
            best = int(np.argmax(ious))
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


def act_evaluate_files(gt_pkl: PathLike, det_csv: PathLike, *, split: int = 1, protocol: str = "act",
                       iou_threshold: float = 0.5, video_map: bool = False, strict: bool = False) -> dict:
    """Frame-mAP (and video-mAP) from an ACT pickle and a per-frame detection CSV.

    Detections of videos the pickle does not know are left out, as ACT does, with a warning
    naming how many rows and the first such video (``strict``: a DataError): usually a path
    prefix or a split mix-up that would otherwise only show as a low mAP.
    """
    annotations = read_act_pickle(gt_pkl)
    detections = read_frame_detections(det_csv, num_labels=len(annotations.labels))
    _report_unknown_videos(det_csv, gt_pkl, annotations, detections, strict=strict)
    result = act_frame_map(annotations, detections, split=split, protocol=protocol,
                           iou_threshold=iou_threshold)
    if video_map:
        result.update(act_video_map(annotations, detections, split=split))
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


__all__ = ["FrameDetections", "act_ap", "act_evaluate_files", "act_frame_map", "act_video_map",
           "iou2d_plus1", "iou3dt", "iou_matrix_plus1", "link_tubes", "nms3dt", "nms_boxes",
           "read_frame_detections"]
