"""Finite-difference guidance: dR/dtheta from one extra forward instead of a double backward.

With g = ds/dx and v = dR/dg evaluated at the current g and held fixed (detached),

    dR/dtheta = sum_voxels v * dg/dtheta = d/dtheta (v . grad_x s) = d/dtheta d/de s(x + e v)|_0
              ~= (grad_theta s(x + h v) - grad_theta s(x)) / h,

a Hessian-vector product by a forward difference. :func:`fd_surrogate` returns the scalar
(s(x + h v) - s(x)) / h built on both forward graphs; backpropagating it (together with the
task loss, in the trainer's single ``backward``) adds exactly that estimate to each .grad.
Per source, slot j's ROIs are evaluated on x + h_j v_j, where v_j puts each clip's j-th
ROI's v in that clip (one extra forward per slot, see :mod:`stal.guidance.gradients`).

Step: h = fd_step * ||x|| / ||v|| (norms over the whole batch), i.e. a perturbation whose
size is fd_step relative to the input. 1e-3 (the default) .. 1e-4 gave cosine >= 0.9999
with the exact gradient for SiLU nets in float32; it is only approximate through ReLU
(kinks between x and x + h v), see DESIGN.md section 5.

Both evaluations see the same random state (dropout masks): the caller captures the RNG
state before the first forward and each extra forward replays it. BatchNorm keeps training
mode (batch statistics, as the exact gradient differentiates through them) but updates
throw-away copies of its running statistics in the extra forward, so they move once per
step, as in plain training.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


def capture_rng(device: torch.device) -> dict:
    """The CPU (and, on CUDA, that device's) RNG state, to replay before an extra forward."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextmanager
def replayed_rng(state: dict, device: torch.device) -> Iterator[None]:
    """Run the body from RNG ``state``; afterwards the RNG continues as if it had not run."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        yield


@contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Let every BatchNorm update throw-away copies of its running statistics in the body.

    The buffers are swapped for clones and the originals put back, never written in place:
    the first forward's graph may hold them, and autograd rejects a saved tensor modified
    in place.
    """
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [(mod, {n: getattr(mod, n) for n in names if getattr(mod, n, None) is not None})
             for mod in model.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    for mod, buffers in saved:
        for name, buf in buffers.items():
            setattr(mod, name, buf.clone())
    try:
        yield
    finally:
        for mod, buffers in saved:
            for name, buf in buffers.items():
                setattr(mod, name, buf)


def fd_surrogate(*, forward_scores: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                 clip: torch.Tensor, scores: torch.Tensor, v_rows: torch.Tensor,
                 batch_index: torch.Tensor, slots: torch.Tensor | None, fd_step: float,
                 rng_state: dict) -> torch.Tensor:
    """Scalar whose parameter gradient is the finite-difference estimate of dR/dtheta.

    forward_scores: clip (B, C, T, H, W) -> per-ROI scores (R,) (the model's forward + score).
    clip: (B, C, T, H, W) the unperturbed input; scores: (R,) its scores, with graph.
    v_rows: (N, C, T, H, W) dR/dg per row, detached; union: N = B (slots None), per_source:
    N = R with ``slots`` (R,) from :func:`stal.guidance.gradients.roi_slots`.
    """
    x = clip.detach()
    x_norm = x.float().norm()
    num_slots = 1 if slots is None else int(slots.max()) + 1 if len(slots) else 0
    total = scores.new_zeros(())
    for j in range(num_slots):
        if slots is None:
            v, chosen = v_rows, torch.ones_like(scores, dtype=torch.bool)
        else:
            chosen = slots == j
            v = torch.zeros_like(x)
            v[batch_index[chosen]] = v_rows[chosen].to(x.dtype)
        v_norm = v.float().norm()
        if not torch.isfinite(v_norm) or v_norm == 0:
            continue  # R does not depend on g here: nothing to add
        h = float(fd_step * x_norm / v_norm)
        with replayed_rng(rng_state, x.device), frozen_norm_stats(model):
            plus = forward_scores(x + h * v)
        total = total + (plus[chosen].sum() - scores[chosen].sum()) / h
    return total
