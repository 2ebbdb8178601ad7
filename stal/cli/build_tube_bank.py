#!/usr/bin/env python
"""Build an actor tube bank (format: docs/synthesis.md) from one kind of input.

  python data_prep/build_tube_bank.py --out BANK --videos a.mp4 b.avi [--label person]
  python data_prep/build_tube_bank.py --out BANK --labelme img1.json ... --classes person
  python data_prep/build_tube_bank.py --out BANK --coco instances.json --images DIR --classes person
  python data_prep/build_tube_bank.py --out BANK --ava-csv train.csv --frames DIR --labelmap map.pbtxt
  python data_prep/build_tube_bank.py --out BANK --ucf24 datasets/ucf24 [--split 1] [--every 16] [--feather 4]
  python data_prep/build_tube_bank.py --out BANK --jhmdb datasets/jhmdb --split 1   # or --act-index ROOT
  python data_prep/build_tube_bank.py --out BANK --demo 24

Resumable: inputs finished by an earlier run (recorded in BANK/index.json) are skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from stal.data.act import ACT_FRAME_TEMPLATE, check_index
from stal.data.ava import AVA_FRAME_TEMPLATE
from stal.demo.banks import demo_inputs
from stal.demo.render import ACTIONS
from stal.errors import StalError
from stal.formats.ava import read_labelmap
from stal.progress import progress
from stal.synthesis import tube_sources as src
from stal.synthesis.extraction import SubtractionSpec
from stal.synthesis.tube_bank import TubeBankWriter



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="bank directory (created; resumed when it has an index)")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--videos", nargs="+", help="static-camera videos (background subtraction)")
    kind.add_argument("--labelme", nargs="+", help="labelme JSON files with polygon instance masks")
    kind.add_argument("--coco", help="COCO instance JSON with polygon segmentations (with --images)")
    kind.add_argument("--ava-csv", help="AVA-format box CSV (with --frames and --labelmap): box tubes")
    kind.add_argument("--ucf24", "--jhmdb", "--act-index", dest="act_index", metavar="ROOT",
                      help="UCF101-24 / JHMDB root prepared by data_prep/ucf24_from_act.py / jhmdb_from_act.py: "
                           "box tubes from the training split's annotated tubes, labels = the tube's action")
    kind.add_argument("--demo", type=int, help="this many procedural demo actors per action")
    p.add_argument("--classes", default="person", help="comma-separated class names (videos, labelme, coco)")
    p.add_argument("--label", default=None, help="class of every video tube (default: the first class)")
    p.add_argument("--images", help="image directory of --coco")
    p.add_argument("--frames", help="AVA frame directory frames/<video>/<video>_%%06d.jpg of --ava-csv")
    p.add_argument("--labelmap", help="AVA label map .pbtxt of --ava-csv")
    p.add_argument("--fps", type=int, default=30, help="frames per second of --frames (AVA: 30)")
    p.add_argument("--num-frames", type=int, default=16, help="frames per box / demo tube")
    p.add_argument("--split", type=int, default=1, help="--ucf24/--jhmdb: the index's split (UCF101-24 has one)")
    p.add_argument("--every", type=int, default=0, help="box tubes: one tube centred on every this many annotated "
                   "times of a person (default: 1 for --ava-csv, --num-frames for --ucf24 / --jhmdb)")
    p.add_argument("--feather", type=int, default=0, help="box tubes: alpha ramp width in pixels (0: hard)")
    p.add_argument("--stride", type=int, default=1, help="videos: use every this many frames")
    p.add_argument("--max-frames", type=int, default=0, help="videos: read at most this many (strided) frames")
    p.add_argument("--threshold", type=int, default=30, help="videos: foreground difference threshold (0..255)")
    p.add_argument("--min-area", type=int, default=150, help="videos: smallest component in pixels")
    p.add_argument("--segment", type=int, default=32, help="videos: most frames per tube")
    p.add_argument("--seed", type=int, default=0, help="demo actors' seed")
    return p.parse_args(argv)


def _inputs(args: argparse.Namespace) -> tuple[list[str], src.Inputs]:
    classes = [c for c in args.classes.split(",") if c]
    if args.videos:
        spec = SubtractionSpec(threshold=args.threshold, min_area=args.min_area, segment=args.segment)
        label = classes.index(args.label) if args.label else 0
        return classes, src.video_inputs(args.videos, spec, label=label, stride=args.stride, max_frames=args.max_frames)
    if args.labelme:
        return classes, src.labelme_inputs(args.labelme, classes)
    if args.coco:
        if not args.images:
            raise StalError("--coco needs --images DIR")
        return classes, src.coco_inputs(args.coco, args.images, classes)
    if args.ava_csv:
        if not (args.frames and args.labelmap):
            raise StalError("--ava-csv needs --frames DIR and --labelmap FILE")
        names = read_labelmap(args.labelmap)
        classes = [names.get(i, f"action{i}") for i in range(1, max(names) + 1)]
        return classes, src.box_tube_inputs(args.ava_csv, args.frames, frame_template=AVA_FRAME_TEMPLATE, fps=args.fps,
                                            video_start=900, num_frames=args.num_frames, feather=args.feather,
                                            num_classes=len(classes), every=args.every or 1, kind="ava")
    if args.act_index:
        return _act_inputs(args)

    return list(ACTIONS), demo_inputs(per_class=args.demo, num_frames=args.num_frames, seed=args.seed)


def _act_inputs(args: argparse.Namespace) -> tuple[list[str], src.Inputs]:
    """Box tubes of an ACT index's training split (frames ROOT/rgb-images/<video>/%05d.jpg, time =
    1-based frame number, so fps 1 and start 1)."""

    paths = check_index(args.act_index, args.split, need=("frames", "train", "labelmap"))
    names = read_labelmap(paths["labelmap"])
    classes = [names.get(i, f"action{i}") for i in range(1, max(names) + 1)]
    return classes, src.box_tube_inputs(paths["train"], paths["frames"], frame_template=ACT_FRAME_TEMPLATE, fps=1,
                                        video_start=1, num_frames=args.num_frames, feather=args.feather,
                                        num_classes=len(classes), every=args.every or args.num_frames, kind="act")


def build(args: argparse.Namespace) -> dict:
    """Run the build; returns the summary (tubes, frames, per-class counts, skipped inputs)."""
    classes, inputs = _inputs(args)
    writer = TubeBankWriter(args.out, classes=classes)
    added, skipped = 0, 0
    for key, tubes in progress(inputs, desc="tube bank", unit="input"):
        if writer.is_done(key):
            skipped += 1
            continue
        for tube in tubes:
            writer.add(rgb=tube["rgb"], alpha=tube["alpha"], labels=tube["labels"], source=tube["source"])
            added += 1
        writer.finish_input(key)
    entries = writer.index["tubes"]
    per_class = Counter(classes[label] for e in entries for label in e["labels"])
    return {"tubes": len(entries), "added": added, "skipped_inputs": skipped,
            "frames": sum(e["frames"] for e in entries), "classes": dict(sorted(per_class.items()))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = build(args)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tube bank {args.out}: {summary['tubes']} tubes ({summary['added']} new, "
          f"{summary['skipped_inputs']} inputs already done), {summary['frames']} frames, "
          f"classes {summary['classes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
