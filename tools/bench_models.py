"""Step time of each real-size model at its default input on this machine: plain vs guided.

    python tools/bench_models.py [--models NAME ...] [--rounds N] [--warmup N] [--json OUT]

One training step = objective + backward (stal.guidance.objective.Objective, batch 1, two boxes, the
model's default input from ``stal.models.DEFAULT_INPUTS``). Modes: plain (torchvision
RoIAlign), fd (finite-difference guidance, torchvision RoIAlign) and exact (double backward,
differentiable RoIAlign), on the same weights. Within a round the modes alternate (the order
rotates) so drifts in machine load hit all of them alike; the median over rounds is reported,
and the guided times as ratios to the plain step of the same run. Real-size MViT-B and
SlowFast take tens of seconds per step on 2 CPU cores: one warm-up and one timed round is
the default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stal.cli.model_info import guided_step, make_inputs

from stal.models import MODEL_REGISTRY, build_detector  # noqa: E402

MODES = ("plain", "fd", "exact")
REAL_SIZE = [n for n in MODEL_REGISTRY if not n.endswith("_tiny")]


def bench_model(name: str, *, rounds: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = build_detector(name, num_classes=4).train()
    batch = make_inputs(name)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(warmup + rounds):
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            seconds = guided_step(model, batch, None if mode == "plain" else mode)
            if r >= warmup:
                times[mode].append(seconds)
    med = {m: statistics.median(t) for m, t in times.items()}
    return {"input": "1x3x{}x{}x{}".format(*batch["clip"].shape[2:]), "plain_s": med["plain"],
            "fd_s": med["fd"], "exact_s": med["exact"], "fd_ratio": med["fd"] / med["plain"],
            "exact_ratio": med["exact"] / med["plain"], "rounds": rounds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=REAL_SIZE, choices=list(MODEL_REGISTRY))
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds per model (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__,
               "device": "cpu", "models": {}}
    print(f"{'model':<14} {'input':<17} {'plain s':>8} {'fd s':>8} {'exact s':>8} {'fd x':>6} {'exact x':>8}")
    for name in args.models:
        r = bench_model(name, rounds=args.rounds, warmup=args.warmup)
        results["models"][name] = r
        print(f"{name:<14} {r['input']:<17} {r['plain_s']:>8.2f} {r['fd_s']:>8.2f} {r['exact_s']:>8.2f} "
              f"{r['fd_ratio']:>6.2f} {r['exact_ratio']:>8.2f}", flush=True)
        if args.json:  # after every model: a long run interrupted keeps what it measured
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
