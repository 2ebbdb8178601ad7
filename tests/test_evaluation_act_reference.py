"""Random cases: stal's ACT evaluation equals the loop re-implementation of ACT's code
(tests/act_loop_reference.py) to 1e-6 per class, on ACT's tubelet pickles and on per-frame CSVs."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

import act_loop_reference as ref
from stal.evaluation import act_map
from stal.formats.act import ActAnnotations, write_act_pickle

NLABELS = 3


def _walk(rng, n: int) -> np.ndarray:
    """(n, 4) boxes drifting a few pixels a frame, x2 > x1, y2 > y1, in a 320 x 240 frame."""
    x, y = rng.uniform(0, 200), rng.uniform(0, 120)
    w, h = rng.uniform(30, 100), rng.uniform(30, 100)
    steps = np.cumsum(rng.normal(0, 2, (n, 2)), axis=0)
    return np.stack([x + steps[:, 0], y + steps[:, 1], x + w + steps[:, 0], y + h + steps[:, 1]], axis=1)


def _case(seed: int, k: int):
    """Annotations, ACT's dets / dets_all per video and start frame (float32, as ACT stores them)."""
    rng = np.random.default_rng(seed)
    videos = [f"c{i % NLABELS}/v{i}" for i in range(2 * NLABELS)]
    nframes = {v: int(rng.integers(20, 32)) for v in videos}
    gttubes = {}
    for i, v in enumerate(videos):
        tubes = []
        for _ in range(int(rng.integers(1, 3))):
            first = int(rng.integers(1, 6))
            last = int(rng.integers(first + 12, nframes[v] + 1))
            tubes.append(np.concatenate([np.arange(first, last + 1)[:, None], _walk(rng, last - first + 1)], axis=1))
        gttubes[v] = {i % NLABELS: tubes}
    dets, dets_all, used = {}, {}, set()
    for v in videos:
        dets[v], dets_all[v] = {}, {}
        label = next(iter(gttubes[v]))
        for start in range(1, nframes[v] - k + 2):
            rows = []  # tubelets near the ground truth first, then random ones
            for tube in gttubes[v][label]:
                frames = tube[:, 0]
                if frames[0] <= start and start + k - 1 <= frames[-1] and rng.random() < 0.85:
                    at = int(start - frames[0])
                    rows.append(tube[at:at + k, 1:5] + rng.normal(0, 3, (k, 4)))
            near = len(rows)
            for _ in range(int(rng.integers(0, 4))):
                rows.append(_walk(rng, k))
            boxes = np.array(rows).reshape(len(rows), 4 * k)
            scores = rng.uniform(0.0, 1.0, (len(rows), NLABELS))
            while any(s in used for s in scores.flat):  # distinct scores: no tie-order question
                scores = rng.uniform(0.0, 1.0, scores.shape)
            scores[:near, label] += 0.5
            used.update(scores.flat)
            background = rng.uniform(0, 1, (len(rows), 1))
            dets_all[v][start] = np.concatenate([boxes, background, scores], axis=1).astype(np.float32)
            best = scores.argmax(axis=1)
            dets[v][start] = np.concatenate([best[:, None], scores.max(axis=1)[:, None], boxes],
                                            axis=1).astype(np.float32)
    ann = ActAnnotations(labels=[f"class{i}" for i in range(NLABELS)], train_videos=[[videos[0]]],
                         test_videos=[videos], nframes=nframes,
                         resolution={v: (240, 320) for v in videos}, gttubes=gttubes, source="random")
    return ann, dets, dets_all


def _write_dir(root: Path, dets, dets_all) -> None:
    for v in dets:
        (root / v).mkdir(parents=True)
        for start in dets[v]:
            with open(root / v / f"{start:05d}.pkl", "wb") as f:
                pickle.dump((dets[v][start], dets_all[v][start]), f, protocol=2)


def _float64_gt(ann):
    return {v: {lab: [t.astype(np.float64) for t in ts] for lab, ts in d.items()} for v, d in ann.gttubes.items()}


