"""Task losses of the ROI action head, per ROI so guidance can select sources."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_roi_task_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss_func: str) -> torch.Tensor:
    """Loss of each ROI, float (R,).

    logits: (R, num_classes). labels: int64 (R,) class indices for ``"softmax"``
    (one action per actor, cross-entropy) or float (R, num_classes) multi-hot for ``"bce"``
    (AVA: independent sigmoids, summed over classes).
    """
    if loss_func == "softmax":
        return F.cross_entropy(logits, labels, reduction="none")
    if loss_func == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").sum(1)
    raise ValueError(f"unknown loss_func {loss_func!r}; expected 'softmax' or 'bce'")


def class_probabilities(logits: torch.Tensor, *, loss_func: str) -> torch.Tensor:
    """Scores per ROI and class in [0, 1], (R, num_classes): softmax or sigmoid to match the loss."""
    return logits.softmax(-1) if loss_func == "softmax" else logits.sigmoid()
