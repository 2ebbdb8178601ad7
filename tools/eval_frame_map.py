#!/usr/bin/env python
"""Frame-mAP of a detection file against ground truth, with the official AVA semantics.

    python tools/eval_frame_map.py --format ava --gt GT.csv --det DET.csv \\
        --labelmap LABELMAP.pbtxt [--excluded EXCL.csv] [--iou 0.5] --out RESULT.json

Writes RESULT.json (frame_mAP, per_class_AP, num_gt, num_det; a class without ground
truth has AP null) and prints a per-class table. The logic lives in
stal.evaluation.frame_map; bad input prints one line ``error: ...`` and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import NoReturn

try:
    import stal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.data.ava_format import atomic_write_text, read_labelmap  # noqa: E402
from stal.errors import StalError  # noqa: E402
from stal.evaluation.frame_map import ava_frame_map_files  # noqa: E402

EXIT_BAD_INPUT = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["ava"], default="ava",
                        help="annotation format and protocol (only 'ava': AVA CSVs, official AVA frame-mAP)")
    parser.add_argument("--gt", required=True, metavar="GT.csv",
                        help="ground-truth CSV: video_id,timestamp,x1,y1,x2,y2,action_id,person_id (no header)")
    parser.add_argument("--det", required=True, metavar="DET.csv",
                        help="detection CSV: video_id,timestamp,x1,y1,x2,y2,action_id,score (no header)")
    parser.add_argument("--labelmap", required=True, metavar="LABELMAP.pbtxt",
                        help="label map of the classes to evaluate (item { name: \"...\" id: N } blocks)")
    parser.add_argument("--excluded", default=None, metavar="EXCL.csv",
                        help="optional CSV of video_id,timestamp keyframes to leave out of the evaluation")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="IoU a detection needs with a ground-truth box to be a true positive (default 0.5)")
    parser.add_argument("--max-dets-per-keyframe", type=int, default=None, metavar="K",
                        help="keep only the K highest-scoring detections per keyframe "
                             "(ActivityNet's evaluator uses 50; default: keep all, as PySlowFast)")
    parser.add_argument("--out", required=True, metavar="RESULT.json",
                        help="where to write the result JSON (written atomically)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.iou <= 1.0:
        parser.error(f"--iou must be in [0, 1], got {args.iou}")
    return args


def format_table(result: dict, names: dict[int, str], iou: float) -> str:
    """Per-class table and the mAP, as printed by the tool."""
    lines = [f"{'id':>4}  {'AP':>7}  {'#gt':>7}  {'#det':>8}  name"]
    for key, ap in result["per_class_AP"].items():
        ap_text = "    n/a" if ap is None else f"{ap:7.4f}"
        lines.append(f"{key:>4}  {ap_text}  {result['num_gt'][key]:>7}  "
                     f"{result['num_det'][key]:>8}  {names.get(int(key), '')}")
    mean = result["frame_mAP"]
    lines.append(f"frame-mAP@{iou:g}: {'n/a (no ground truth)' if math.isnan(mean) else f'{mean:.4f}'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        names = read_labelmap(args.labelmap)
        result = ava_frame_map_files(
            args.gt, args.det, args.labelmap,
            excluded_csv=args.excluded,
            iou_threshold=args.iou,
            max_dets_per_keyframe=args.max_dets_per_keyframe,
        )
        print(format_table(result, names, args.iou))
        payload = dict(result)
        # Strict JSON has no NaN: no ground truth at all -> null, like a class without any.
        payload["frame_mAP"] = None if math.isnan(result["frame_mAP"]) else result["frame_mAP"]
        payload["iou_threshold"] = args.iou
        atomic_write_text(args.out, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    except (StalError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. the output directory does not exist
        print(f"error: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
