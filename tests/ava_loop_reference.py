"""An obviously-correct, slow AVA frame-mAP: one detection at a time, plain Python.

Used by the tests (to check the vectorised evaluator on random data) and by
tools/bench_eval.py (the loop baseline it times).  Semantics: stal/evaluation/frame_map.py
(official evaluator, stable tie order: equal scores keep file order).
"""

from __future__ import annotations

import csv
from collections import defaultdict

Row = tuple  # (video, timestamp, x1, y1, x2, y2, action, score_or_person_id)


def iou(a: tuple, b: tuple) -> float:
    """IoU of normalized (x1, y1, x2, y2) boxes with the float operations of np_box_ops.iou."""
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = h * w
    return inter / (((a[3] - a[1]) * (a[2] - a[0]) + (b[3] - b[1]) * (b[2] - b[0])) - inter)


def read_rows(path: str) -> list[Row]:
    """csv.reader loop, as the official reader (7 columns: score 1.0)."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.reader(f):
            if r:
                rows.append((r[0], int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                             int(r[6]), float(r[7]) if len(r) == 8 else 1.0))
    return rows


def reference_frame_map(gt_rows: list[Row], det_rows: list[Row], labelmap: dict, excluded: set,
                        thr: float = 0.5, *, top_k: int | None = None,
                        ignore_empty_frames: bool = False, match_order: str = "score") -> dict:
    """{"frame_mAP": float (NaN without GT), "per_class_AP": {str(id): float or None}}.

    ``match_order="file"``: detections claim boxes in file order (PySlowFast's copy); the
    AP ranking is by score either way."""
    gt_boxes: dict = defaultdict(list)  # (class, video, ts) -> boxes in file order
    gt_frames = set()
    for v, t, x1, y1, x2, y2, a, _ in gt_rows:
        if a in labelmap and (v, t) not in excluded:
            gt_boxes[(a, v, t)].append((x1, y1, x2, y2))
            gt_frames.add((v, t))
    dets = [(s, i, (a, v, t), (x1, y1, x2, y2))
            for i, (v, t, x1, y1, x2, y2, a, s) in enumerate(det_rows) if a in labelmap]
    if top_k is not None:  # per keyframe over all evaluated classes, ties: file order
        per_frame: dict = defaultdict(list)
        for d in dets:
            per_frame[d[2][1:]].append(d)
        kept = set()
        for frame_dets in per_frame.values():
            kept.update(d[1] for d in sorted(frame_dets, key=lambda d: -d[0])[:top_k])
        dets = [d for d in dets if d[1] in kept]
    dets = [d for d in dets if d[2][1:] not in excluded and d[3][0] < d[3][2] and d[3][1] < d[3][3]]
    if ignore_empty_frames:
        dets = [d for d in dets if d[2][1:] in gt_frames]
    ranked = sorted(dets, key=lambda d: -d[0])  # Python's sort is stable: ties keep file order
    matched: dict = defaultdict(set)
    is_tp = {}
    for _, i, key, box in ranked if match_order == "score" else dets:
        best, best_iou = None, -1.0
        for j, g in enumerate(gt_boxes.get(key, ())):
            o = iou(box, g)
            if o > best_iou:
                best, best_iou = j, o
        is_tp[i] = best is not None and best_iou >= thr and best not in matched[key]
        if is_tp[i]:
            matched[key].add(best)
    flags: dict = defaultdict(list)  # class -> TP flags in rank order
    for _, i, key, _ in ranked:
        flags[key[0]].append(is_tp[i])
    per_class = {}
    for c in sorted(labelmap):
        n_gt = sum(len(v) for k, v in gt_boxes.items() if k[0] == c)
        per_class[str(c)] = voc_ap_loop(flags[c], n_gt) if n_gt else None
    aps = [v for v in per_class.values() if v is not None]
    return {"frame_mAP": sum(aps) / len(aps) if aps else float("nan"), "per_class_AP": per_class}


def voc_ap_loop(flags: list[bool], n_gt: int) -> float:
    """VOC all-point AP of TP flags in rank order."""
    precision, recall, tps = [], [], 0
    for k, tp in enumerate(flags, start=1):
        tps += tp
        precision.append(tps / k)
        recall.append(tps / n_gt)
    recall = [0.0] + recall + [1.0]
    precision = [0.0] + precision + [0.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i] - recall[i - 1]) * precision[i]
               for i in range(1, len(recall)) if recall[i] != recall[i - 1])


def reference_frame_map_files(gt_csv: str, det_csv: str, labelmap: dict, excluded: set,
                              thr: float = 0.5) -> dict:
    """reference_frame_map on files read with csv.reader."""
    return reference_frame_map(read_rows(gt_csv), read_rows(det_csv), labelmap, excluded, thr)
