#!/usr/bin/env python
"""Evaluate a trained detector on the test split: ``python tools/test_net.py --cfg FILE [KEY VALUE ...]``.

Loads TEST.CHECKPOINT_FILE_PATH, or else the newest readable checkpoint in
OUTPUT_DIR/checkpoints (the one tools/train_net.py wrote with the same config), runs the
test split and writes OUTPUT_DIR/test/: detections.csv in the dataset's native format (AVA
CSV: video, second, x1, y1, x2, y2, action, score), metrics.json and config.yaml. The
evaluation can be re-run from the files with tools/eval_frame_map.py.
"""

from __future__ import annotations

import os
import sys

from stal.cli.train_net import parse_args, setup_logging, summary
from stal.config import load_cfg
from stal.engine.run import run_test
from stal.errors import StalError



def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        cfg = load_cfg(args.cfg_file, args.opts)

        metrics = run_test(cfg)
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = os.path.join(cfg.OUTPUT_DIR, "test")
    files = f"{out}/detections.csv, {out}/metrics.json" if "frame_mAP" in metrics else f"{out}/metrics.json"
    print(f"{summary(metrics)}  ({metrics['checkpoint']})\n-> {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
