"""An independent loop re-implementation of ACT's evaluation, for equality tests.

Written from the semantics of github vkalogeiton/caffe, branch act-detector,
``act-detector-scripts/ACT.py`` (``load_frame_detections``, ``frameAP``, ``BuildTubes``,
``videoAP``) and ``ACT_utils.py`` (``nms2d``, ``nms_tubelets``, ``iou2d``, ``iou3dt``,
``nms3dt``, ``pr_to_ap``): one detection, one box, one tube at a time, plain Python lists and
floats, no code shared with ``stal.evaluation.act_map``. Orders are stable (ACT's quicksort
is not; the tests use distinct scores). Inputs are ACT's per-start-frame arrays:

* ``dets[video][start]``: (N, 2 + 4K) rows ``label, score, (x1, y1, x2, y2) x K``;
* ``dets_all[video][start]``: (M, 4K + 1 + L) rows ``(x1, y1, x2, y2) x K, background, scores``.

Bridged tube frames (no tubelet covers them) are NaN, as ACT's ``out[:, 1:] /= n_per_frame``
leaves them.
"""

from __future__ import annotations

import math


def iou(a, b) -> float:
    """+1-pixel IoU of two boxes (x1, y1, x2, y2); NaN if a coordinate is NaN."""
    w = max(0.0, min(a[2] + 1, b[2] + 1) - max(a[0], b[0]))
    h = max(0.0, min(a[3] + 1, b[3] + 1) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    if any(math.isnan(v) for v in list(a) + list(b)):
        return math.nan
    return inter / union


def by_score(scores) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def greedy_nms(items, score_of, overlap_of, threshold, top_k=None) -> list[int]:
    """Indices kept: best first; a kept item keeps only those with overlap <= threshold (a NaN
    overlap removes, as numpy's ``np.where(ious <= overlap)`` in ACT does)."""
    order = by_score([score_of(x) for x in items])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if top_k is not None and len(keep) == top_k:
            break
        order = [j for j in order if overlap_of(items[j], items[i]) <= threshold]
    return keep


def pr_to_ap(flags, num_gt) -> float:
    """ACT's curve from (1, 0), trapezoids; float32 rounding of each point as ACT stores it."""
    import numpy as np

    points = [(1.0, 0.0)]
    tp = fp = 0
    fn = num_gt
    for flag in flags:
        if flag:
            tp, fn = tp + 1, fn - 1
        else:
            fp += 1
        points.append((float(np.float32(tp / (tp + fp))), float(np.float32(tp / (tp + fn)))))
    total = 0.0
    for (p0, r0), (p1, r1) in zip(points, points[1:]):
        total += float(np.float32(r1 - r0)) * float(np.float32(p1 + p0)) * 0.5
    return total


def frame_rows(dets, nframes, nlabels, nms=0.3):
    """ACT's load_frame_detections: [(video, frame, label, score, box)] after per-frame NMS."""
    rows = []
    for video in sorted(dets):
        per_frame = {f: [] for f in range(1, nframes[video] + 1)}
        for start, array in dets[video].items():
            k = (len(array[0]) - 2) // 4 if len(array) else 0
            for r in array:
                for j in range(k):
                    per_frame[start + j].append((int(r[0]), float(r[1]), [float(v) for v in r[2 + 4 * j:6 + 4 * j]]))
        for f, boxes in per_frame.items():
            for label in range(nlabels):
                mine = [b for b in boxes if b[0] == label]
                keep = range(len(mine)) if nms is None else greedy_nms(
                    mine, lambda b: b[1], lambda a, b: iou(a[2], b[2]), nms)
                rows += [(video, f, label, mine[i][1], mine[i][2]) for i in keep]
    return rows


def frame_ap(rows, gttubes, videos, nlabels, th=0.5) -> list[float]:
    """ACT's frameAP per class; a class without ground truth: 0 without detections (ACT)."""
    aps = []
    for label in range(nlabels):
        gt = {}
        for v in videos:
            for tube in gttubes.get(v, {}).get(label, []):
                for r in tube:
                    gt.setdefault((v, int(r[0])), []).append([float(x) for x in r[1:5]])
        num_gt = sum(len(b) for b in gt.values())
        mine = [r for r in rows if r[2] == label and r[0] in videos]
        flags = []
        for i in by_score([r[3] for r in mine]):
            video, frame, _, _, box = mine[i]
            hit = False
            boxes = gt.get((video, frame), [])
            if boxes:
                ious = [iou(g, box) for g in boxes]
                best = max(range(len(ious)), key=lambda j: (ious[j], -j))
                if ious[best] >= th:
                    hit = True
                    del boxes[best]
            flags.append(hit)
        if num_gt == 0:
            assert not mine, "ACT divides by zero here"
            aps.append(0.0)
        else:
            aps.append(pr_to_ap(flags, num_gt))
    return aps


def tubelet_iou(a, b, k) -> float:
    """Sum over the K frames of the +1 IoU (nms_tubelets compares it with overlap * K)."""
    return sum(iou(a[4 * j:4 * j + 4], b[4 * j:4 * j + 4]) for j in range(k))


def build_tubes(dets_all, nframes, label, k, *, nms=0.3, link=0.2, end_after=5, min_score=0.01, min_length=15):
    """ACT's BuildTubes for one video and class: [(rows [frame, x1, y1, x2, y2, score], score)]."""
    current, finished = [], []
    for frame in range(1, nframes + 2 - k):
        cands = [[float(v) for v in r[:4 * k]] + [float(r[4 * k + 1 + label])] for r in dets_all.get(frame, [])]
        keep = greedy_nms(cands, lambda c: c[-1], lambda a, b: tubelet_iou(a, b, k), nms * k, top_k=10)
        cands = [cands[i] for i in keep]
        current = [current[i] for i in by_score([sum(c[-1] for _, c in t) / len(t) for t in current])]
        ended = []
        for ti, tube in enumerate(current):
            last_start, last = tube[-1]
            offset = frame - last_start
            ious = []
            for c in cands:
                if offset < k:
                    n = k - offset
                    ious.append(sum(iou(c[4 * j:4 * j + 4], last[4 * (j + offset):4 * (j + offset) + 4])
                                    for j in range(n)) / n)
                else:
                    ious.append(iou(c[0:4], last[4 * k - 4:4 * k]))
            valid = [j for j in range(len(cands)) if ious[j] >= link]
            if valid:
                pick = max(valid, key=lambda j: (cands[j][-1], -j))
                tube.append((frame, cands.pop(pick)))
            elif offset >= end_after:
                ended.append(ti)
        for ti in reversed(ended):
            finished.append(current.pop(ti))
        current += [[(frame, c)] for c in cands]
    out = []
    for tube in finished + current:
        score = sum(c[-1] for _, c in tube) / len(tube)
        begin, end = tube[0][0], tube[-1][0] + k - 1
        if score < min_score or end + 1 - begin < min_length:
            continue
        rows = []
        for f in range(begin, end + 1):
            cover = [(c[4 * (f - s):4 * (f - s) + 4], c[-1]) for s, c in tube if s <= f < s + k]
            if cover:
                rows.append([f] + [sum(b[i] for b, _ in cover) / len(cover) for i in range(4)]
                            + [sum(s for _, s in cover) / len(cover)])
            else:
                rows.append([f] + [math.nan] * 5)
        out.append((rows, score))
    return out


def tube_iou(a, b) -> float:
    """ACT's iou3dt: temporal IoU x mean spatial IoU over the frames both tubes have."""
    ta, tb = {int(r[0]): r for r in a}, {int(r[0]): r for r in b}
    tmin, tmax = max(min(ta), min(tb)), min(max(ta), max(tb))
    if tmax < tmin:
        return 0.0
    common = [f for f in range(tmin, tmax + 1)]
    spatial = sum(iou(ta[f][1:5], tb[f][1:5]) for f in common) / len(common)
    return spatial * (tmax - tmin + 1) / (max(max(ta), max(tb)) - min(min(ta), min(tb)) + 1)


def video_ap(dets_all, gttubes, videos, nframes, nlabels, k, th, **link) -> list[float]:
    """ACT's videoAP (BuildTubes, nms3dt 0.3, matching) per class."""
    aps = []
    for label in range(nlabels):
        detections = []
        for v in videos:
            tubes = build_tubes(dets_all.get(v, {}), nframes[v], label, k, **link)
            keep = greedy_nms(tubes, lambda t: t[1], lambda a, b: tube_iou(a[0], b[0]), 0.3)
            detections += [(v, tubes[i][1], tubes[i][0]) for i in keep]
        gt = {v: [[list(map(float, r)) for r in t] for t in gttubes.get(v, {}).get(label, [])] for v in videos}
        num_gt = sum(len(t) for t in gt.values())
        flags = []
        for i in by_score([d[1] for d in detections]):
            v, _, tube = detections[i]
            hit = False
            if gt[v]:
                ious = [tube_iou(g, tube) for g in gt[v]]
                best = 0
                for j, x in enumerate(ious):  # numpy's argmax: the first NaN, else the first maximum
                    if math.isnan(x):
                        best = j
                        break
                    if x > ious[best]:
                        best = j
                if ious[best] >= th:
                    hit = True
                    del gt[v][best]
            flags.append(hit)
        if num_gt == 0:
            assert not detections, "ACT divides by zero here"
            aps.append(0.0)
        else:
            aps.append(pr_to_ap(flags, num_gt))
    return aps
