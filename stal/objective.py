"""The training objective: a dict of named scalar losses, guidance being one entry."""

from __future__ import annotations

import torch
from torch import nn

from stal.guidance.penalty import GuidanceSpec, guidance_score, input_gradient_penalty
from stal.losses import per_roi_task_loss


class Objective:
    """Computes ``{"task": L_task, "guidance": lambda * R}`` for a batch.

    loss_func: "softmax" | "bce" (see :func:`stal.losses.per_roi_task_loss`).
    guidance: the penalty's options, or None for plain training.
    """

    def __init__(self, *, loss_func: str, guidance: GuidanceSpec | None):
        self.loss_func, self.guidance = loss_func, guidance

    def __call__(self, model: nn.Module, batch: dict, *, guidance_weight: float) -> tuple[dict, dict]:
        """Losses (scalars with graph) and stats (floats) for one batch.

        batch: ``clip`` (B, 3, T, H, W), ``rois`` (R, 5) input pixels, ``labels``, ``mask`` (B, T, H, W).
        """
        clip = batch["clip"]
        guided = self.guidance is not None
        if guided:
            clip = clip.detach().requires_grad_(True)
        logits = model(clip, batch["rois"])
        per_roi = per_roi_task_loss(logits, batch["labels"], loss_func=self.loss_func)
        losses = {"task": per_roi.mean()}
        stats: dict = {}
        if guided:
            score = guidance_score(logits, batch["labels"], score=self.guidance.score, loss_func=self.loss_func)
            penalty, fraction = input_gradient_penalty(score, clip, batch["mask"], spec=self.guidance,
                                                       create_graph=guidance_weight > 0)
            losses["guidance"] = guidance_weight * penalty
            stats["penalty"] = float(penalty.detach())
            stats["off_target_energy"] = float(fraction.mean())
        return losses, stats
