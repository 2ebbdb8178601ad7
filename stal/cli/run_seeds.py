#!/usr/bin/env python
"""Train configs over several seeds in parallel and print a table of their metrics.

    python tools/run_seeds.py --cfgs configs/demo_guided.yaml configs/demo_baseline.yaml \\
        --seeds 0 1 2 --jobs 2 --threads 1 --out output/seeds [--diff demo_guided demo_baseline] [KEY VALUE ...]

Each run is the real tools/train_net.py (outputs in OUT/<config>_seed<N>/); the table (markdown)
and the raw summary (JSON) are written to OUT/summary.md and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import os
import sys

# In a checkout, its tools/train_net.py: that wrapper puts the checkout's own stal first, so a sweep
# from a frozen worktree trains the worktree's code even where another copy is installed.
_CHECKOUT_TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "tools", "train_net.py")

from stal.engine.sweep import config_name, execute, markdown_table, plan_runs, summarize
from stal.io.atomic import atomic_write_json, atomic_write_text

KEYS = ["frame_mAP", "val_frame_mAP", "val_seen_frame_mAP", "off_target_energy", "input_grad_rms", "synth_val_accuracy", "synth_unbiased_accuracy"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfgs", nargs="+", required=True, help="config files to train")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="RNG_SEED values")
    p.add_argument("--fresh-data", action="store_true", help="also set DEMO.SEED to each seed (new demo data per seed)")
    p.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--out", default="output/seeds", help="root of the runs' OUTPUT_DIRs")
    p.add_argument("--summarize-only", action="store_true", help="only read existing metrics.json files")
    p.add_argument("--keys", nargs="+", default=KEYS, help="metrics.json keys of the table (default: the video demo's)")
    p.add_argument("--diff", nargs=2, action="append", default=[], metavar=("FIRST", "SECOND"),
                   help="add the paired difference FIRST - SECOND (config names, e.g. demo_guided demo_baseline) "
                        "per seed, in points; repeatable")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    args = p.parse_args(argv)
    names = {config_name(c) for c in args.cfgs}
    unknown = sorted({n for pair in args.diff for n in pair} - names)
    if unknown:
        p.error(f"--diff names {', '.join(unknown)}, not among the --cfgs {sorted(names)}")
    runs = plan_runs(args.cfgs, args.seeds, out_root=args.out, opts=args.opts, fresh_data=args.fresh_data)
    codes = [0] if args.summarize_only else execute(
        runs, train=_train_command(), jobs=args.jobs, threads=args.threads)
    summary = summarize(runs, args.keys)
    table = markdown_table(summary, args.keys, [tuple(pair) for pair in args.diff])
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "summary.md"), table + "\n")
    atomic_write_json(os.path.join(args.out, "summary.json"), summary)
    print(table)
    return 0 if all(c == 0 for c in codes) else 1


def _train_command() -> list[str]:
    if os.path.isfile(_CHECKOUT_TRAIN):
        return [sys.executable, _CHECKOUT_TRAIN]
    return [sys.executable, "-m", "stal.cli.train_net"]


if __name__ == "__main__":
    sys.exit(main())
