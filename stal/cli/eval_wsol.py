#!/usr/bin/env python
"""WSOL metrics of your own CAMs, as wsolevaluation computes them (docs/evaluation.md).

    python tools/eval_wsol.py --meta DIR --cams CAMS.npz --out OUT.json \\
        [--cam-curve-interval 0.001] [--iou 30 50 70] [--mask-root DIR] [--resize-length 224]

DIR is one split of wsolevaluation's metadata (e.g. ``metadata/CUB/test``): ``image_ids.txt``,
``image_sizes.txt``, ``localization.txt`` (boxes ``id,x0,y0,x1,y1``; with --mask-root the
OpenImages layout ``id,mask,ignore``), and optionally ``class_labels.txt`` with
``predictions.txt`` (``id,predicted_class``) for Top-1 Loc.  CAMS.npz maps each image id (the
``/`` in ids is kept by np.savez) to a 2-D score map of any size, e.g. the raw CAM of the
ground-truth class: ``np.savez("CAMS.npz", **{image_id: cam})``.  Each map is upsampled to
224 x 224 with OpenCV's bicubic rule and min-max normalized, as wsolevaluation's CAMComputer does.

OUT.json holds, in percent as wsolevaluation prints them: ``MaxBoxAccV2``, ``MaxBoxAccV2@30``
/ ``@50`` / ``@70``, ``MaxBoxAcc`` (v1), ``gt_known_loc``, ``top1_loc`` (null without
predictions.txt); with --mask-root only ``PxAP``.  ``approximate`` names any number that is not
exactly the reference's (MaxBoxAcc without OpenCV).  Bad input prints one line ``error: ...``
(file and line) and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from stal.cli.common import OneLineParser, run_reporting_errors
from stal.evaluation import wsol
from stal.io.atomic import atomic_write_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta", required=True, metavar="DIR", help="one split of wsolevaluation's metadata")
    parser.add_argument("--cams", required=True, metavar="CAMS.npz", help="image id -> 2-D score map (np.savez)")
    parser.add_argument("--out", required=True, metavar="OUT.json", help="result JSON (written atomically)")
    parser.add_argument("--cam-curve-interval", type=float, default=0.001, metavar="STEP",
                        help="CAM threshold step: 0.001 (default: wsolevaluation's evaluate_wsol, CAMComputer "
                             "and config.py) or 0.01 (its evaluation.py command-line default)")
    parser.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70], metavar="PCT",
                        help="IoU thresholds in percent averaged into MaxBoxAccV2 (default 30 50 70)")
    parser.add_argument("--mask-root", default=None, metavar="DIR",
                        help="folder the mask paths of localization.txt are relative to (OpenImages): PxAP")
    parser.add_argument("--resize-length", type=int, default=224, metavar="N",
                        help="evaluation size N x N (wsolevaluation's _RESIZE_LENGTH, 224)")
    args = parser.parse_args(argv)
    if not 0 < args.cam_curve_interval < 1:
        parser.error(f"--cam-curve-interval must be in (0, 1), got {args.cam_curve_interval}")
    if any(not 0 < d <= 100 for d in args.iou):
        parser.error(f"--iou values must be in (0, 100], got {args.iou}")
    if args.resize_length < 1:
        parser.error(f"--resize-length must be >= 1, got {args.resize_length}")
    out = os.path.realpath(args.out)
    if os.path.exists(args.cams) and os.path.exists(out) and os.path.samefile(args.cams, out):
        parser.error(f"--out {args.out} is the --cams file; the result would replace it")
    if not os.path.isdir(os.path.dirname(out)):
        parser.error(f"--out {args.out}: folder {os.path.dirname(out)} does not exist")
    return args


def format_summary(result: dict) -> str:
    """The lines the tool prints: one metric a line, in percent."""
    keys = [k for k in result if k == "PxAP" or k.startswith("MaxBoxAcc") or k.endswith("_loc")]
    lines = [f"{k}: {'n/a' if result[k] is None else format(result[k], '.4f')}" for k in keys]
    return "\n".join(lines + [f"images: {result['num_images']}"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # progress lines (stal/progress.py) go to stderr where no terminal shows a bar
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return run_reporting_errors(lambda: _evaluate_and_write(args), out=args.out)


def _evaluate_and_write(args: argparse.Namespace) -> None:
    """Score the CAMs, print the summary and warnings, write the JSON (bad input raises)."""
    meta = wsol.read_metadata(args.meta, masks=args.mask_root is not None)
    result = wsol.evaluate_cams(meta=meta, cams=wsol.open_cams(args.cams), cams_path=args.cams,
                                cam_curve_interval=args.cam_curve_interval, iou_thresholds=tuple(args.iou),
                                mask_root=args.mask_root, resize_length=args.resize_length)
    for name, why in result["approximate"].items():
        print(f"warning: {why}", file=sys.stderr)
    counts = {k: v for k, v in result["counts"].items() if v}
    if counts:
        print("warning: lines or maps of ids not in image_ids.txt, left out: "
              + ", ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
    print(format_summary(result))
    result["iou_thresholds"] = list(args.iou)
    atomic_write_text(args.out, json.dumps(result, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
