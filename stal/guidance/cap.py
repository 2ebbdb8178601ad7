"""The guidance cap: ||grad_theta(lambda R)|| <= max_ratio * ||grad_theta L_task||.

The guidance entry's parameter gradient G is computed here (one extra first-order backward of
the task loss) and the entry becomes the linear surrogate c * (value + sum_p <p - p.detach(), G_p>),
whose value is unchanged and whose gradient is c G with c <= 1; the penalty's own backward is
still done once.
"""

from __future__ import annotations

import torch
from torch import nn

from stal.guidance.exact import reraise_autograd


def linear_surrogate(params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """sum_p <p - p.detach(), G_p>: value 0, parameter gradient G (detached)."""
    return sum(((p - p.detach()) * g.detach()).sum() for p, g in zip(params, grads))


def global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm over a list of tensors, accumulated in float32 (float64 stays float64)."""
    return torch.sqrt(sum(g.to(torch.float64 if g.dtype == torch.float64 else torch.float32).pow(2).sum()
                          for g in grads))


def param_grads(model: nn.Module, entry: torch.Tensor) -> tuple[list, list]:
    """(trainable parameters, d entry / d parameter) with zeros for unused parameters; graph retained."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        grads = torch.autograd.grad(entry, params, retain_graph=True, allow_unused=True)
    except RuntimeError as exc:
        reraise_autograd(exc)
    return params, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def capped_entry(model: nn.Module, entry: torch.Tensor, task: torch.Tensor, *,
                 max_ratio: float) -> tuple[torch.Tensor, float]:
    """(surrogate entry, scale c): the entry's parameter gradient scaled down to at most
    ``max_ratio`` times the task loss's."""
    params, g_pen = param_grads(model, entry)
    g_task = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
    n_task, n_pen = global_norm([g for g in g_task if g is not None]), global_norm(g_pen)
    scale = 1.0
    if n_pen > max_ratio * n_task:
        scale = float(max_ratio * n_task / n_pen)
    return scale * (entry.detach() + linear_surrogate(params, g_pen)), scale
