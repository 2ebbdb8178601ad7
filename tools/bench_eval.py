#!/usr/bin/env python
"""Benchmark of the AVA frame-mAP evaluator against a plain loop, on generated data.

    python tools/bench_eval.py [--videos 4 64] [--loop-videos 1] [--keep DIR]

For each size, generates AVA-format files the shape of AVA v2.2 validation (64 videos
= 57,408 keyframes, 15 person boxes per keyframe x 80 classes = about 69M detection
rows; a 60-class label map; ground truth of 1-8 persons per keyframe), runs
``tools/eval_frame_map.py`` on them in a fresh process and reports its wall time
(start-up and CSV reading included) and peak memory (max RSS).  The loop
implementation of the tests (tests/ava_loop_reference.py: csv.reader, then one
detection at a time) runs at ``--loop-videos`` only, and its time is extrapolated
linearly in the number of detection rows; the output says so.  Both results are
compared at that size.  Files go to a temporary directory that is deleted afterwards.
The machine may be shared: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYFRAMES = np.arange(902, 1799)  # AVA: seconds 902..1798 of each 15-minute segment
NUM_CLASSES = 80
# 60 evaluated classes out of 80, as in AVA v2.2 (which ones does not matter here).
EVALUATED = [c for c in range(1, NUM_CLASSES + 1) if c % 4 != 2]


def generate(root: str, *, videos: int, boxes_per_keyframe: int = 15, seed: int = 0) -> dict:
    """Write gt.csv, det.csv, labelmap.pbtxt, excluded.csv under ``root``; return paths and sizes."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    ts_text = pa.array([f"{t:04d}" for t in KEYFRAMES])
    schema = pa.schema([("v", pa.dictionary(pa.int32(), pa.string())),
                        ("t", pa.dictionary(pa.int32(), pa.string()))]
                       + [(n, pa.float64()) for n in ("x1", "y1", "x2", "y2")]
                       + [("a", pa.int32()), ("e", pa.float64())])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    paths = {k: os.path.join(root, k) for k in ("gt.csv", "det.csv", "labelmap.pbtxt", "excluded.csv")}
    n_gt = n_det = 0
    with pacsv.CSVWriter(paths["gt.csv"], schema, write_options=options) as gt_out, \
            pacsv.CSVWriter(paths["det.csv"], schema, write_options=options) as det_out:
        for v in range(videos):
            gt, det = _video_tables(rng, v, boxes_per_keyframe)
            for out, (frame, boxes, action, extra) in ((gt_out, gt), (det_out, det)):
                video = pa.DictionaryArray.from_arrays(np.zeros(len(frame), np.int32), [f"bench{v:03d}_xyzw"])
                ts = pa.DictionaryArray.from_arrays(frame.astype(np.int32), ts_text)
                out.write_table(pa.table([video, ts, *boxes.T, action.astype(np.int32), extra], schema=schema))
            n_gt, n_det = n_gt + len(gt[0]), n_det + len(det[0])
    with open(paths["labelmap.pbtxt"], "w") as f:
        f.write("".join(f'item {{\n  name: "action {c}"\n  id: {c}\n}}\n' for c in EVALUATED))
    with open(paths["excluded.csv"], "w") as f:
        f.write("".join(f"bench{v:03d}_xyzw,{KEYFRAMES[v % 50]:04d}\n" for v in range(videos)))
    return {**paths, "gt_rows": n_gt, "det_rows": n_det, "det_mb": os.path.getsize(paths["det.csv"]) / 1e6}


def _video_tables(rng: np.random.Generator, v: int, boxes_per_keyframe: int) -> tuple:
    """(frame index, boxes (N, 4), action, extra) for the ground truth and the detections of one video."""
    k = len(KEYFRAMES)
    persons = rng.integers(1, 9, size=k)
    gt_frame = np.repeat(np.arange(k), persons)
    gt_boxes = _random_boxes(rng, len(gt_frame))
    labels = rng.integers(1, 4, size=len(gt_frame))  # 1-3 actions per person
    row_person = np.repeat(np.arange(len(gt_frame)), labels)
    gt = (gt_frame[row_person], gt_boxes[row_person], rng.integers(1, NUM_CLASSES + 1, len(row_person)),
          row_person.astype(np.float64))
    # Detections: the first boxes of a keyframe are jittered ground-truth persons, the rest random.
    det_frame = np.repeat(np.arange(k), boxes_per_keyframe)
    det_boxes = _random_boxes(rng, len(det_frame))
    slot = np.tile(np.arange(boxes_per_keyframe), k)
    first_person = np.cumsum(persons) - persons
    hit = slot < persons[det_frame]
    jitter = rng.normal(0.0, 0.03, size=(int(hit.sum()), 4))
    det_boxes[hit] = _fix_boxes(gt_boxes[first_person[det_frame[hit]] + slot[hit]] + jitter)
    n = len(det_frame) * NUM_CLASSES
    det = (np.repeat(det_frame, NUM_CLASSES), np.repeat(det_boxes, NUM_CLASSES, axis=0),
           np.tile(np.arange(1, NUM_CLASSES + 1), len(det_frame)), np.round(rng.random(n), 6))
    return gt, det


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.random((n, 2)) * 0.7
    wh = 0.05 + rng.random((n, 2)) * 0.25
    return _fix_boxes(np.concatenate([xy, xy + wh], axis=1))


