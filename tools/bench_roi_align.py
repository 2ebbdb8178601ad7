"""Time the differentiable RoIAlign against torchvision's kernel (forward + backward).

Both run in the same process on the same inputs; the printed ratio is
differentiable / torchvision. Sizes default to an AVA-like RoI head on CPU
(stride-16 map of a 224 crop, 2 clips x 16 boxes).

    python tools/bench_roi_align.py [--batch 2 --channels 192 --size 14 --rois 32]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torchvision

from stal.models.roi_align import roi_align


def _time_pair(
    a: Callable[[], None], b: Callable[[], None], *, repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b`` after warm-up.

    Calls alternate so that load from other processes on a shared machine hits both alike.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats + 2):
        for fn, out in zip((a, b), times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if i >= 2:
                out.append(time.perf_counter() - start)
    return tuple(sorted(t)[len(t) // 2] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--size", type=int, default=14, help="feature map H = W (feature pixels)")
    parser.add_argument("--stride", type=int, default=16, help="input pixels per feature pixel")
    parser.add_argument("--rois", type=int, default=32)
    parser.add_argument("--output-size", type=int, default=7)
    parser.add_argument("--sampling-ratio", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    features = torch.randn(shape, generator=gen).to(device).requires_grad_(True)
    extent = args.size * args.stride  # input pixels
    xy1 = torch.rand(args.rois, 2, generator=gen) * 0.7 * extent
    wh = torch.rand(args.rois, 2, generator=gen) * 0.5 * extent + 8
    batch_index = torch.randint(0, args.batch, (args.rois, 1), generator=gen).float()
    rois = torch.cat([batch_index, xy1, xy1 + wh], dim=1).to(device)  # input pixels
    kwargs = dict(
        output_size=(args.output_size, args.output_size),
        spatial_scale=1.0 / args.stride,
        sampling_ratio=args.sampling_ratio,
        aligned=True,
    )

    def step(op: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            features.grad = None
            op(features, rois, **kwargs).square().sum().backward()

        return run

    ours, ref = _time_pair(
        step(roi_align), step(torchvision.ops.roi_align), repeats=args.repeats, device=device
    )
    print(
        f"features {shape}, {args.rois} rois, output {args.output_size}x{args.output_size}, "
        f"sampling_ratio {args.sampling_ratio}, {device}, threads {torch.get_num_threads()}"
    )
    print(
        f"forward+backward  differentiable: {ours * 1e3:.2f} ms   "
        f"torchvision: {ref * 1e3:.2f} ms   ratio (differentiable / torchvision): {ours / ref:.2f}"
    )


if __name__ == "__main__":
    main()
