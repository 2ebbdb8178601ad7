"""Input-gradient rows for the penalty: one per clip (union) or one per ROI (per_source).

Per-source gradients are computed per *slot*: slot j holds the j-th ROI of every clip, and
one backward of s_j = sum of slot j's ROI scores gives, in clip b, the gradient of clip b's
j-th ROI. So a batch needs K = (most ROIs in one clip) backward passes, not R, and all K are
done in one call with ``torch.autograd.grad(..., is_grads_batched=True)`` (vmap over the
backward; a plain loop when an op lacks a batching rule). This is d s_k / d x_{b(k)} exactly
when the model treats the clips of a batch independently (GroupNorm, LayerNorm, eval-mode
BatchNorm, or GUIDANCE.INNER_BN batch_constant / eval: :mod:`stal.guidance.batchnorm`).
Train-mode BatchNorm couples clips: the slot gradient then also carries the (small)
batch-statistics terms of the other clips' slot-j ROIs -- the same coupling the union
gradient has. With one source per clip, per_source and union are the same computation.
"""

from __future__ import annotations

import torch


def roi_slots(batch_index: torch.Tensor) -> torch.Tensor:
    """Rank of each ROI among the ROIs of its clip, int64 (R,), for ``batch_index`` (R,)."""
    order = torch.argsort(batch_index, stable=True)
    sorted_b = batch_index[order]
    first = torch.searchsorted(sorted_b, sorted_b)  # index of the first ROI of the same clip
    slots = torch.empty_like(batch_index)
    slots[order] = torch.arange(len(order), device=batch_index.device) - first
    return slots


def _grad_or_zeros(outputs, inputs, grad_outputs, *, create_graph: bool, batched: bool):
    (g,) = torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=True, create_graph=create_graph,
                               allow_unused=True, is_grads_batched=batched)
    if g is None:  # the scores do not depend on the input (e.g. no ROI at all)
        lead = (grad_outputs.shape[0],) if batched else ()
        g = torch.zeros(lead + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    return g


def slot_gradients(scores: torch.Tensor, clip: torch.Tensor, *, slots: torch.Tensor,
                   create_graph: bool, batched: bool = True) -> torch.Tensor:
    """Gradients of each slot's summed score w.r.t. the whole clip batch, (K, B, C, T, H, W).

    scores: (R,) per-ROI scores computed from ``clip`` (B, C, T, H, W, requires_grad).
    The forward graph is retained (the task loss still needs it).
    """
    num_slots = int(slots.max()) + 1 if len(slots) else 1
    onehot = torch.nn.functional.one_hot(slots, num_slots).T.to(scores.dtype)  # (K, R)
    if batched and num_slots > 1:
        try:
            return _grad_or_zeros(scores, clip, onehot, create_graph=create_graph, batched=True)
        except RuntimeError:  # an op without a vmap rule for its backward: loop instead
            pass
    return torch.stack([_grad_or_zeros(scores, clip, onehot[k], create_graph=create_graph, batched=False)
                        for k in range(num_slots)])


def gradient_rows(scores: torch.Tensor, clip: torch.Tensor, *, batch_index: torch.Tensor, region: str,
                  create_graph: bool, batched: bool = True) -> torch.Tensor:
    """Input-gradient rows (N, C, T, H, W): N = B clips (union) or R ROIs (per_source).

    scores: (R,) per-ROI scores; batch_index: int64 (R,) clip of each ROI.
    """
    if region == "union":
        return _grad_or_zeros(scores.sum(), clip, None, create_graph=create_graph, batched=False)
    slots = roi_slots(batch_index)
    per_slot = slot_gradients(scores, clip, slots=slots, create_graph=create_graph, batched=batched)
    return per_slot[slots, batch_index]
