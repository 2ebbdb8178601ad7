#!/usr/bin/env python
"""Frame-mAP (and video-mAP) of a detection file against ground truth.

AVA (official AVA semantics; see docs/evaluation.md):

    python tools/eval_frame_map.py --format ava --gt GT.csv --det DET.csv \\
        --labelmap LABELMAP.pbtxt [--excluded EXCL.csv] [--iou 0.5] --out RESULT.json \\
        [--top-k-per-frame 50] [--ignore-empty-frames] [--match-order score|file] [--strict]

UCF101-24 / JHMDB-21 (ACT protocol, or --protocol yowo for VOC-style frame-mAP):

    python tools/eval_frame_map.py --format ucf24 --gt UCF101v2-GT.pkl --det DET.csv|DIR \\
        [--split 1] [--protocol act|yowo] [--frame-nms none|IOU] [--testlist testlist.txt] \\
        [--round-boxes] [--video-map [--linking act|moc] [--bridged-frames interpolate|nan]] \\
        --out RESULT.json

Writes RESULT.json with ``frame_mAP`` (float in [0, 1], null without any ground truth)
and ``per_class_AP`` (class id or index as a string -> AP, null for a class without
ground truth; 0 with --protocol act, as ACT counts it), and prints a per-class table with class names.  Bad input prints one
line ``error: ...`` (file and line) and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from stal.cli.common import OneLineParser, run_reporting_errors
from stal.evaluation.act_map import act_evaluate_files
from stal.evaluation.frame_map import ava_frame_map_files
from stal.formats.ava import read_labelmap
from stal.io.atomic import atomic_write_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["ava", "ucf24", "jhmdb"], default="ava",
                        help="ava: AVA CSVs, official AVA frame-mAP; ucf24/jhmdb: ACT ground-truth pickle "
                             "and a per-frame detection CSV (docs/evaluation.md)")
    parser.add_argument("--gt", required=True, metavar="GT",
                        help="ava: CSV video_id,timestamp,x1,y1,x2,y2,action_id,person_id (no header); "
                             "ucf24/jhmdb: UCF101v2-GT.pkl / JHMDB-GT.pkl")
    parser.add_argument("--det", required=True, metavar="DET.csv",
                        help="ava: CSV video_id,timestamp,x1,y1,x2,y2,action_id,score; "
                             "ucf24/jhmdb: CSV video,frame,x1,y1,x2,y2,label,score (pixels, frame 1-based, "
                             "label 0-based into the pickle's labels)")
    parser.add_argument("--labelmap", default=None, metavar="LABELMAP.pbtxt",
                        help="ava (required): classes to evaluate (item { name: \"...\" id: N } blocks)")
    parser.add_argument("--excluded", default=None, metavar="EXCL.csv",
                        help="ava: CSV of video_id,timestamp keyframes to leave out")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="IoU a detection needs with a ground-truth box to be a true positive (default 0.5)")
    parser.add_argument("--top-k-per-frame", "--max-dets-per-keyframe", dest="top_k", type=int, default=None,
                        metavar="K", help="ava: keep the K highest-scoring detections per keyframe "
                                          "(ActivityNet's evaluator: 50; default: all, as PySlowFast)")
    parser.add_argument("--match-order", choices=["score", "file"], default="score",
                        help="ava: order in which a keyframe's detections claim ground truth: score (the "
                             "official evaluator and mmaction2, default) or file (PySlowFast's "
                             "ava_eval_helper, which does not sort); the same on score-sorted files, "
                             "as stal writes them")
    parser.add_argument("--ignore-empty-frames", action="store_true",
                        help="ava: drop detections on keyframes without ground truth (mmaction2's option); "
                             "default: they are false positives, as in the official evaluator")
    parser.add_argument("--strict", action="store_true",
                        help="a detection row whose action id is not in the label map (ava), a repeated row "
                             "(ava) or detections of a video the ground truth lacks (ucf24/jhmdb) is an error "
                             "(default: skipped or kept as the reference does, and warned with the count)")
    parser.add_argument("--split", type=int, default=1, help="ucf24/jhmdb: split (JHMDB has 1-3)")
    parser.add_argument("--protocol", choices=["act", "yowo"], default="act",
                        help="ucf24/jhmdb: act (ACT frame-mAP, +1 pixel IoU, trapezoid AP) or yowo "
                             "(VOC all-point frame-mAP, as YOWO reports)")
    parser.add_argument("--frame-nms", default=None, metavar="none|IOU",
                        help="ucf24/jhmdb: per-frame, per-class NMS before frame matching; default: 0.3 with "
                             "--protocol act (ACT's load_frame_detections), none with yowo")
    parser.add_argument("--testlist", default=None, metavar="testlist.txt",
                        help="ucf24/jhmdb: evaluate only the frames YOWO's testlist.txt lists (frame-mAP)")
    parser.add_argument("--round-boxes", action="store_true",
                        help="ucf24/jhmdb: round detection boxes to integers as YOWO writes them")
    parser.add_argument("--video-map", action="store_true",
                        help="ucf24/jhmdb: also link detections into tubes and report video-mAP at "
                             "0.2, 0.5, 0.75 and 0.5:0.95")
    parser.add_argument("--linking", choices=["act", "moc"], default="act",
                        help="ucf24/jhmdb video-mAP: act (ACT's BuildTubes: NMS 0.3, a tube waits 5 frames, "
                             "min score 0.01) or moc (MOC-Detector's constants: NMS 0.6, ends after K frames "
                             "without a match, min score 0.005)")
    parser.add_argument("--bridged-frames", choices=["interpolate", "nan"], default="interpolate",
                        help="ucf24/jhmdb video-mAP: tube frames no tubelet covers (K < 5, act linking): "
                             "boxes interpolated, or NaN as ACT's code leaves them (never a match)")
    parser.add_argument("--out", required=True, metavar="RESULT.json",
                        help="where to write the result JSON (written atomically)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.iou <= 1.0:
        parser.error(f"--iou must be in [0, 1], got {args.iou}")
    if args.format == "ava" and args.labelmap is None:
        parser.error("--format ava needs --labelmap")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top-k-per-frame must be >= 1, got {args.top_k}")
    args.frame_nms = _frame_nms(parser, args.frame_nms)
    _check_out(parser, args)
    return args


def _frame_nms(parser: argparse.ArgumentParser, value):
    """--frame-nms: "protocol" (default), None for "none", or an overlap in [0, 1]."""
    if value is None:
        return "protocol"
    if value.lower() == "none":
        return None
    try:
        overlap = float(value)
    except ValueError:
        overlap = -1.0
    if not 0.0 <= overlap <= 1.0:
        parser.error(f"--frame-nms must be 'none' or an IoU in [0, 1], got {value!r}")
    return overlap


def _check_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before any work: --out must not be one of the inputs (the JSON would replace it), and its
    folder must exist and be writable (else the error would come after the evaluation)."""
    out = os.path.realpath(args.out)
    for flag in ("gt", "det", "labelmap", "excluded", "testlist"):
        path = getattr(args, flag)
        if path is not None and (os.path.realpath(path) == out or (os.path.exists(out) and os.path.exists(path)
                                                                   and os.path.samefile(path, out))):
            parser.error(f"--out {args.out} is the --{flag} file; the result would replace it")
    folder = os.path.dirname(out)
    if not os.path.isdir(folder):
        parser.error(f"--out {args.out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        parser.error(f"--out {args.out}: folder {folder} is not writable")
    if os.path.isdir(out):
        parser.error(f"--out {args.out} is a directory; expected a file name")


def format_table(result: dict, names: dict, iou: float) -> str:
    """Per-class table and the mAP, as printed by the tool."""
    lines = [f"{'id':>4}  {'AP':>7}  {'#gt':>7}  {'#det':>9}  name"]
    for key, ap in result["per_class_AP"].items():
        ap_text = "    n/a" if ap is None else f"{ap:7.4f}"
        lines.append(f"{key:>4}  {ap_text}  {result['num_gt'][key]:>7}  "
                     f"{result['num_det'][key]:>9}  {names.get(int(key), '')}")
    mean = result["frame_mAP"]
    lines.append(f"frame-mAP@{iou:g}: {'n/a (no ground truth)' if _nan(mean) else f'{mean:.4f}'}")
    for key, value in result.get("video_mAP", {}).items():
        lines.append(f"video-mAP@{key}: {'n/a' if _nan(value) else f'{value:.4f}'}")
    return "\n".join(lines)


def _nan_to_none(value):
    """A copy of nested dicts/lists with every NaN float replaced by None."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if _nan(value) else value


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def evaluate_ava(args: argparse.Namespace) -> tuple[dict, dict]:

    names = read_labelmap(args.labelmap)
    result = ava_frame_map_files(
        args.gt, args.det, args.labelmap, excluded_csv=args.excluded, iou_threshold=args.iou,
        max_dets_per_keyframe=args.top_k, ignore_empty_frames=args.ignore_empty_frames, strict=args.strict,
        match_order=args.match_order)
    return result, names


def evaluate_act(args: argparse.Namespace) -> tuple[dict, dict]:
    result = act_evaluate_files(args.gt, args.det, split=args.split, protocol=args.protocol,
                                iou_threshold=args.iou, video_map=args.video_map, strict=args.strict,
                                frame_nms=args.frame_nms, testlist=args.testlist, round_boxes=args.round_boxes,
                                linking=args.linking, bridged=args.bridged_frames)
    return result, dict(enumerate(result.pop("labels")))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_reporting_errors(lambda: _evaluate_and_write(args), out=args.out)


def _evaluate_and_write(args: argparse.Namespace) -> None:
    """Evaluate, print the table and the counts, write the JSON (bad input raises)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, names = (evaluate_ava if args.format == "ava" else evaluate_act)(args)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(format_table(result, names, args.iou))
    counts = {k: v for k, v in result.get("counts", {}).items() if v}
    if counts:
        print("rows left out or noted: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    # Strict JSON has no NaN: no ground truth at all -> null, like a class without any.
    payload = _nan_to_none(result)
    payload["iou_threshold"] = args.iou

    atomic_write_text(args.out, json.dumps(payload, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