@pytest.mark.parametrize("seed,k", [(0, 6), (1, 6), (2, 1), (3, 2)])
def test_tubelet_pickles_equal_act_frame_and_video_ap(tmp_path: Path, seed: int, k: int) -> None:
    ann, dets, dets_all = _case(seed, k)
    write_act_pickle(tmp_path / "gt.pkl", ann)
    _write_dir(tmp_path / "det", dets, dets_all)
    gt = _float64_gt(ann)
    videos = ann.test_videos[0]
    rows = ref.frame_rows(dets, ann.nframes, NLABELS, nms=0.3)
    want = ref.frame_ap(rows, gt, videos, NLABELS)
    # bridged frames (K < 5) as ACT leaves them: NaN
    got = act_map.act_evaluate_files(tmp_path / "gt.pkl", tmp_path / "det", video_map=True, bridged="nan")
    assert [got["per_class_AP"][str(i)] for i in range(NLABELS)] == pytest.approx(want, abs=1e-6)
    assert got["counts"]["det_suppressed_by_frame_nms"] > 0
    assert 0.05 < got["frame_mAP"] < 0.95  # a case with TPs and FPs both
    for th in (0.2, 0.5, 0.75):
        want_v = ref.video_ap(dets_all, gt, videos, ann.nframes, NLABELS, k, th)
        got_v = got["per_class_video_AP"][f"{th:g}"]
        assert [got_v[str(i)] for i in range(NLABELS)] == pytest.approx(want_v, abs=1e-6), th
    assert 0.0 < got["video_mAP"]["0.2"]


def _csv_rows(dets):
    """Per-frame CSV rows from K = 1 dets (video, frame, box, label, score)."""
    out = []
    for v in dets:
        for start, array in dets[v].items():
            for r in array:
                out.append((v, start, *r[2:6].tolist(), int(r[0]), float(r[1])))
    return out


@pytest.mark.parametrize("seed,linking", [(4, "act"), (5, "moc"), (6, "act")])
def test_per_frame_csv_equals_act_with_per_class_rows(tmp_path: Path, seed: int, linking: str) -> None:
    ann, dets, _ = _case(seed, 1)
    write_act_pickle(tmp_path / "gt.pkl", ann)
    rows = _csv_rows(dets)
    csv = tmp_path / "det.csv"
    csv.write_text("".join(",".join(map(repr, r)).replace("'", "") + "\n" for r in rows))
    gt = _float64_gt(ann)
    videos = ann.test_videos[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = act_map.act_evaluate_files(tmp_path / "gt.pkl", csv, video_map=True, linking=linking, bridged="nan")
    want = ref.frame_ap(ref.frame_rows(dets, ann.nframes, NLABELS, nms=0.3), gt, videos, NLABELS)
    assert [got["per_class_AP"][str(i)] for i in range(NLABELS)] == pytest.approx(want, abs=1e-6)
    raw = act_map.act_evaluate_files(tmp_path / "gt.pkl", csv, frame_nms=None)
    want_raw = ref.frame_ap(ref.frame_rows(dets, ann.nframes, NLABELS, nms=None), gt, videos, NLABELS)
    assert [raw["per_class_AP"][str(i)] for i in range(NLABELS)] == pytest.approx(want_raw, abs=1e-6)
    assert want_raw != pytest.approx(want, abs=1e-3)  # the NMS matters on this case
    # A CSV row has the score of its own class only: each class links its own rows.
    params = {"act": {}, "moc": {"nms": 0.6, "end_after": 1, "min_score": 0.005}}[linking]
    per_class = {}
    for label in range(NLABELS):
        own = {v: {s: np.concatenate([a[a[:, 0] == label][:, 2:6], np.zeros((int((a[:, 0] == label).sum()), 1)),
                                      a[a[:, 0] == label][:, 1:2]], axis=1) for s, a in dets[v].items()}
               for v in videos}
        gt_label = {v: {0: gt[v].get(label, [])} for v in videos}
        for th in (0.2, 0.5):
            per_class[(label, th)] = ref.video_ap(own, gt_label, videos, ann.nframes, 1, 1, th, **params)[0]
    for (label, th), want_ap in per_class.items():
        assert got["per_class_video_AP"][f"{th:g}"][str(label)] == pytest.approx(want_ap, abs=1e-6)
