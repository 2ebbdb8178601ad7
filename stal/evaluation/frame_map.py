"""AVA frame-mAP with the semantics of the official evaluator; vectorised and streaming.

The official evaluator is ActivityNet's ``Evaluation/get_ava_performance.py`` on top of
the TensorFlow object-detection API (``object_detection_evaluation.py``,
``per_image_evaluation.py``, ``metrics.py``, ``np_box_ops.py``); PySlowFast and
mmaction2 ship copies of it.  What it computes, and what is reproduced here:

* Only classes in the label map are evaluated; rows with other action ids are dropped
  (counted).  Keyframes listed as excluded are dropped from both tables.
* Detections with ``x2 <= x1`` or ``y2 <= y1`` are removed before matching
  (``PerImageEvaluation._remove_invalid_boxes``); neither TP nor FP.
* Per keyframe and class, detections are visited in descending score order.  Each
  takes the ground-truth box of highest IoU in that keyframe (``np.argmax``: the first
  one on ties); it is a TP iff that IoU >= threshold and that box is not matched yet,
  else a FP.  There is no fall-back to the second-best box.  Detections on keyframes
  without ground truth of the class are FPs.
* IoU in normalized coordinates, no +1 convention, with the float64 operations of
  ``np_box_ops.iou`` (so values at the threshold compare the same).
* AP per class: VOC all-point (``metrics.compute_precision_recall`` then
  ``compute_average_precision``); a class with ground truth and no detection has AP 0;
  a class without ground truth has no AP (None here, NaN there) and is left out of the
  mean, which is ``np.nanmean`` over the AP array indexed by class id, as there.

Ties (the only place where results may differ from a given official copy):

* Here every order is stable: among equal scores the detection that comes first in the
  detection file (table order) is visited first, in per-keyframe matching and in the
  per-class ranking.  Results are deterministic.
* The official ranking is ``np.argsort(scores)[::-1]`` (quicksort, not stable), so tie
  order depends on the numpy version and the array length; its per-keyframe order is a
  stable sort of a heap's order (ActivityNet's ``read_csv``).  With distinct
  scores per class all of them agree with this module bit for bit; with ties they may
  differ by about 1e-4 AP.
* On an IoU tie between two ground-truth boxes, the first one in the ground-truth file
  is taken (as PySlowFast; ActivityNet's heap may take the other).

Variants: ``match_order="file"`` visits each keyframe's detections of a class in file
order instead of descending score, as PySlowFast's copy does (its ``ava_eval_helper.read_csv``
keeps file order and its ``per_image_evaluation._compute_tp_fp_for_single_class`` matches
in the order it is given; the official ``read_csv`` sorts each keyframe by score first).
On a file whose rows are score-sorted within each keyframe (as stal writes them) the two
orders give the same result.  ``max_dets_per_keyframe=50`` keeps the 50 highest-scoring detections of each
keyframe over all evaluated classes, before exclusions, as ActivityNet's
``read_csv(capacity=50)`` (ties at the cut: file order; ActivityNet's heap breaks them by
class id and coordinates).  ``ignore_empty_frames=True`` drops detections on keyframes
that have no ground truth of any evaluated class, as mmaction2's option of that name.

How it is fast (see docs/evaluation.md): a detection's target box does not depend on
other detections (no fall-back), so each detection's target and IoU are computed
independently, block by block, while the file streams in.  A ground-truth box is then
matched by its best-ranked claimant: a running maximum per box.  Only the score of each
kept detection is stored (8 bytes a row).  AP needs only the rank of each TP in its
class: counted with ``searchsorted`` against the few TP scores, not by sorting the
class's million scores.  The AP terms are the official ones, summed in the same order.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Iterable, Optional

import numpy as np

from stal.errors import DataError
from stal.formats.ava import read_excluded, read_labelmap
from stal.formats.ava_csv import BoxBatch, PathLike, VideoVocab, iter_box_csv, line_of_row, prefetch

# Number of (detection, ground truth) pairs expanded at once: bounds memory at about
# 20 float64 arrays of this length whatever the number of rows.
_PAIRS_PER_CHUNK = 4_000_000
# Largest dense lookup table (entries) for keyframes and (keyframe, class) groups.
_MAX_DENSE = 1 << 26
# Coarse score buckets of tp_ranks: with T true positives, about T / this of a class's
# rows need an exact comparison.
_RANK_BUCKETS = 1 << 16
# Orders in which a keyframe's detections claim ground truth (FrameMapAccumulator).
MATCH_ORDERS = ("score", "file")
# Fewest bytes of a CSV row the reader accepts ("v,1,0,0,0,0,\n": 6 one-character fields and an
# empty action id; the last row may lack its newline, hence the + 1 of _max_rows).
_MIN_ROW_BYTES = 13
# Beyond this class id the official per-id AP array is not materialised (see _mean_ap).
_MAX_DENSE_CLASS_ID = 100_000


def ava_frame_map(
    gt,
    det,
    labelmap: dict[int, str],
    *,
    excluded: Iterable[tuple[str, int]] = frozenset(),
    iou_threshold: float = 0.5,
    max_dets_per_keyframe: Optional[int] = None,
    ignore_empty_frames: bool = False,
    match_order: str = "score",
) -> dict:
    """AVA frame-mAP of in-memory tables (module doc for the semantics).

    Args:
        gt: :class:`stal.formats.ava.AvaTable` of ground truth (``extra`` = person
            id, unused); boxes normalized ``x1, y1, x2, y2``.
        det: AvaTable of detections (``extra`` = score, finite); same boxes.
        labelmap: ``{class_id: name}``; only these classes are evaluated (ids >= 1).
        excluded: ``(video_id, timestamp)`` keyframes dropped from both tables.
        iou_threshold: a match needs IoU >= this.
        max_dets_per_keyframe: ActivityNet's cap (module doc); None keeps all.
        ignore_empty_frames: mmaction2's option (module doc).
        match_order: ``"score"`` (official, mmaction2) or ``"file"`` (PySlowFast): the
            order in which a keyframe's detections of a class claim ground-truth boxes.

    Returns:
        ``{"frame_mAP": float (NaN without any ground truth), "per_class_AP": {str(id):
        float or None}, "num_gt": {str(id): int}, "num_det": {str(id): int}, "counts":
        {what: rows}}``; classes in increasing id order; ``num_det`` counts the
        detections that took part; ``counts`` the rows left out, and why.
    """
    vocab = VideoVocab()
    gt_batch = _batch_from_table(gt, vocab)
    det_batch = _batch_from_table(det, vocab)
    if len(det_batch) and not np.isfinite(det_batch.extra).all():
        raise ValueError("detection scores (AvaTable.extra) must be finite")
    acc = FrameMapAccumulator(
        gt=gt_batch, labelmap=labelmap, excluded=_excluded_codes(excluded, vocab),
        iou_threshold=iou_threshold, ignore_empty_frames=ignore_empty_frames, match_order=match_order)
    keep = None
    if max_dets_per_keyframe is not None:
        evaluated = acc.class_index(det_batch.action) >= 0
        keep = np.zeros(len(det_batch), dtype=bool)
        keep[evaluated] = _top_k_per_frame(
            _frame_keys(det_batch.video[evaluated], det_batch.timestamp[evaluated]),
            det_batch.extra[evaluated], max_dets_per_keyframe)
    acc.add(det_batch, keep=keep)
    return acc.result()


def ava_frame_map_files(
    gt_csv: PathLike,
    det_csv: PathLike,
    labelmap_pbtxt: PathLike,
    excluded_csv: Optional[PathLike] = None,
    iou_threshold: float = 0.5,
    *,
    max_dets_per_keyframe: Optional[int] = None,
    ignore_empty_frames: bool = False,
    strict: bool = False,
    match_order: str = "score",
) -> dict:
    """:func:`ava_frame_map` on AVA files, streaming the detection CSV.

    Args:
        gt_csv, det_csv: AVA box CSVs (no header; 8 columns, or 7 without the last).
        labelmap_pbtxt: ``item { name: "..." id: N }`` (or ``label_id:``) blocks.
        excluded_csv: optional ``video_id,timestamp`` rows.
        iou_threshold, max_dets_per_keyframe, ignore_empty_frames, match_order: as in
            ava_frame_map (the cap reads the detection file twice).
        strict: a detection row whose action id is not in the label map, and repeated rows in
            either file, are errors (file and line) instead of a counted, skipped row / a
            warning with the count.  Ground-truth rows of
            other classes are always skipped: the official v2.2 ground truth holds all
            80 classes and the official label map 60.

    Returns:
        As ava_frame_map.  Warns (``UserWarning``) when the detection file is empty or
        rows were skipped for their action id.

    Raises:
        stal.errors.DataError naming the file and line for a missing or malformed file.
    """
    labelmap = read_labelmap(labelmap_pbtxt)
    vocab = VideoVocab()
    gt = BoxBatch.concatenate(list(iter_box_csv(gt_csv, vocab=vocab)))
    excluded = read_excluded(excluded_csv) if excluded_csv is not None else set()
    acc = FrameMapAccumulator(
        gt=gt, labelmap=labelmap, excluded=_excluded_codes(excluded, vocab),
        iou_threshold=iou_threshold, ignore_empty_frames=ignore_empty_frames, match_order=match_order)
    top_k = None
    if max_dets_per_keyframe is not None:
        top_k = _top_k_keep_file(det_csv, vocab=vocab, acc=acc, k=max_dets_per_keyframe)
    # One buffer with room for the most rows the file can hold: pages never written are never
    # resident, where growing a list of per-block arrays and joining them kept both (2x).
    rows, det_hashes = 0, np.empty(_max_rows(det_csv), np.uint64)
    for batch in prefetch(iter_box_csv(det_csv, vocab=vocab)):
        if strict:
            _check_actions(det_csv, batch, acc)
        keep = None if top_k is None else top_k[batch.first_row:batch.first_row + len(batch)]
        acc.add(batch, keep=keep)
        row_hashes(batch, out=det_hashes[rows:rows + len(batch)])
        rows += len(batch)
    result = acc.result()
    _report_duplicates(gt_csv, row_hashes(gt), strict=strict, reread=lambda: [row_hashes(gt)])
    _report_duplicates(det_csv, det_hashes[:rows], strict=strict,
                       reread=lambda: (row_hashes(b) for b in iter_box_csv(det_csv, vocab=vocab)))
    del det_hashes
    if rows == 0:
        warnings.warn(f"{det_csv}: no detections; every class with ground truth has AP 0", stacklevel=2)
    skipped = result["counts"]["det_action_not_in_labelmap"]
    if skipped:
        warnings.warn(f"{det_csv}: {skipped} rows with action ids not in the label map were skipped",
                      stacklevel=2)
    return result


# Odd 64-bit multipliers, one per column of a row (row_hashes): odd, so two rows that differ in
# one column never collide; splitmix64's finalizer constants mix the sum.
_ROW_MULTIPLIERS = tuple(np.uint64(k) for k in (
    0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93,
    0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3))


def row_hashes(batch: BoxBatch, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """uint64 (N,): a hash of each whole row (video, timestamp, box, action, score / person id),
    written into ``out`` (uint64 (N,)) when given.

    Hashes, not the rows: 8 bytes per row keep the streaming evaluator's memory small. A row is
    a weighted sum of its 8 columns' bits (mod 2^64, odd weights) run through a finalizer, two
    in-place passes per column: the check rides on the evaluator's hot path, so it must stay a
    small part of it (tools/bench_eval.py).
    """
    cols = (batch.video.astype(np.int64).view(np.uint64), batch.timestamp.view(np.uint64),
            *np.ascontiguousarray(batch.boxes, np.float64).view(np.uint64).T, batch.action.view(np.uint64),
            np.ascontiguousarray(batch.extra, np.float64).view(np.uint64))
    h = np.zeros(len(batch), np.uint64) if out is None else out
    h[:], term = 0, np.empty(len(batch), np.uint64)
    with np.errstate(over="ignore"):
        for k, col in zip(_ROW_MULTIPLIERS, cols):
            np.multiply(col, k, out=term)
            h += term
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


def _max_rows(path: PathLike) -> int:
    """Most rows the CSV at ``path`` can hold (0 if it is missing: the reader reports that)."""
    return os.path.getsize(path) // _MIN_ROW_BYTES + 1 if os.path.isfile(path) else 0


def _report_duplicates(path: PathLike, hashes: np.ndarray, *, strict: bool,
                       reread: Callable[[], Iterable[np.ndarray]]) -> None:
    """Warn (``strict``: DataError) once per file with the number of repeated rows and the first.

    ``hashes``: uint64 (N,) the file's row hashes; sorted in place (so the check holds 8 bytes
    per row once). ``reread`` yields them again in file order, block by block, which only a
    file with duplicates needs (for the first one's line).

    The official evaluator scores every row, so a repeated detection is a false positive and a
    repeated ground-truth box an extra miss (tests/test_bad_inputs_data_prep.py: a perfect
    detector's AP drops below 1): almost always a concatenation or export mistake, which the AP
    alone does not reveal.
    """
    ordered = hashes
    ordered.sort()  # in place: a plain sort, not np.unique's index bookkeeping (3x the evaluation)
    same = ordered[1:] == ordered[:-1]
    repeated = int(np.count_nonzero(same))
    if not repeated:
        return
    row = _first_repeat(reread(), np.unique(ordered[1:][same]))
    message = f"{path}: {repeated} duplicate rows (a row repeated exactly), first at line {line_of_row(path, row)}"
    if strict:
        raise DataError(message + " (--strict)")
    warnings.warn(message + "; they are scored as the official evaluator does", stacklevel=3)


def _first_repeat(chunks: Iterable[np.ndarray], repeated: np.ndarray) -> int:
    """0-based index of the first row whose hash (one of ``repeated``) occurred before it."""
    seen, offset = set(), 0
    for chunk in chunks:
        for i in np.flatnonzero(np.isin(chunk, repeated)):
            if chunk[i] in seen:
                return offset + int(i)
            seen.add(chunk[i])
        offset += len(chunk)
    raise AssertionError("a repeated hash must repeat")  # the caller found it in the same rows


def _check_actions(path: PathLike, batch: BoxBatch, acc: "FrameMapAccumulator") -> None:
    bad = np.flatnonzero(acc.class_index(batch.action) < 0)
    if len(bad):
        row = batch.first_row + int(bad[0])
        raise DataError(f"{path}:{line_of_row(path, row)}: column 7 (action_id): "
                        f"{int(batch.action[bad[0]])} is not in the label map (--strict)")


def _batch_from_table(table, vocab: VideoVocab) -> BoxBatch:
    """AvaTable -> BoxBatch in float64 (the official evaluator's precision)."""
    return BoxBatch(vocab.codes(table.video.tolist()), np.asarray(table.timestamp, np.int64),
                    np.asarray(table.boxes, np.float64).reshape(-1, 4),
                    np.asarray(table.action, np.int64), np.asarray(table.extra, np.float64))


def _excluded_codes(excluded: Iterable[tuple[str, int]], vocab: VideoVocab) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted((str(v), int(t)) for v, t in excluded)
    video = np.array([vocab.code(v) for v, _ in pairs], dtype=np.int32)
    return video, np.array([t for _, t in pairs], dtype=np.int64)


# ----------------------------------------------------------------------------------------
# The accumulator: ground truth once, detections block by block
# ----------------------------------------------------------------------------------------


class FrameMapAccumulator:
    """Streaming AVA frame-mAP: build on the ground truth, ``add`` detection blocks in
    file order, then ``result``.  Memory: 8 bytes per kept detection plus the ground truth.

    Args:
        gt: ground-truth rows (video codes of the vocabulary the detections will use).
        labelmap: ``{class_id: name}``.
        excluded: (video codes int32 (E,), timestamps int64 (E,)) of excluded keyframes.
        iou_threshold: a match needs IoU >= this.
        ignore_empty_frames: drop detections on keyframes without evaluated ground truth.
        match_order: ``"score"`` or ``"file"`` (module doc).
    """

    def __init__(self, *, gt: BoxBatch, labelmap: dict[int, str], excluded: tuple[np.ndarray, np.ndarray],
                 iou_threshold: float, ignore_empty_frames: bool, match_order: str = "score") -> None:
        if match_order not in MATCH_ORDERS:
            raise ValueError(f"match_order must be one of {MATCH_ORDERS}, got {match_order!r}")
        # Without a fall-back a box goes to its first claimant in the visiting order: the
        # best-scored one ("score"), or the earliest in the file ("file").
        self.by_score = match_order == "score"
        self.class_ids = _check_labelmap(labelmap)
        # int16 class indices let the per-block sort by class be a radix sort.
        index_dtype = np.int16 if len(self.class_ids) < 2**15 else np.int32
        self._lut = np.full(int(self.class_ids[-1]) + 1, -1, dtype=index_dtype)
        self._lut[self.class_ids] = np.arange(len(self.class_ids), dtype=index_dtype)
        self.iou_threshold = float(iou_threshold)
        self.ignore_empty_frames = ignore_empty_frames
        self.counts = dict.fromkeys(
            ("gt_action_not_in_labelmap", "gt_excluded", "det_action_not_in_labelmap", "det_excluded",
             "det_invalid_box", "det_over_top_k", "det_on_keyframe_without_gt"), 0)
        gt_class = self.class_index(gt.action)
        self.counts["gt_action_not_in_labelmap"] = int((gt_class < 0).sum())
        gt, gt_class = gt.take(gt_class >= 0), gt_class[gt_class >= 0]
        excluded_keys = np.unique(_frame_keys(*excluded))
        on_excluded = np.isin(_frame_keys(gt.video, gt.timestamp), excluded_keys)
        self.counts["gt_excluded"] = int(on_excluded.sum())
        gt, gt_class = gt.take(~on_excluded), gt_class[~on_excluded]
        self._frames = _KeyframeIndex(_frame_keys(gt.video, gt.timestamp), excluded_keys)
        num_classes = len(self.class_ids)
        group = self._frames.lookup(gt.video, gt.timestamp)[0].astype(np.int64) * num_classes + gt_class
        order = np.argsort(group, kind="stable")  # table order inside a group: argmax picks the first
        self._gt_boxes = gt.boxes[order]
        self._gt_class = gt_class[order]
        self._groups = _GroupIndex(group[order], self._frames.num_frames * num_classes)
        self.num_gt = np.bincount(gt_class, minlength=num_classes)
        # Running winner of each ground-truth box: best score, then earliest position.
        self._win_score = np.full(len(order), -np.inf)
        self._win_pos = np.full(len(order), -1, dtype=np.int64)
        self._scores: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.num_det = np.zeros(num_classes, dtype=np.int64)

    def class_index(self, action: np.ndarray) -> np.ndarray:
        """int16/int32 (N,) index into ``class_ids`` of each action id, -1 if not evaluated."""
        inside = (action >= 0) & (action < len(self._lut))
        return self._lut[np.where(inside, action, 0)]  # _lut[0] is -1: class ids are >= 1

    def add(self, det: BoxBatch, *, keep: Optional[np.ndarray] = None) -> None:
        """Take a block of detection rows (in file order after the previous blocks).

        Args:
            det: the rows; ``extra`` holds the scores.
            keep: optional bool (N,): rows to consider (the top-k cap), others dropped.
        """
        cls = self.class_index(det.action)
        ok = cls >= 0
        self.counts["det_action_not_in_labelmap"] += int(len(ok) - ok.sum())
        if keep is not None:
            self.counts["det_over_top_k"] += int((ok & ~keep).sum())
            ok &= keep
        frame, on_excluded = self._frames.lookup(det.video, det.timestamp)
        self.counts["det_excluded"] += int((ok & on_excluded).sum())
        ok &= ~on_excluded
        boxes = det.boxes
        valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        self.counts["det_invalid_box"] += int((ok & ~valid).sum())
        ok &= valid
        no_gt = ok & (frame < 0)
        self.counts["det_on_keyframe_without_gt"] += int(no_gt.sum())
        if self.ignore_empty_frames:
            ok &= frame >= 0
        rows = np.flatnonzero(ok)
        if len(rows) == 0:
            return
        self._add_kept(cls[rows], frame[rows], boxes[rows], det.extra[rows])

    def _add_kept(self, cls: np.ndarray, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> None:
        """Store scores by class and update the winners; all arrays (K,) / (K, 4)."""
        num_classes = len(self.class_ids)
        by_class = np.argsort(cls, kind="stable")  # radix sort of int16: linear
        per_class = np.bincount(cls, minlength=num_classes)
        starts = np.cumsum(per_class) - per_class
        sorted_scores = scores[by_class]
        for c in np.flatnonzero(per_class):
            self._scores[c].append(sorted_scores[starts[c]:starts[c] + per_class[c]])
        num_before = self.num_det.copy()
        self.num_det += per_class

        group = np.where(frame >= 0, frame.astype(np.int64) * num_classes + cls, -1)
        first, count = self._groups.lookup(group)
        target, best_iou = _best_ground_truth(first, count, boxes, self._gt_boxes)
        claims = np.flatnonzero(best_iou >= self.iou_threshold)
        if len(claims) == 0:
            return
        # Position of a claimant inside its class over all blocks so far (file order).
        rank_in_sorted = np.empty(len(cls), dtype=np.int64)
        rank_in_sorted[by_class] = np.arange(len(cls))
        claim_cls = cls[claims]
        position = num_before[claim_cls] + rank_in_sorted[claims] - starts[claim_cls]
        # Best claimant per box in this block (score desc, then position; or position alone),
        # then merge with the running winner: an earlier block wins ties (smaller positions).
        t, s, p = target[claims], scores[claims], position
        order = np.lexsort((p, -s, t)) if self.by_score else np.lexsort((p, t))
        first_of_target = order[_run_starts(t[order])]
        t, s, p = t[first_of_target], s[first_of_target], p[first_of_target]
        better = s > self._win_score[t] if self.by_score else self._win_pos[t] < 0
        self._win_score[t[better]] = s[better]
        self._win_pos[t[better]] = p[better]

    def result(self) -> dict:
        """The metric dict of :func:`ava_frame_map`."""
        matched = self._win_pos >= 0
        tp_class, tp_pos = self._gt_class[matched], self._win_pos[matched]
        per_class_ap: dict[str, Optional[float]] = {}
        for c, class_id in enumerate(self.class_ids.tolist()):
            if self.num_gt[c] == 0:
                per_class_ap[str(class_id)] = None
                continue
            scores = np.concatenate(self._scores[c]) if self._scores[c] else np.empty(0)
            ranks = tp_ranks(scores, tp_pos[tp_class == c])
            per_class_ap[str(class_id)] = voc_ap_from_tp_ranks(ranks, int(self.num_gt[c]))
        ids = self.class_ids.tolist()
        return {
            "frame_mAP": _mean_ap(self.class_ids, per_class_ap),
            "per_class_AP": per_class_ap,
            "num_gt": {str(k): int(v) for k, v in zip(ids, self.num_gt.tolist())},
            "num_det": {str(k): int(v) for k, v in zip(ids, self.num_det.tolist())},
            "counts": dict(self.counts),
        }


# ----------------------------------------------------------------------------------------
# AP and IoU: the official formulas
# ----------------------------------------------------------------------------------------


def voc_average_precision(tp_sorted: np.ndarray, num_gt: int) -> float:
    """VOC all-point AP of detections already ranked by descending score.

    The arithmetic of the TF object-detection API's ``compute_precision_recall`` then
    ``compute_average_precision``: bit-identical for the same ranking.  (The evaluator
    uses :func:`voc_ap_from_tp_ranks`, which gives the same bits without the FP rows.)

    Args:
        tp_sorted: bool (K,), True where the k-th ranked detection is a true positive.
        num_gt: number of ground-truth boxes of the class (> 0).
    """
    if num_gt <= 0:
        raise ValueError("num_gt must be positive; a class without ground truth has no AP")
    tp = tp_sorted.astype(np.int64)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp).astype(np.float64)
    precision = cum_tp.astype(np.float64) / (cum_tp + cum_fp)
    recall = cum_tp.astype(np.float64) / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at >= this recall
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def voc_ap_from_tp_ranks(ranks: np.ndarray, num_gt: int) -> float:
    """:func:`voc_average_precision` from the 1-based ranks of the true positives only.

    Recall changes only at a TP, and between two TPs precision falls, so the envelope
    at a TP is the maximum over the later TPs' precisions.  The terms (and the trailing
    zero term when recall stays below 1) are those the official code sums, in its
    order, so ``np.sum`` gives the same bits.

    Args:
        ranks: int64 (T,) distinct positions (1 = best) of the TPs in the class ranking.
        num_gt: number of ground-truth boxes (> 0; T <= num_gt).
    """
    if num_gt <= 0:
        raise ValueError("num_gt must be positive; a class without ground truth has no AP")
    ranks = np.sort(np.asarray(ranks, dtype=np.int64))
    j = np.arange(1, len(ranks) + 1, dtype=np.int64)
    precision = j.astype(np.float64) / ranks.astype(np.float64)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall = j.astype(np.float64) / num_gt
    previous = np.concatenate([[0.0], recall[:-1]])
    terms = (recall - previous) * envelope
    if len(ranks) == 0 or recall[-1] != 1.0:
        terms = np.concatenate([terms, [(1.0 - (recall[-1] if len(ranks) else 0.0)) * 0.0]])
    return float(np.sum(terms))


def tp_ranks(scores: np.ndarray, tp_positions: np.ndarray) -> np.ndarray:
    """1-based ranks of some rows in the stable descending-score order, without sorting.

    Rows in a coarse score bucket above a TP's bucket all rank before it and are only
    counted (one bincount); exact comparisons are made only inside the buckets that
    hold a TP, a small fraction of the rows.

    Args:
        scores: float64 (N,) finite scores of one class in file order.
        tp_positions: int64 (T,) rows whose rank is wanted.

    Returns:
        int64 (T,): 1 + (rows with a higher score) + (earlier rows with the same score).
    """
    tp_positions = np.asarray(tp_positions, dtype=np.int64)
    if len(tp_positions) == 0:
        return np.empty(0, dtype=np.int64)
    lo, hi = float(scores.min()), float(scores.max())
    num_buckets = _RANK_BUCKETS
    # Monotone in the score (rounding is monotone): a higher bucket means a higher score.
    scale = (num_buckets - 1) / (hi - lo) if hi > lo else 0.0
    if not math.isfinite(scale) or not math.isfinite(hi - lo):
        scale = 0.0  # one bucket: still exact, just not faster
    bucket = ((scores - lo) * scale).astype(np.int64)
    tp_bucket = bucket[tp_positions]
    has_tp = np.zeros(num_buckets, dtype=bool)
    has_tp[tp_bucket] = True
    outside = np.bincount(bucket, minlength=num_buckets)
    outside[has_tp] = 0
    above = np.cumsum(outside[::-1])[::-1]  # above[b] = rows outside TP buckets in buckets >= b
    higher_outside = np.append(above, 0)[tp_bucket + 1]
    inside = np.flatnonzero(has_tp[bucket])  # file order kept
    return higher_outside + _ranks_exact(scores[inside], np.searchsorted(inside, tp_positions))


def _ranks_exact(scores: np.ndarray, tp_positions: np.ndarray) -> np.ndarray:
    """tp_ranks by direct counting: 1 + higher scores + earlier equal scores."""
    levels = np.unique(scores[tp_positions])  # ascending
    below = np.searchsorted(levels, scores, side="left")  # levels strictly below each score
    histogram = np.bincount(below, minlength=len(levels) + 1)
    higher = len(scores) - np.cumsum(histogram)[:len(levels)]  # rows scoring above levels[m]
    equal = np.flatnonzero((below < len(levels)) & (levels[np.minimum(below, len(levels) - 1)] == scores))
    # Among rows with a tied score, file order decides: count the earlier ones.
    n = len(scores) + 1
    tie_keys = np.sort(below[equal].astype(np.int64) * n + equal)  # by level, then row
    level_of_tp = below[tp_positions].astype(np.int64)
    earlier = (np.searchsorted(tie_keys, level_of_tp * n + tp_positions)
               - np.searchsorted(tie_keys, level_of_tp * n))
    return higher[level_of_tp] + earlier + 1


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row i of ``boxes_a`` with row i of ``boxes_b``.

    Args:
        boxes_a, boxes_b: float64 (P, 4) normalized ``x1, y1, x2, y2``.

    Returns:
        float64 (P,).  No +1 convention.  The operations and their order are those of
        ``np_box_ops.iou`` (intersection heights times widths; union = area_a + area_b -
        intersection), so values equal to the threshold compare the same.
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


# ----------------------------------------------------------------------------------------
# Matching: each detection's best ground-truth box, independently of the others
# ----------------------------------------------------------------------------------------


def _best_ground_truth(first: np.ndarray, count: np.ndarray, det_boxes: np.ndarray,
                       gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target box (index into ``gt_boxes``, -1 none) and its IoU (-inf none) per detection.

    Args:
        first, count: int64 (D,) the detection's group of ground-truth boxes is
            ``gt_boxes[first:first + count]``.
        det_boxes: float64 (D, 4); gt_boxes: float64 (G, 4); normalized x1, y1, x2, y2.
    """
    target = np.full(len(first), -1, dtype=np.int64)
    best_iou = np.full(len(first), -np.inf)
    with_gt = np.flatnonzero(count > 0)
    counts = count[with_gt].astype(np.int64)
    for lo, hi in _chunks(counts, _PAIRS_PER_CHUNK):
        idx = with_gt[lo:hi]
        n_pairs = counts[lo:hi]
        seg_start = np.cumsum(n_pairs) - n_pairs
        pair_det = np.repeat(idx, n_pairs)
        pair_gt = np.repeat(first[idx] - seg_start, n_pairs) + np.arange(len(pair_det))
        iou = paired_iou(det_boxes[pair_det], gt_boxes[pair_gt])
        seg_max = np.maximum.reduceat(iou, seg_start)
        # First pair of each segment reaching the segment maximum = np.argmax semantics.
        at_max = np.flatnonzero(iou == np.repeat(seg_max, n_pairs))
        firsts = at_max[_run_starts(pair_det[at_max])]
        target[idx] = pair_gt[firsts]
        best_iou[idx] = iou[firsts]
    return target, best_iou


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """(K,) bool: True at the first element of each run of equal keys."""
    starts = np.ones(len(sorted_keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def _chunks(count: np.ndarray, pairs_per_chunk: int) -> Iterable[tuple[int, int]]:
    """Consecutive ranges [lo, hi) of ``count`` holding about ``pairs_per_chunk`` pairs."""
    ends = np.cumsum(count)
    lo = 0
    while lo < len(count):
        start_pairs = ends[lo - 1] if lo > 0 else 0
        hi = int(np.searchsorted(ends, start_pairs + pairs_per_chunk, side="right"))
        hi = max(hi, lo + 1)  # one detection with more pairs than the budget still runs
        yield lo, hi
        lo = hi


# ----------------------------------------------------------------------------------------
# Keyframes and groups: dense lookup tables where they fit, sorted keys otherwise
# ----------------------------------------------------------------------------------------


def _frame_keys(video: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """int64 key per (video code, timestamp); timestamps >= 2**32 get key -1 (never GT)."""
    timestamp = np.asarray(timestamp, dtype=np.int64)
    keys = (np.asarray(video, dtype=np.int64) << 32) | (timestamp & 0xFFFFFFFF)
    return np.where((timestamp >= 0) & (timestamp < (1 << 32)), keys, -1)


class _KeyframeIndex:
    """Keyframes with ground truth (ids 0..F-1) and excluded keyframes, looked up by key."""

    def __init__(self, gt_keys: np.ndarray, excluded_keys: np.ndarray) -> None:
        self.keys = np.unique(gt_keys)
        self.num_frames = len(self.keys)
        self._excluded = excluded_keys[excluded_keys >= 0]
        both = np.concatenate([self.keys, self._excluded])
        self._dense = None
        if len(both):
            ts = both & 0xFFFFFFFF
            self._ts_lo, ts_hi, num_videos = int(ts.min()), int(ts.max()), int((both >> 32).max()) + 1
            self._span = ts_hi - self._ts_lo + 1
            if num_videos * self._span <= _MAX_DENSE:
                self._num_videos = num_videos
                frame = np.full(num_videos * self._span, -1, dtype=np.int32)
                frame[self._slot(self.keys)] = np.arange(self.num_frames, dtype=np.int32)
                excluded = np.zeros(num_videos * self._span, dtype=bool)
                excluded[self._slot(self._excluded)] = True
                self._dense = (frame, excluded)

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return (keys >> 32) * self._span + ((keys & 0xFFFFFFFF) - self._ts_lo)

    def lookup(self, video: np.ndarray, timestamp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame id int32 (N,), -1 without GT; excluded bool (N,))."""
        if self._dense is not None:
            frame_table, excluded_table = self._dense
            ts = timestamp - self._ts_lo
            inside = (video < self._num_videos) & (ts >= 0) & (ts < self._span)
            slot = np.where(inside, video.astype(np.int64) * self._span + ts, 0)
            return (np.where(inside, frame_table[slot], -1).astype(np.int32),
                    inside & excluded_table[slot])
        keys = _frame_keys(video, timestamp)
        return _sorted_lookup(self.keys, keys).astype(np.int32), _sorted_lookup(self._excluded, keys) >= 0


def _sorted_lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in ``sorted_keys`` (unique), -1 where absent or key < 0."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where((sorted_keys[pos] == keys) & (keys >= 0), pos, -1)


class _GroupIndex:
    """Ground-truth rows sorted by (keyframe, class) group: first row and count per group."""

    def __init__(self, sorted_groups: np.ndarray, num_groups: int) -> None:
        self._dense = num_groups < _MAX_DENSE
        if self._dense:
            # One extra slot with count 0 stands for "no group" (-1).
            count = np.bincount(sorted_groups, minlength=num_groups + 1)
            self._count, self._first = count.astype(np.int32), np.cumsum(count) - count
        else:
            self._groups, first = np.unique(sorted_groups, return_index=True)
            count = np.diff(np.append(first, len(sorted_groups)))
            self._first, self._count = np.append(first, 0), np.append(count, 0)

    def lookup(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first int64 (N,), count int64 (N,)); group -1 (or unknown) has count 0.
        ``first`` is only meaningful where ``count > 0``."""
        if self._dense:
            slot = np.where(groups >= 0, groups, len(self._count) - 1)
        else:
            slot = _sorted_lookup(self._groups, groups)
            slot[slot < 0] = len(self._count) - 1
        count = self._count[slot]
        first = np.zeros(len(slot), dtype=np.int64)
        with_gt = np.flatnonzero(count)
        first[with_gt] = self._first[slot[with_gt]]
        return first, count


# ----------------------------------------------------------------------------------------
# Filters and checks
# ----------------------------------------------------------------------------------------


def _top_k_per_frame(frame: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """(D,) bool: among the rows of each keyframe, the k highest scores (ties: table order).

    Args:
        frame: int64 (D,) keyframe key (a timestamp or a (video, timestamp) key).
        scores: float64 (D,).
    """
    if k < 0:
        raise ValueError(f"max_dets_per_keyframe must be >= 0, got {k}")
    by_score = np.argsort(-scores, kind="stable")
    span = int(frame.max() - frame.min()) if len(frame) else 0
    # Small key ranges (timestamps of one video) sort as int16: a linear radix sort.
    key = (frame - frame.min()).astype(np.int16) if span < 2**15 else frame
    order = by_score[np.argsort(key[by_score], kind="stable")]
    sorted_frame = frame[order]
    position = np.arange(len(order)) - np.searchsorted(sorted_frame, sorted_frame, side="left")
    keep = np.zeros(len(frame), dtype=bool)
    keep[order[position < k]] = True
    return keep


def _top_k_keep_file(path: PathLike, *, vocab: VideoVocab, acc: FrameMapAccumulator, k: int) -> np.ndarray:
    """First pass over a detection file: bool (rows,) of the rows within the top-k cap.

    Rows are kept per video (16 bytes a row: timestamp, score, row number), so the ranking
    runs one video at a time on small arrays instead of one sort of the whole file.
    """
    per_video: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    total = 0
    for batch in iter_box_csv(path, vocab=vocab):
        evaluated = np.flatnonzero(acc.class_index(batch.action) >= 0)
        video = batch.video[evaluated]
        by_video = np.argsort(video, kind="stable")
        bounds = np.flatnonzero(np.diff(video[by_video])) + 1
        for part in np.split(by_video, bounds):
            if len(part):
                rows = evaluated[part]
                per_video.setdefault(int(video[part[0]]), []).append(
                    (batch.timestamp[rows], batch.extra[rows], (rows + batch.first_row).astype(np.int64)))
        total = batch.first_row + len(batch)
    keep = np.zeros(total, dtype=bool)
    for code in list(per_video):
        ts, scores, rows = (np.concatenate(c) for c in zip(*per_video.pop(code)))
        keep[rows[_top_k_per_frame(ts, scores, k)]] = True
    return keep


def _check_labelmap(labelmap: dict[int, str]) -> np.ndarray:
    """Sorted int64 class ids; the official evaluator requires a non-empty, 1-based map."""
    if not labelmap:
        raise ValueError("the label map is empty: no class to evaluate")
    class_ids = np.array(sorted(int(k) for k in labelmap), dtype=np.int64)
    if class_ids[0] < 1:
        raise ValueError(f"class ids must be >= 1 (as in the official evaluator), got {class_ids[0]}")
    if class_ids[-1] > 1 << 24:
        raise ValueError(f"class id {class_ids[-1]} is too large (at most 2**24)")
    return class_ids


def _mean_ap(class_ids: np.ndarray, per_class_ap: dict[str, Optional[float]]) -> float:
    """``np.nanmean`` over the per-id AP array (NaN for ids without ground truth).

    The official evaluator averages an array indexed by class id - 1 holding NaN for ids
    without ground truth; building the same array keeps its summation order and so its
    last bit.
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


__all__ = [
    "FrameMapAccumulator", "ava_frame_map", "ava_frame_map_files", "paired_iou",
    "tp_ranks", "voc_ap_from_tp_ranks", "voc_average_precision",
]
