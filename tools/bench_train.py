#!/usr/bin/env python
"""Training throughput (clips/s) of plain, exact, FD and counterfactual guided steps, side by side.

    python tools/bench_train.py --json OUT [--device cuda] [--amp bf16|fp16] [--models NAME ...]
                                [--size tiny|default] [--batch N] [--rounds N] [--warmup N]

Each step is the engine's real one (``stal.engine.trainer.Trainer.run_step``: autocast under
``--amp``, the fp16 gradient scaler, gradient-norm clip, optimizer step) on the objective of
each mode (``stal.guidance.objective.Objective``; exact: double backward through the
differentiable RoIAlign, FD: finite-difference Hessian-vector product, counterfactual: the
background-swap penalty). Learning rate 0 keeps the weights, and so the work, fixed; the four
modes share one model (the RoIAlign kernel is switched, as ``engine.builders`` chooses it).
Within every round the modes take turns (the order rotates), so drifts in machine load hit all
of them alike; the median over rounds is reported, and each guided mode as a ratio to the
plain step of the same run. ``--size default``: each model at its default input
(``stal.models.DEFAULT_INPUTS``); ``tiny``: the *_tiny test variants at 4x32x32 (seconds on a CPU).
Batches: random clips, two boxes per clip (bench_guidance.make_batch). On CUDA the peak memory
of each mode is reported and a mode that runs out of memory is recorded as such.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_guidance import make_batch  # noqa: E402  (sibling tools)
from stal.cli.model_info import set_roi_kernel  # noqa: E402

from stal.engine.distributed import DistContext  # noqa: E402
from stal.engine.trainer import Trainer  # noqa: E402
from stal.guidance.objective import Objective  # noqa: E402
from stal.guidance.penalty import GuidanceSpec  # noqa: E402
from stal.io.atomic import atomic_write_json  # noqa: E402
from stal.models import DEFAULT_INPUTS, build_detector  # noqa: E402

MODELS = ("small3d", "x3d_s", "slowfast_r50", "mvit_b_16x4")
MODES = ("plain", "exact", "fd", "counterfactual")
# --size tiny: the test variant that stands for each model (X3D-S is the X3D-XS network).
TINY = {"small3d": "small3d_tiny", "x3d_s": "x3d_xs_tiny", "slowfast_r50": "slowfast_r50_tiny",
        "mvit_b_16x4": "mvit_b_16x4_tiny", "slow_r50": "slow_r50_tiny", "x3d_xs": "x3d_xs_tiny",
        "slowfast_r101": "slowfast_r101_tiny"}
AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GUIDANCE_WEIGHT = 0.1


def objectives() -> dict[str, Objective]:
    """The objective of each mode, GUIDANCE.* defaults otherwise."""
    return {"plain": Objective(loss_func="softmax", guidance=None),
            **{m: Objective(loss_func="softmax", guidance=GuidanceSpec(mode=m)) for m in MODES[1:]}}


def make_trainer(model, objective, *, device: torch.device, amp: str) -> Trainer:
    """The engine's Trainer for one mode: SGD at lr 0 (fixed weights), constant guidance weight."""
    dtype = AMP[amp]
    return Trainer(model=model, objective=objective, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                   lr_fn=lambda it: 0.0, guidance_weight_fn=lambda it: GUIDANCE_WEIGHT, amp_dtype=dtype,
                   scaler=torch.amp.GradScaler(device.type, enabled=dtype is torch.float16), clip_grad_norm=0.0,
                   max_nonfinite=10**9, ctx=DistContext(device=device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(trainer: Trainer, model, batch: dict, *, mode: str, device: torch.device) -> float:
    """Seconds of one ``run_step`` (the batch already on the device)."""
    set_roi_kernel(model, double_backward=mode == "exact")
    _sync(device)
    tick = time.perf_counter()
    trainer.run_step([batch])
    _sync(device)
    return time.perf_counter() - tick


def bench_model(name: str, *, size: str, batch_size: int, rounds: int, warmup: int, device: torch.device,
                amp: str) -> dict:
    """{mode: {step_s, clips_per_s, ratio, peak_gb}} for one model, the modes interleaved."""
    arch = TINY[name] if size == "tiny" else name
    frames, crop = DEFAULT_INPUTS[arch]
    torch.manual_seed(0)
    model = build_detector(arch, num_classes=4).to(device).train()
    batch = make_batch(batch_size=batch_size, frames=frames, size=crop, rois_per_clip=2)
    batch = {k: v.to(device) for k, v in batch.items()}
    trainers = {m: make_trainer(model, obj, device=device, amp=amp) for m, obj in objectives().items()}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    peak: dict[str, float] = {}
    failed: dict[str, str] = {}
    for r in range(warmup + rounds):
        for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
            if mode in failed:
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                seconds = timed_step(trainers[mode], model, batch, mode=mode, device=device)
            except torch.cuda.OutOfMemoryError:
                failed[mode] = "out of memory"
                torch.cuda.empty_cache()
                continue
            if device.type == "cuda":
                peak[mode] = max(peak.get(mode, 0.0), torch.cuda.max_memory_allocated(device) / 2**30)
            if r >= warmup:
                times[mode].append(seconds)
    return _summary(arch, batch, times, peak, failed, rounds=rounds)


def _summary(arch: str, batch: dict, times: dict, peak: dict, failed: dict, *, rounds: int) -> dict:
    clips = batch["clip"].shape[0]
    out = {"arch": arch, "input": "{}x3x{}x{}x{}".format(clips, *batch["clip"].shape[2:]), "rounds": rounds}
    plain = statistics.median(times["plain"]) if times["plain"] else None
    for mode in MODES:
        if mode in failed:
            out[mode] = {"error": failed[mode]}
            continue
        step = statistics.median(times[mode])
        out[mode] = {"step_s": step, "clips_per_s": clips / step,
                     "ratio": step / plain if plain else None, **({"peak_gb": peak[mode]} if mode in peak else {})}
    return out


def _row(name: str, r: dict) -> str:
    cells = [f"{name:<13} {r['input']:<17}"]
    for mode in MODES:
        m = r[mode]
        cells.append(f"{'OOM':>16}" if "error" in m else f"{m['clips_per_s']:>9.2f} ({m['ratio']:>4.2f}x)")
    return " ".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, metavar="OUT", help="write the results here (after every model)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--amp", default="fp32", choices=list(AMP), help="autocast dtype (TRAIN.MIXED_PRECISION)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(TINY))
    parser.add_argument("--size", default="default", choices=("tiny", "default"))
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}: CUDA is not available here", file=sys.stderr)
        return 2
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "torch": torch.__version__, "amp": args.amp, "size": args.size,
               "batch": args.batch, "rounds": args.rounds, "warmup": args.warmup, "models": {}}
    print(f"clips/s (ratio of step time to plain), {results['device']}, amp {args.amp}, batch {args.batch}")
    print(f"{'model':<13} {'input':<17} " + " ".join(f"{m:>16}" for m in MODES))
    for name in args.models:
        r = bench_model(name, size=args.size, batch_size=args.batch, rounds=args.rounds, warmup=args.warmup,
                        device=device, amp=args.amp)
        results["models"][name] = r
        print(_row(name, r), flush=True)
        atomic_write_json(args.json, results)  # a long run interrupted keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
