"""The guidance penalty R(g, m): how much of an input gradient lies off the target region.

Rows. The penalty is computed on rows of input gradients ``g`` (N, C, T, H, W) with target
weights ``m`` (N, T, H, W) in [0, 1] (broadcast over channels):
- REGION "union": one row per clip, g = d(sum of the clip's ROI scores)/dx, m = the union
  of the clip's labelled sources (``batch["mask"]``);
- REGION "per_source": one row per ROI k, g_k = d s_k / d x_{b(k)}, m_k = that ROI's own
  source (``batch["source_masks"]``); see :mod:`stal.guidance.gradients`.
R is the mean over rows of R_n, so union averages over clips and per_source over ROIs.

Non-target weight. w = 1 - dilate(m), where ``dilate`` is a max-pool over
(2 * tolerance_frames + 1, 2 * tolerance + 1, 2 * tolerance + 1) voxels (grey-level
dilation; identity when both are 0): a band of ``tolerance`` pixels around the target, where
outline and motion detectors legitimately look, is not penalized (DESIGN.md section 5).
Frames where a source is absent have m = 0 there (alpha masks), so they count fully as
non-target; ``absent_frames_off_target=False`` instead gives frames whose (raw) mask is
all zero a weight of 0. ``temporal_decay`` d >= 0 weights frame t by exp(-d |t - T//2|)
(T//2 is the keyframe of synthesized and AVA clips).

Penalties, per row (f_t: frame weight, P_b: projection onto b x b block-constant images,
i.e. each block replaced by its mean; b = ``lowpass``, identity for b <= 1):
- "energy", p = l2:  E = sum_t f_t ||P_b(w g)_t||^2;  p = l1: E = sum_t f_t ||P_b(w g)_t||_1.
  P_b is an orthogonal projection, so the block-averaged energy never exceeds the
  pixelwise one: a high-frequency off-target gradient (outline detectors) is free, a
  low-frequency one (reading the scene) is not.
- "colour_shift": d_c = sum_{t,h,w} f_t w g_c, the derivative of the score along a uniform
  shift of channel c on the non-target region; E = sum_c d_c^2 / n_w, n_w = sum f_t^2 w^2.
  E is the energy of g's projection onto the C unit colour-shift directions (w f e_c /
  sqrt(n_w)), so it is <= ||g||^2 like the others. Always squared (P must be l2); ``lowpass``
  does not apply (a uniform shift is already the lowest frequency).

Normalization N_n: "none" -> 1 (for colour_shift the raw sum_c d_c^2, no division by n_w),
"count" -> C * sum(w) (mean per non-target voxel), "ratio" -> ||g||_p^p detached (the
penalized share of the gradient, in [0, 1]), "share" -> ||g||_p^p NOT detached.
"ratio" is scale-free in value but not in gradient: R(a g) = a^p E(g) / N with N held fixed,
so dR/da = p R at every scale -- a constant push to shrink the whole input gradient
(gradient masking; DESIGN.md section 5). "share" is homogeneous of degree 0 in g, so its
gradient along g itself is 0. Its guard: each row is divided by its (detached) largest
|g| first -- exact, as the share is scale-invariant -- so the sums stay near 1 and the
backward stays finite when ||g||^2 underflows float32 (rows with max |g| below the smallest
normal number, or exactly 0, give 0 and no gradient).

Scores (:func:`per_roi_score`): "task_loss", "logprob" (the labels' log-probabilities),
"logit" (the labels' logits) and "logsumprob" (Right for the Right Reasons, Ross et al.
2017: the sum over ALL classes of log p_k, labels unused). task_loss and logprob (identical
for softmax) vanish as p -> 1 (their input gradient is (1 - p) times a bounded vector),
so a guided model can pay the penalty by becoming confident; and with softmax the gradient
of log p_y carries -p_j grad z_j of every other class j, so per-source rows penalize the
other source's legitimate evidence. The logit does neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stal.guidance.attribution import energy_fraction
from stal.losses import per_roi_task_loss

# Allowed values of each option; config validation (stal.config.load) reads this one list.
CHOICES = {
    "score": ("task_loss", "logprob", "logit", "logsumprob"),
    "norm": ("none", "count", "ratio", "share"),
    "p": ("l2", "l1"),
    "region": ("union", "per_source"),
    "mode": ("exact", "fd", "counterfactual"),
    "penalty": ("energy", "colour_shift"),
    "inner_bn": ("train", "batch_constant", "eval"),
    "lambda_rule": ("fixed", "balance_init"),
}


@dataclass(frozen=True)
class GuidanceSpec:
    """Options of the penalty (see the module docstring; config keys GUIDANCE.*)."""

    score: str = "task_loss"  # "task_loss" | "logprob" | "logit" | "logsumprob"
    norm: str = "ratio"  # "none" | "count" | "ratio" | "share"
    p: str = "l2"  # "l2" (squared) | "l1"
    region: str = "union"  # "union" | "per_source"
    mode: str = "exact"  # "exact" (double backward) | "fd" (finite-difference HVP) | "counterfactual"
    penalty: str = "energy"  # "energy" | "colour_shift"
    tolerance: int = 0  # spatial dilation of the target mask, pixels
    tolerance_frames: int = 0  # temporal dilation of the target mask, frames
    lowpass: int = 0  # block size b of the block-averaged energy; 0/1: pixelwise
    temporal_decay: float = 0.0  # frame weight exp(-decay |t - T//2|); 0: uniform
    absent_frames_off_target: bool = True  # False: frames without the source get weight 0
    fd_step: float = 1e-3  # fd: step h = fd_step * ||x|| / ||v|| (batch norms)
    fd_freeze_kinks: bool = True  # fd: replay the first forward's ReLU/amax pattern
    max_ratio: float = 0.0  # cap ||grad(lambda R)|| <= max_ratio ||grad L_task||; 0: off
    merge_same_class: bool = False  # per_source: a row's mask = union of its clip's same-label sources
    inner_bn: str = "train"  # BatchNorm in the guided pass: see stal.guidance.batchnorm
    lambda_rule: str = "fixed"  # "balance_init": lambda from the first batch (stal.guidance.objective)
    cf_task_loss: bool = False  # counterfactual: the task loss also on clip_cf (augmentation)

    def __post_init__(self):
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"guidance {name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        if min(self.tolerance, self.tolerance_frames, self.lowpass) < 0 or self.temporal_decay < 0 \
                or self.max_ratio < 0 or self.fd_step <= 0:
            raise ValueError("guidance tolerance, tolerance_frames, lowpass, temporal_decay and "
                             "max_ratio must be >= 0 and fd_step > 0")
        if self.penalty == "colour_shift" and self.p != "l2":
            raise ValueError("guidance penalty colour_shift is a squared derivative: use p 'l2'")
        if self.lambda_rule == "balance_init" and self.mode == "counterfactual":
            raise ValueError("guidance lambda_rule balance_init needs mode 'exact' or 'fd'")


def per_roi_score(logits: torch.Tensor, labels: torch.Tensor, *, score: str, loss_func: str) -> torch.Tensor:
    """Score s_k of each ROI, (R,): its task loss, the sum of its labels' log-probs / logits, or
    (logsumprob) the sum of all classes' log-probs (sigmoids for bce).

    logits: (R, num_classes); labels as in :func:`stal.losses.per_roi_task_loss`.
    """
    if score == "task_loss":
        return per_roi_task_loss(logits, labels, loss_func=loss_func)
    if score == "logsumprob":  # RRR: every class's log-probability, whatever the labels
        logp = logits.log_softmax(-1) if loss_func == "softmax" else F.logsigmoid(logits)
        return logp.sum(1)
    onehot = labels.float() if labels.dim() == 2 else F.one_hot(labels, logits.shape[1]).float()
    if score == "logit":
        return (logits * onehot).sum(1)
    if score == "logprob":
        logp = logits.log_softmax(-1) if loss_func == "softmax" else F.logsigmoid(logits)
        return (logp * onehot).sum(1)
    raise ValueError(f"unknown guidance score {score!r}")


def guidance_score(logits: torch.Tensor, labels: torch.Tensor, *, score: str, loss_func: str) -> torch.Tensor:
    """Scalar whose input gradient is guided in union mode: :func:`per_roi_score` summed over ROIs.

    Summing rather than averaging keeps each clip's gradient independent of the batch size.
    """
    return per_roi_score(logits, labels, score=score, loss_func=loss_func).sum()


def non_target_weight(mask: torch.Tensor, *, spec: GuidanceSpec) -> torch.Tensor:
    """w = 1 - dilate(m), (N, T, H, W) float32, from target weights ``mask`` (N, T, H, W)."""
    m = mask if mask.is_floating_point() else mask.float()
    r, rt = spec.tolerance, spec.tolerance_frames
    if r > 0 or rt > 0:
        # Max-pool with stride 1 and "same" padding = grey-level dilation of a soft mask.
        m = F.max_pool3d(m.unsqueeze(1), (2 * rt + 1, 2 * r + 1, 2 * r + 1), stride=1,
                         padding=(rt, r, r)).squeeze(1)
    return 1.0 - m


def frame_weights(mask: torch.Tensor, *, spec: GuidanceSpec) -> torch.Tensor:
    """Per-row, per-frame penalty weight f (N, T) for target weights ``mask`` (N, T, H, W)."""
    n, t = mask.shape[:2]
    dist = (torch.arange(t, device=mask.device) - t // 2).abs().to(mask.dtype)
    f = torch.exp(-spec.temporal_decay * dist).expand(n, t)
    if not spec.absent_frames_off_target:
        f = f * (mask.flatten(2).amax(2) > 0).to(f.dtype)
    return f


def _block_energy(off: torch.Tensor, *, block: int, p: str) -> torch.Tensor:
    """Per-frame energy of P_b(off): (N, T) from ``off`` (N, C, T, H, W).

    Border blocks cut by H or W not divisible by b are averaged over their valid pixels.
    """
    if block <= 1:
        e = off.pow(2) if p == "l2" else off.abs()
        return e.sum((1, 3, 4))
    n, c, t, h, w = off.shape
    hb, wb = math.ceil(h / block), math.ceil(w / block)
    padded = F.pad(off, (0, wb * block - w, 0, hb * block - h))
    sums = padded.reshape(n, c, t, hb, block, wb, block).sum((4, 6))  # (N, C, T, hb, wb)
    ones = F.pad(off.new_ones(h, w), (0, wb * block - w, 0, hb * block - h))
    counts = ones.reshape(hb, block, wb, block).sum((1, 3))  # valid pixels per block
    # A block of n pixels all equal to its mean S/n has L2 energy S^2/n and L1 norm |S|.
    e = sums.pow(2) / counts if p == "l2" else sums.abs()
    return e.sum((1, 3, 4))


def _safe_divide(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """num / denom, and 0 where denom == 0 (which comes with num == 0: no non-target voxel or
    no gradient). Unlike an additive epsilon it does not bias small valid denominators, and
    unlike a clamp its backward stays finite."""
    ok = denom > 0
    return torch.where(ok, num / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(num))


def _row_penalty(grad: torch.Tensor, w: torch.Tensor, f: torch.Tensor, *, spec: GuidanceSpec) -> torch.Tensor:
    """R_n before normalization, (N,): see the module docstring."""
    if spec.penalty == "colour_shift":
        wf = w * f[:, :, None, None]
        d = (wf.unsqueeze(1) * grad).sum((2, 3, 4))  # (N, C)
        raw = d.pow(2).sum(1)
        return raw if spec.norm == "none" else _safe_divide(raw, wf.pow(2).flatten(1).sum(1))
    per_frame = _block_energy(w.unsqueeze(1) * grad, block=spec.lowpass, p=spec.p)
    return (per_frame * f).sum(1)


def gradient_penalty(grad: torch.Tensor, mask: torch.Tensor, *, spec: GuidanceSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalty R = mean_n R_n / N_n (scalar, differentiable w.r.t. ``grad``) and the detached
    off-target energy fraction per row (N,) with the raw mask.

    grad: (N, C, T, H, W) input gradients; mask: (N, T, H, W) target weight in [0, 1].
    """
    if mask.shape != grad.shape[:1] + grad.shape[2:]:
        raise ValueError(f"guidance mask shape {tuple(mask.shape)} does not match the input "
                         f"gradient rows (N, T, H, W) = {tuple(grad.shape[:1] + grad.shape[2:])}")
    # Low-precision gradients (autocast) are promoted: the penalty sums many small squares.
    g = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    mask = mask.to(g.dtype)
    if spec.norm == "share":
        return _share(g, mask, spec=spec), energy_fraction(g, mask)
    w = non_target_weight(mask, spec=spec)
    energy = _row_penalty(g, w, frame_weights(mask, spec=spec), spec=spec)
    if spec.norm == "count":
        denom = w.flatten(1).sum(1) * g.shape[1]
    elif spec.norm == "ratio":
        denom = (g.pow(2) if spec.p == "l2" else g.abs()).flatten(1).sum(1).detach()
    else:
        denom = torch.ones_like(energy)
    return _safe_divide(energy, denom).mean(), energy_fraction(g, mask)


