"""Parameters, FLOPs, step time and guided-step support of the registered models.

    python tools/model_info.py [NAME ...] [--all] [--json OUT] [--repeats N] [--no-guided]

Without names: the real-size models (``--all`` adds the *_tiny test variants). For each model,
at its default input (``stal.models.DEFAULT_INPUTS``, batch 1, two boxes):
- params: all / trainable;
- GFLOPs of the backbone, fvcore convention (one multiply-add = 1 flop, as PySlowFast and
  pytorchvideo report). fvcore has no handle for ``scaled_dot_product_attention``: one is
  added here (B * heads * Lq * Lk * (E + Ev)); ``attn_gflops`` is the share of attention
  matmuls (pytorchvideo's MViT writes them as explicit ``matmul``, which fvcore counts);
- fwd+bwd s: median time of a forward and backward of the task loss (train mode);
- exact / fd: whether a guided training step (stal.guidance.objective.Objective) runs, and its time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch

with warnings.catch_warnings():  # fvcore's import calls torch.jit.script: a FutureWarning on torch 2.14
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

from stal.guidance.penalty import GuidanceSpec
from stal.models import DEFAULT_INPUTS, MODEL_REGISTRY, RoIAlign, build_detector
from stal.guidance.objective import Objective

_ATTENTION_OPS = ("matmul", "bmm", "scaled_dot_product_attention")


def set_roi_kernel(model: torch.nn.Module, *, double_backward: bool) -> None:
    """Switch every RoIAlign between the differentiable op and torchvision's kernel."""
    for module in model.modules():
        if isinstance(module, RoIAlign):
            module.double_backward = double_backward


def make_inputs(name: str, batch_size: int = 1, seed: int = 0) -> dict:
    """A guidance batch at the model's default input: clip, two boxes per clip, labels, mask."""
    frames, size = DEFAULT_INPUTS[name]
    g = torch.Generator().manual_seed(seed)
    rois, mask = [], torch.zeros(batch_size, frames, size, size)
    for b in range(batch_size):
        for x1, y1, x2, y2 in ((size // 8, size // 8, size // 2, size * 7 // 8), (size // 2, size // 4, size - 1, size)):
            rois.append([b, x1, y1, x2, y2])
            mask[b, :, y1:y2, x1:x2] = 1.0
    return {"clip": torch.randn(batch_size, 3, frames, size, size, generator=g),
            "rois": torch.tensor(rois, dtype=torch.float32), "labels": torch.zeros(len(rois), dtype=torch.long),
            "mask": mask}


def _sdpa_flop(inputs, outputs) -> int:
    q, k, v = (get_shape(x) for x in inputs[:3])
    lead = 1
    for d in q[:-2]:
        lead *= d
    return lead * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(model: torch.nn.Module, clip: torch.Tensor) -> tuple[float, float]:
    """(backbone GFLOPs, attention GFLOPs) in fvcore's multiply-add convention."""
    analysis = FlopCountAnalysis(model.backbone, clip).set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python ints
        by_op = analysis.by_operator()
    return sum(by_op.values()) / 1e9, sum(by_op.get(op, 0) for op in _ATTENTION_OPS) / 1e9


def guided_step(model, batch, mode: str | None) -> float:
    """One training step's forward + backward (plain, exact or fd guidance); returns seconds."""
    spec = None if mode is None else GuidanceSpec(mode=mode)
    set_roi_kernel(model, double_backward=mode == "exact")
    model.zero_grad(set_to_none=True)
    tick = time.perf_counter()
    losses, _ = Objective(loss_func="softmax", guidance=spec)(model, batch, guidance_weight=0.1)
    sum(losses.values()).backward()
    return time.perf_counter() - tick


def model_info(name: str, *, repeats: int, guided: bool) -> dict:
    torch.manual_seed(0)
    model = build_detector(name, num_classes=4).train()
    batch = make_inputs(name)
    gflops, attn = count_flops(model, batch["clip"])
    info = {"input": "1x3x{}x{}x{}".format(*batch["clip"].shape[2:]),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "gflops": gflops, "attn_gflops": attn}
    guided_step(model, batch, None)  # warm-up
    info["fwd_bwd_s"] = statistics.median(guided_step(model, batch, None) for _ in range(repeats))
    for mode in ("exact", "fd") if guided else ():
        try:
            info[f"{mode}_s"] = guided_step(model, batch, mode)
            info[mode] = "ok"
        except Exception as exc:  # report, do not stop: this is what the tool is for
            info[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models (default: every real-size model)")
    parser.add_argument("--all", action="store_true", help="include the *_tiny test variants")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeats", type=int, default=1, help="timed fwd+bwd runs (median)")
    parser.add_argument("--no-guided", action="store_true", help="skip the exact / fd guided steps")
    args = parser.parse_args(argv)
    names = args.names or [n for n in MODEL_REGISTRY if args.all or not n.endswith("_tiny")]
    unknown = [n for n in names if n not in MODEL_REGISTRY]
    if unknown:
        print(f"error: unknown model(s) {unknown}; available: {', '.join(MODEL_REGISTRY)}", file=sys.stderr)
        return 2
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__, "models": {}}
    print(f"{'model':<18} {'input':<17} {'params M':>8} {'GFLOPs':>7} {'attn':>6} {'fwd+bwd s':>9} "
          f"{'exact':>10} {'fd':>10}")
    for name in names:
        r = model_info(name, repeats=args.repeats, guided=not args.no_guided)
        results["models"][name] = r
        cell = {m: (f"ok {r[m + '_s']:.2f}s" if r.get(m) == "ok" else "FAIL" if m in r else "-") for m in ("exact", "fd")}
        print(f"{name:<18} {r['input']:<17} {r['params_m']:>8.2f} {r['gflops']:>7.3g} {r['attn_gflops']:>6.3g} "
              f"{r['fwd_bwd_s']:>9.3f} {cell['exact']:>10} {cell['fd']:>10}", flush=True)
        for m in ("exact", "fd"):
            if m in r and r[m] != "ok":
                print(f"  {m}: {r[m]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
