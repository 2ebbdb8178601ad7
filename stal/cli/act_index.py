"""The command line shared by ucf24_from_act.py and jhmdb_from_act.py (they differ only in names).

Expects ``ROOT/rgb-images/<video>/%05d.jpg`` and the ACT ground-truth pickle; writes
``ROOT/index/`` (AVA-format CSVs of split --split, label map; see stal.data.act). A video whose
frame folder is missing or holds fewer frames than the pickle says is reported and left out.
Exit status 2 when the pickle is unusable or a video was left out.
"""

from __future__ import annotations

import argparse
import os
import sys

from stal.data.act import format_report, prepare_act_index
from stal.errors import StalError
from stal.formats.act import read_act_pickle


def run(argv: list[str] | None, *, doc: str, pickle: str, default_root: str, split_help: str) -> int:
    """Parse ``argv``, read the pickle (default ``ROOT/<pickle>``), write the index, report."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=default_root, help="dataset root holding rgb-images/")
    p.add_argument("--pkl", default=None, help=f"ACT pickle (default: ROOT/{pickle})")
    p.add_argument("--split", type=int, default=1, help=split_help)
    p.add_argument("--train-every", type=int, default=1, help="index every n-th annotated training frame")
    args = p.parse_args(argv)

    try:
        act = read_act_pickle(args.pkl or os.path.join(args.root, pickle))
        report = prepare_act_index(act, root=args.root, split=args.split, train_every=args.train_every)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, root=args.root, split=args.split))
    return 2 if report.skipped else 0
