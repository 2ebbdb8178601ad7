"""Cost of guided training steps: plain vs exact vs finite-difference guidance, one run.

    python tools/bench_guidance.py [--json OUT] [--rounds N] [--models small3d x3d_xs mvit_b_16x4]

For each model, one training step (objective, backward, SGD step with lr 0 so the weights and
hence the work stay fixed) is timed in each mode; the modes alternate within every round (the
order rotates) so drifts in machine load hit all of them alike, and the median over rounds is
reported. Ratios are to the plain step of the same run. ``fd_cosine`` is the cosine between
the FD and the exact parameter gradient of the guidance entry (GUIDANCE.FD_STEP default) on
the same batch. Plain and FD use torchvision's RoIAlign, exact the differentiable one (as
``builders.build_model`` does); all share the same weights. ``counterfactual`` is the
background-swap penalty (one forward over the clip and its re-rendering, no input gradient).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from stal.guidance.penalty import GuidanceSpec
from stal.models import build_detector
from stal.guidance.objective import Objective

# name: (builder kwargs, batch size, frames, crop size, ROIs per clip)
SETUPS = {
    "small3d": ({"width": 16, "spatial_stride": 8, "roi_output_size": (4, 4)}, 8, 8, 64, 2),
    "x3d_xs": ({"roi_output_size": (4, 4)}, 1, 4, 160, 2),  # its default input (DEFAULT_INPUTS)
    # The real MViT-B 16x4 at its only input size (learned positional embeddings); exact mode
    # runs its attention on the math SDPA backend, the one with a double backward.
    "mvit_b_16x4": ({"roi_output_size": (4, 4)}, 1, 16, 224, 2),
}


def make_batch(*, batch_size: int, frames: int, size: int, rois_per_clip: int, seed: int = 0) -> dict:
    """Random clip (B, 3, T, S, S), boxes of random size, masks = boxes over all frames."""
    g = torch.Generator().manual_seed(seed)
    rows, masks = [], torch.zeros(batch_size * rois_per_clip, frames, size, size)
    for r in range(batch_size * rois_per_clip):
        w, h = (torch.randint(size // 4, size // 2, (2,), generator=g)).tolist()
        x1, y1 = (torch.randint(0, size - max(w, h), (2,), generator=g)).tolist()
        rows.append([r // rois_per_clip, x1, y1, x1 + w, y1 + h])
        masks[r, :, y1:y1 + h, x1:x1 + w] = 1.0
    union = masks.view(batch_size, rois_per_clip, frames, size, size).amax(1)
    clip = torch.randn(batch_size, 3, frames, size, size, generator=g)
    other = torch.randn(batch_size, 3, frames, size, size, generator=g)
    return {"clip": clip, "clip_cf": union[:, None] * clip + (1 - union[:, None]) * other,
            "rois": torch.tensor(rows, dtype=torch.float32), "labels": torch.randint(0, 4, (len(rows),), generator=g),
            "mask": union, "source_masks": masks}


def train_step(model, objective, optimizer, batch) -> None:
    losses, _ = objective(model, batch, guidance_weight=0.1)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()


def guidance_grad(model, objective, batch) -> torch.Tensor:
    losses, _ = objective(model, batch, guidance_weight=1.0)
    grads = torch.autograd.grad(losses["guidance"], list(model.parameters()), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(model.parameters(), grads)])


def bench_model(name: str, *, rounds: int) -> dict:
    kwargs, batch_size, frames, size, rois = SETUPS[name]
    torch.manual_seed(0)
    first_order = build_detector(name, num_classes=4, double_backward=False, **kwargs).train()
    differentiable = build_detector(name, num_classes=4, double_backward=True, **kwargs).train()
    differentiable.load_state_dict(first_order.state_dict())
    batch = make_batch(batch_size=batch_size, frames=frames, size=size, rois_per_clip=rois)
    runs = {
        "plain": (first_order, Objective(loss_func="softmax", guidance=None)),
        "exact": (differentiable, Objective(loss_func="softmax", guidance=GuidanceSpec())),
        "fd": (first_order, Objective(loss_func="softmax", guidance=GuidanceSpec(mode="fd"))),
        "counterfactual": (first_order, Objective(loss_func="softmax", guidance=GuidanceSpec(mode="counterfactual"))),
    }
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, (m, _) in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(rounds + 1):  # round 0 warms up (allocator, first-step checks) and is dropped
        for mode in order[r % len(order):] + order[:r % len(order)]:
            model, objective = runs[mode]
            tick = time.perf_counter()
            train_step(model, objective, optimizers[mode], batch)
            if r:
                times[mode].append(time.perf_counter() - tick)
    exact = guidance_grad(*runs["exact"], batch)
    fd = guidance_grad(*runs["fd"], batch)
    plain = statistics.median(times["plain"])
    return {"plain_s": plain, "exact_s": statistics.median(times["exact"]), "fd_s": statistics.median(times["fd"]),
            "exact_ratio": statistics.median(times["exact"]) / plain,
            "fd_ratio": statistics.median(times["fd"]) / plain,
            "counterfactual_ratio": statistics.median(times["counterfactual"]) / plain,
            "fd_cosine": float(exact @ fd / (exact.norm() * fd.norm())),
            "input": f"{batch_size}x3x{frames}x{size}x{size}", "rounds": rounds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per model (median)")
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = parser.parse_args(argv)
    results = {"models": {}, "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"{'model':<12} {'input':<18} {'plain s':>8} {'exact x':>8} {'fd x':>6} {'cf x':>6} {'fd cos':>8}")
    for name in args.models:
        res = bench_model(name, rounds=args.rounds)
        results["models"][name] = res
        print(f"{name:<12} {res['input']:<18} {res['plain_s']:>8.3f} {res['exact_ratio']:>8.2f} "
              f"{res['fd_ratio']:>6.2f} {res['counterfactual_ratio']:>6.2f} {res['fd_cosine']:>8.4f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
