"""Attribution metrics: how much of a model's input gradient lies off the target region.

The off-target energy fraction of a clip (or of one ROI's source) is

    F = ||(1 - m) * g||_2^2 / ||g||_2^2        in [0, 1]

with g = d score / d clip (C, T, H, W) and m (T, H, W) the provenance target weight in
[0, 1], broadcast over channels. F = 0: the score depends only on the target voxels;
F = 1: only on everything else. It uses the raw provenance mask (no tolerance band), so
runs with different guidance options are measured with the same ruler.

No epsilon is added to the denominator: a model can shrink its whole input gradient far
below any fixed epsilon (guided demo runs did, to 1e-10 .. 1e-12 rms against 5e-4 for
plain training), and ``E_off / (E + eps)``
then reads as 0 although most of the gradient is off target. Rows whose gradient is exactly
zero report 0.
"""

from __future__ import annotations

import torch



def energy_fraction(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Detached off-target energy fraction per row (N,), float32 or float64.

    grad: (N, C, T, H, W) input gradients (one row per clip or per ROI).
    mask: (N, T, H, W) target weight in [0, 1] of the same rows.
    """
    with torch.no_grad():
        g = grad.detach()
        g = g if g.dtype in (torch.float32, torch.float64) else g.float()
        # float64 sums: squared gradients of ~1e-7 would underflow float32's normal range.
        g = g.double()
        off = (1.0 - mask.to(g.dtype)).unsqueeze(1) * g
        num, den = off.pow(2).flatten(1).sum(1), g.pow(2).flatten(1).sum(1)
        fraction = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
        return fraction.to(grad.dtype if grad.dtype == torch.float64 else torch.float32)
