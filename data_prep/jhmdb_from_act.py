#!/usr/bin/env python
"""Prepare JHMDB-21 from the ACT ground-truth pickle: write the frame index the project reads.

    python data_prep/jhmdb_from_act.py --root datasets/jhmdb [--pkl datasets/jhmdb/JHMDB-GT.pkl] [--split 1] [--train-every 1]

Expects ``ROOT/rgb-images/<video>/%05d.jpg`` and the pickle (``JHMDB-GT.pkl`` from the ACT / YOWO
downloads). Writes ``ROOT/index/`` (AVA-format CSVs of split --split, label map; see
stal.data.act); train with ``configs/jhmdb_guided.yaml``. A video whose frame folder is missing
or holds fewer frames than the pickle says is reported and left out. Split: 1, 2 or 3.
Exit status 2 when the pickle is unusable or a video was left out.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.errors import StalError  # noqa: E402

PICKLE = "JHMDB-GT.pkl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="datasets/jhmdb", help="dataset root holding rgb-images/")
    p.add_argument("--pkl", default=None, help=f"ACT pickle (default: ROOT/{PICKLE})")
    p.add_argument("--split", type=int, default=1, help="split number (1, 2 or 3)")
    p.add_argument("--train-every", type=int, default=1, help="index every n-th annotated training frame")
    args = p.parse_args(argv)
    from stal.data.act import format_report, prepare_act_index
    from stal.data.act_format import read_act_pickle

    try:
        act = read_act_pickle(args.pkl or os.path.join(args.root, PICKLE))
        report = prepare_act_index(act, root=args.root, split=args.split, train_every=args.train_every)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, root=args.root, split=args.split))
    return 2 if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
