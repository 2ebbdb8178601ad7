#!/usr/bin/env python
"""Generate the embedded demo dataset (no download): the training bank and the AVA-format test split.

The demo configs do this on first use; this tool does it ahead of time or for another seed:

    python data_prep/make_demo_dataset.py --cfg configs/demo_guided.yaml DEMO.SEED 5

and prints where the files are and how many tubes, backgrounds, videos and boxes it wrote.
"""

from __future__ import annotations

import argparse
import sys

from stal.config import load_cfg
from stal.data.build import demo_data
from stal.errors import StalError
from stal.formats.ava import read_ava_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="config whose DEMO.*, DATA.CROP_SIZE and SYNTHESIS.ACTORS_MAX are used")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. DEMO.SEED 5")
    args = parser.parse_args(argv)
    try:
        cfg = load_cfg(args.cfg_file, args.opts)
        import numpy as np

        paths = demo_data(cfg)
        with np.load(paths.bank) as bank:
            tubes, backgrounds = len(bank["tubes"]), len(bank["backgrounds"])
        gt = read_ava_csv(paths.gt_csv)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"demo data (DEMO.SEED {cfg.DEMO.SEED}) in {paths.root}\n"
          f"  train bank: {tubes} actor tubes, {backgrounds} background clips\n"
          f"  test split: {len(set(gt.video.tolist()))} videos, {len(gt)} ground-truth boxes "
          f"({paths.gt_csv})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
