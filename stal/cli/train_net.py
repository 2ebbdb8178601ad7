#!/usr/bin/env python
"""Train (and evaluate) a detector: ``python tools/train_net.py --cfg FILE [KEY VALUE ...]``.

KEY VALUE pairs override the YAML (e.g. ``RNG_SEED 1 GUIDANCE.LAMBDA 0.3``), bare or after
``--opts`` as in PySlowFast; ``--cfg`` may be given more than once (files merged in order). Outputs go to
OUTPUT_DIR: config.yaml, log.jsonl, tensorboard/, checkpoints/, detections.csv, metrics.json.
A run resumes from the newest checkpoint in OUTPUT_DIR/checkpoints (see docs/training.md).

Several processes (GPUs, or CPU processes with NUM_GPUS 0):
``torchrun --nproc_per_node N tools/train_net.py --cfg FILE [KEY VALUE ...]``;
TRAIN.BATCH_SIZE is the global batch, divided among the processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from stal.config import load_cfg
from stal.engine.run import run
from stal.errors import StalError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--cfg`` (repeatable: merged in order) and the overrides, as bare ``KEY VALUE`` pairs or
    after PySlowFast's ``--opts``; ``args.cfg_file`` is the list of YAML files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", action="append", required=True, metavar="FILE",
                        help="YAML config (overrides stal/config/defaults.py); give it again to merge more files "
                             "in order")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="KEY VALUE pairs overriding the config (PySlowFast's form)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    args = parser.parse_args(argv)
    if "--opts" in args.opts:  # bare pairs first, then --opts: argparse leaves the flag in the remainder
        i = args.opts.index("--opts")
        args.opts = args.opts[:i] + args.opts[i + 1:]
    args.opts = list(args.opts) + list(args.flag_opts)
    return args


def setup_logging() -> str:
    """INFO on rank 0, warnings only on the other ranks; returns the prefix for error lines."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="[%(asctime)s] %(message)s" if rank == 0 else f"[%(asctime)s rank {rank}] %(message)s",
                        datefmt="%H:%M:%S")
    return "" if rank == 0 else f"rank {rank}: "


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefix = setup_logging()
    try:
        cfg = load_cfg(args.cfg_file, args.opts)

        metrics = run(cfg)
    except StalError as exc:
        code = getattr(exc, "exit_code", 2)  # a stop by SIGTERM / Ctrl-C (resumable) exits with 143 / 130
        print(f"{prefix}{'error: ' if code == 2 else ''}{exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print(f"{prefix}interrupted: stopped at once; the checkpoints already saved are intact "
              f"(run the same command to resume from the newest)", file=sys.stderr)
        return 130
    if metrics:
        print(f"{summary(metrics)}  -> {cfg.OUTPUT_DIR}/metrics.json")
    return 0


def summary(metrics: dict) -> str:
    """The headline numbers: frame_mAP and off_target_energy, or an image task's metrics."""
    if "frame_mAP" in metrics:
        energy = metrics.get("off_target_energy")
        return f"frame_mAP {metrics['frame_mAP']:.4f}  off_target_energy {'n/a' if energy is None else f'{energy:.4f}'}"
    keys = [k for k in ("MaxBoxAccV2", "GT-known Loc", "Top-1 Loc", "top1_accuracy") if k in metrics]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys) or "no test metrics"


if __name__ == "__main__":
    sys.exit(main())
