"""The guidance penalty: suppress the input gradient of the actors' score off their voxels.

For input x (B, C, T, H, W), score s (a scalar summed over the batch's ROIs) and target
weight m (B, T, H, W) in [0, 1] from the provenance volume (broadcast over channels):

    g   = ds/dx                          (exact: kept in the graph, create_graph=True)
    off = (1 - m) * g                    the non-target part of g = m*g + (1-m)*g
    R_b = ||off_b||_p^p / N_b            per clip, p = 2 (squared) or 1
    R   = mean_b R_b

N_b is 1 ("none"), the number of non-target voxels times C ("count"), or the total
||g_b||_p^p detached ("ratio": the off-target share of the gradient, scale-free in [0, 1]).
Summing the score over ROIs rather than averaging keeps each clip's gradient independent
of the batch size. Reference: Ross et al. 2017 (Right for the Right Reasons) penalise the
same quantity with a hand-drawn mask; here the mask comes from synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stal.losses import per_roi_task_loss

_EPS = 1e-12


@dataclass(frozen=True)
class GuidanceSpec:
    """Options of the penalty (see the module docstring)."""

    score: str = "task_loss"  # "task_loss" | "logprob" | "logit"
    norm: str = "ratio"  # "none" | "count" | "ratio"
    p: str = "l2"  # "l2" (squared) | "l1"


def guidance_score(logits: torch.Tensor, labels: torch.Tensor, *, score: str, loss_func: str) -> torch.Tensor:
    """Scalar whose input gradient is guided, summed over ROIs.

    logits: (R, num_classes); labels as in :func:`stal.losses.per_roi_task_loss`.
    """
    if score == "task_loss":
        return per_roi_task_loss(logits, labels, loss_func=loss_func).sum()
    onehot = labels.float() if labels.dim() == 2 else torch.nn.functional.one_hot(labels, logits.shape[1]).float()
    if score == "logit":
        return (logits * onehot).sum()
    if score == "logprob":
        logp = logits.log_softmax(-1) if loss_func == "softmax" else torch.nn.functional.logsigmoid(logits)
        return (logp * onehot).sum()
    raise ValueError(f"unknown guidance score {score!r}")


def _energy(g: torch.Tensor, p: str) -> torch.Tensor:
    """Per-clip ||g||_p^p over (C, T, H, W): (B,)."""
    return (g.pow(2) if p == "l2" else g.abs()).flatten(1).sum(1)


def input_gradient_penalty(score: torch.Tensor, clip: torch.Tensor, mask: torch.Tensor, *,
                           spec: GuidanceSpec, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalty R (scalar, differentiable w.r.t. parameters when ``create_graph``) and the
    detached off-target energy fraction per clip (B,) = ||(1-m) g||^2 / ||g||^2.

    clip: (B, C, T, H, W) with requires_grad; mask: (B, T, H, W) target weight in [0, 1].
    """
    (g,) = torch.autograd.grad(score, clip, create_graph=create_graph)
    off = (1.0 - mask).unsqueeze(1) * g
    energy = _energy(off, spec.p)
    if spec.norm == "count":
        denom = (1.0 - mask).flatten(1).sum(1) * clip.shape[1]
    elif spec.norm == "ratio":
        denom = _energy(g, spec.p).detach()
    elif spec.norm == "none":
        denom = torch.ones_like(energy)
    else:
        raise ValueError(f"unknown guidance norm {spec.norm!r}")
    penalty = (energy / (denom + _EPS)).mean()
    with torch.no_grad():
        fraction = _energy(off, "l2") / (_energy(g, "l2") + _EPS)
    return penalty, fraction.detach()


def off_target_fraction(score: torch.Tensor, clip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Detached off-target energy fraction per clip (B,), for evaluation (no graph is kept)."""
    _, fraction = input_gradient_penalty(score, clip, mask, spec=GuidanceSpec(), create_graph=False)
    return fraction