def _fix_boxes(boxes: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] with 3 decimals (as AVA files) and keep x1 < x2, y1 < y2."""
    boxes = np.round(np.clip(boxes, 0.0, 1.0), 3)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], np.minimum(boxes[:, :2] + 0.01, 1.0))
    boxes[:, :2] = np.minimum(boxes[:, :2], boxes[:, 2:] - 0.001)
    return boxes


def run_measured(argv: list[str]) -> tuple[float, float, float, str]:
    """Run a command in a fresh process: (wall s, CPU s (user + sys), peak RSS in GB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its own rusage is ours
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[1]} failed ({proc.returncode}): {err.read().strip()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e9, out.read()


_LOOP = """
import json, sys
sys.path.insert(0, {tests!r})
from ava_loop_reference import reference_frame_map_files
from stal.formats.ava import read_excluded, read_labelmap
r = reference_frame_map_files({gt!r}, {det!r}, read_labelmap({lm!r}), read_excluded({ex!r}))
print(json.dumps(r))
"""


def evaluator(files: dict, out_json: str) -> tuple[float, float, float, dict]:
    wall, cpu, peak, _ = run_measured([sys.executable, os.path.join(REPO, "tools", "eval_frame_map.py"),
                                  "--format", "ava", "--gt", files["gt.csv"], "--det", files["det.csv"],
                                  "--labelmap", files["labelmap.pbtxt"], "--excluded", files["excluded.csv"],
                                  "--out", out_json])
    with open(out_json) as f:
        return wall, cpu, peak, json.load(f)


def loop(files: dict) -> tuple[float, float, float, dict]:
    code = _LOOP.format(tests=os.path.join(REPO, "tests"), gt=files["gt.csv"], det=files["det.csv"],
                        lm=files["labelmap.pbtxt"], ex=files["excluded.csv"])
    wall, cpu, peak, out = run_measured([sys.executable, "-c", code])
    return wall, cpu, peak, json.loads(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, nargs="+", default=[4, 64],
                        help="sizes to time the evaluator at, in videos of 897 keyframes (64 = AVA v2.2 val)")
    parser.add_argument("--loop-videos", type=int, default=1, help="size at which the loop runs (extrapolated)")
    parser.add_argument("--boxes-per-keyframe", type=int, default=15)
    parser.add_argument("--keep", default=None, help="write the files here and keep them")
    args = parser.parse_args(argv)

    root = args.keep or tempfile.mkdtemp(prefix="stal_bench_eval_")
    os.makedirs(root, exist_ok=True)
    try:
        print(f"generating {args.loop_videos} video(s) for the loop baseline ...", flush=True)
        small = generate(os.path.join(root, "loop"), videos=args.loop_videos,
                         boxes_per_keyframe=args.boxes_per_keyframe) if _mkdir(root, "loop") else None
        loop_wall, loop_cpu, loop_peak, loop_result = loop(small)
        fast_wall, _, _, fast_result = evaluator(small, os.path.join(root, "loop", "result.json"))
        diff = _max_ap_difference(loop_result, fast_result)
        per_row, cpu_per_row = loop_wall / small["det_rows"], loop_cpu / small["det_rows"]
        print(f"loop at {small['det_rows']:,} detection rows: {loop_wall:.1f} s ({per_row * 1e6:.2f} us/row; "
              f"CPU {loop_cpu:.1f} s), "
              f"peak {loop_peak:.2f} GB; evaluator {fast_wall:.2f} s; largest per-class AP difference "
              f"{diff:.1e}", flush=True)
        header = ("| videos | detection rows | CSV GB | evaluator s (CPU s) | evaluator peak GB | "
                  "loop s (extrapolated) | speed-up (CPU) |")
        lines = [header, "|---:|---:|---:|---:|---:|---:|---:|"]
        for videos in args.videos:
            print(f"generating {videos} videos ...", flush=True)
            _mkdir(root, f"v{videos}")
            files = generate(os.path.join(root, f"v{videos}"), videos=videos,
                             boxes_per_keyframe=args.boxes_per_keyframe)
            wall, cpu, peak, result = evaluator(files, os.path.join(root, f"v{videos}", "result.json"))
            loop_estimate, loop_cpu_estimate = per_row * files["det_rows"], cpu_per_row * files["det_rows"]
            lines.append(f"| {videos} | {files['det_rows']:,} | {files['det_mb'] / 1e3:.2f} | {wall:.1f} ({cpu:.1f}) | "
                         f"{peak:.2f} | {loop_estimate:.0f} | {loop_estimate / wall:.0f}x "
                         f"({loop_cpu_estimate / cpu:.0f}x) |")
            print(lines[-1], f"(frame-mAP {result['frame_mAP']:.4f})", flush=True)
            shutil.rmtree(os.path.join(root, f"v{videos}"), ignore_errors=args.keep is None)
        print()
        print("\n".join(lines))
        print(f"Loop: tests/ava_loop_reference.py timed at {small['det_rows']:,} rows "
              f"({args.loop_videos} video) and extrapolated linearly in rows; evaluator: "
              f"tools/eval_frame_map.py in a fresh process (start-up and CSV reading included), "
              f"peak = max RSS; CPU = user + sys of that process. Same machine, same run; "
              f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _mkdir(root: str, name: str) -> bool:
    os.makedirs(os.path.join(root, name), exist_ok=True)
    return True


def _max_ap_difference(a: dict, b: dict) -> float:
    diffs = [abs(x - b["per_class_AP"][k]) for k, x in a["per_class_AP"].items() if x is not None]
    return max(diffs, default=0.0)


if __name__ == "__main__":
    sys.exit(main())
