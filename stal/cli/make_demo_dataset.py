#!/usr/bin/env python
"""Generate the embedded demo's AVA-format test and validation splits (no download).

Training clips are synthesized on the fly from the demo's procedural actors and scenes
(nothing stored). The demo configs write the splits on first use; this tool does it ahead
of time or for another seed:

    python data_prep/make_demo_dataset.py --cfg configs/demo_guided.yaml DEMO.SEED 5

and prints where the files are and how many videos and boxes each split has.
"""

from __future__ import annotations

import argparse
import sys

from stal.config import load_cfg
from stal.data.build import demo_data
from stal.demo.video import SPLITS
from stal.errors import StalError
from stal.formats.ava import read_ava_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="config whose DEMO.*, DATA.CROP_SIZE and SYNTHESIS.ACTORS_MAX are used")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. DEMO.SEED 5")
    args = parser.parse_args(argv)
    try:
        cfg = load_cfg(args.cfg_file, args.opts)
        paths = demo_data(cfg)
        splits = {name: paths.split(name) for name in SPLITS}
        gts = {name: read_ava_csv(split.gt_csv) for name, split in splits.items()}
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"demo data (DEMO.SEED {cfg.DEMO.SEED}) in {paths.root}\n"
          f"  training: {cfg.DEMO.TUBES_PER_CLASS} procedural actors per action, "
          f"{cfg.DEMO.BACKGROUNDS_PER_SCENE} background clips per scene (rendered on the fly)")
    for name, gt in gts.items():
        print(f"  {name} split: {len(set(gt.video.tolist()))} videos, {len(gt)} ground-truth boxes "
              f"({splits[name].gt_csv})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
