#!/usr/bin/env python
"""Build a background bank (format: docs/synthesis.md) from videos, frame folders or images.

  python data_prep/build_background_bank.py --out BANK --videos a.mp4 b.avi [--mode plate|ranges|both]
  python data_prep/build_background_bank.py --out BANK --frame-dirs DIR1 DIR2
  python data_prep/build_background_bank.py --out BANK --images plate1.jpg plate2.png
  python data_prep/build_background_bank.py --out BANK --ucf24 datasets/ucf24 [--split 1] [--min-length 16]

Videos give their median plate (people removed; written as a PNG and used as a still) and/or
the frame ranges in which no foreground is seen (referenced, decoded at synthesis time).
UCF101-24 / JHMDB (--ucf24 / --jhmdb / --act-index ROOT, prepared by ucf24_from_act.py) give
the frame runs of their training videos that no annotated tube spans (no labelled action).
Resumable: inputs finished by an earlier run are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from PIL import Image
from stal.data.act import actor_free_ranges, check_index
from stal.errors import DataError, StalError
from stal.formats.ava import read_ava_csv
from stal.io.atomic import atomic_open, atomic_write_text
from stal.io.images import list_frames, read_image
from stal.progress import progress
from stal.synthesis.backgrounds import FORMAT, VERSION, read_bank_index
from stal.synthesis.extraction import SubtractionSpec, empty_ranges, plate_of_video



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="bank directory (created; resumed when it has an index)")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--videos", nargs="+", help="static-camera videos")
    kind.add_argument("--frame-dirs", nargs="+", help="folders of frames (used whole)")
    kind.add_argument("--images", nargs="+", help="still background images (repeated over time)")
    kind.add_argument("--ucf24", "--jhmdb", "--act-index", dest="act_index", metavar="ROOT",
                      help="ACT index root: frame runs of the training videos outside every annotated tube")
    p.add_argument("--split", type=int, default=1, help="--ucf24 / --jhmdb: the index's split")
    p.add_argument("--mode", choices=("plate", "ranges", "both"), default="both", help="what videos contribute")
    p.add_argument("--threshold", type=int, default=30, help="foreground difference threshold (0..255)")
    p.add_argument("--max-foreground", type=float, default=0.001, help="ranges: largest foreground fraction")
    p.add_argument("--min-length", type=int, default=16, help="ranges (videos, --ucf24): shortest range in frames")
    return p.parse_args(argv)


def _write_index(path: str, index: dict) -> None:
    atomic_write_text(path, json.dumps(index, indent=1, sort_keys=True))


def _entries(args: argparse.Namespace, path: str, number: int, ranges: dict) -> list[dict]:
    """The bank entries of one input (plates are written under <out>/plates/; ``ranges``: the
    actor-free frame runs of --ucf24 folders)."""
    if args.act_index:
        return [{"kind": "frames", "path": os.path.abspath(path), "start": a, "stop": b} for a, b in ranges[path]]
    if args.images:
        read_image(path)  # fail now, naming the file, rather than at training time
        return [{"kind": "image", "path": os.path.abspath(path)}]
    if args.frame_dirs:
        return [{"kind": "frames", "path": os.path.abspath(path), "start": 0, "stop": len(list_frames(path))}]
    spec = SubtractionSpec(threshold=args.threshold)
    plate, count = plate_of_video(path, stride=1, plate_frames=spec.plate_frames)
    out = []
    if args.mode in ("plate", "both"):
        name = os.path.join("plates", f"{number:06d}.png")
        os.makedirs(os.path.join(args.out, "plates"), exist_ok=True)
        with atomic_open(os.path.join(args.out, name), "wb") as f:
            Image.fromarray(plate).save(f, format="PNG")
        out.append({"kind": "image", "path": name, "source": os.path.abspath(path), "frames": count})
    if args.mode in ("ranges", "both"):
        for start, stop in empty_ranges(path, spec, plate=plate, max_foreground=args.max_foreground,
                                        min_length=args.min_length):
            out.append({"kind": "video", "path": os.path.abspath(path), "start": start, "stop": stop})
    return out


def _act_ranges(args: argparse.Namespace) -> dict[str, list[tuple[int, int]]]:

    paths = check_index(args.act_index, args.split, need=("frames", "train"))
    return actor_free_ranges(read_ava_csv(paths["train"]), frame_dir=paths["frames"], min_length=args.min_length)


def build(args: argparse.Namespace) -> dict:
    index_path = os.path.join(args.out, "index.json")
    os.makedirs(args.out, exist_ok=True)
    index = (read_bank_index(index_path) if os.path.isfile(index_path)
             else {"format": FORMAT, "version": VERSION, "backgrounds": [], "done": []})
    ranges = _act_ranges(args) if args.act_index else {}
    inputs = args.videos or args.frame_dirs or args.images or sorted(ranges)
    skipped = 0
    for number, path in enumerate(progress(inputs, desc="background bank", unit="input")):
        key = os.path.abspath(path)
        if key in index["done"]:
            skipped += 1
            continue
        index["backgrounds"].extend(_entries(args, path, len(index["done"]), ranges))
        index["done"].append(key)
        _write_index(index_path, index)
    bgs = index["backgrounds"]
    if not bgs:  # training would fail later, far from the cause
        what = f"{len(inputs)} inputs" if inputs else "no inputs"
        raise DataError(f"{index_path}: the bank has 0 backgrounds ({what}: every range held actors, was "
                        f"shorter than --min-length or the inputs were empty); nothing to train on")
    return {"backgrounds": len(bgs), "skipped_inputs": skipped,
            "plates": sum(b["kind"] == "image" for b in bgs),
            "frames": sum(b["stop"] - b["start"] for b in bgs if b["kind"] != "image")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        s = build(args)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"background bank {args.out}: {s['backgrounds']} backgrounds ({s['plates']} still plates, "
          f"{s['frames']} frames in video/frame ranges; {s['skipped_inputs']} inputs already done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