def _share(g: torch.Tensor, mask: torch.Tensor, *, spec: GuidanceSpec) -> torch.Tensor:
    """NORM share: mean over rows of E(g_n) / ||g_n||_p^p, denominator not detached (module doc)."""
    peak = g.detach().abs().flatten(1).amax(1)
    ok = peak >= torch.finfo(g.dtype).tiny
    u = g / torch.where(ok, peak, torch.ones_like(peak)).view((-1,) + (1,) * (g.dim() - 1))
    energy = _row_penalty(u, non_target_weight(mask, spec=spec), frame_weights(mask, spec=spec), spec=spec)
    total = (u.pow(2) if spec.p == "l2" else u.abs()).flatten(1).sum(1)
    return torch.where(ok, _safe_divide(energy, total), torch.zeros_like(energy)).mean()


def merge_same_class(masks: torch.Tensor, labels: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Row masks (R, T, H, W) with each row replaced by the union (max) of the rows of the same
    clip that carry the same label: int64 (R,) equal, or float (R, C) with the same classes > 0
    (CutMix's soft rows). Why: a class score's legitimate evidence is every source of that
    class; with one mask per source, a same-class CutMix pair pays R >= 1/2 whatever the model.

    batch_index: int64 (R,) clip of each row.
    """
    keys = labels.reshape(-1, 1) if labels.dim() == 1 else (labels > 0)
    same = (batch_index[:, None] == batch_index[None]) & (keys[:, None] == keys[None]).all(-1)
    if bool(same.sum(1).eq(1).all()):
        return masks
    return torch.stack([masks[row].amax(0) for row in same])


def input_gradient_penalty(score: torch.Tensor, clip: torch.Tensor, mask: torch.Tensor, *,
                           spec: GuidanceSpec, create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Union-region penalty of a scalar ``score``: R (differentiable w.r.t. parameters when
    ``create_graph``) and the detached off-target energy fraction per clip (B,).

    clip: (B, C, T, H, W) with requires_grad; mask: (B, T, H, W) target weight in [0, 1].
    """
    if mask.shape != clip.shape[:1] + clip.shape[2:]:
        raise ValueError(f"guidance mask shape {tuple(mask.shape)} does not match the clip "
                         f"(B, T, H, W) = {tuple(clip.shape[:1] + clip.shape[2:])}")
    (g,) = torch.autograd.grad(score, clip, create_graph=create_graph)
    return gradient_penalty(g, mask, spec=spec)


__all__ = ["GuidanceSpec", "per_roi_score", "guidance_score", "non_target_weight", "frame_weights",
           "gradient_penalty", "input_gradient_penalty", "merge_same_class"]
