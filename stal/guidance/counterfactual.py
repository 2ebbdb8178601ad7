"""Counterfactual guidance: the change in each actor's prediction when the synthesizer
re-renders the same actors over another background.

The gradient forms of :mod:`stal.guidance.penalty` ask, through d s / d x, how much an
infinitesimal change of the non-target voxels moves the score. The synthesizer can answer a
finite version of the same question for the one change a shortcut depends on: it knows,
from the provenance, which voxels are actors, so it can keep them and swap everything else
for a background of another scene (``clip_cf``, see :mod:`stal.data.batch`). The
difference between the two renderings is zero on the target and the background change
outside it, so the penalty below is a finite directional difference of the prediction
along a perturbation of non-target voxels only; a model that reads the actor is unmoved.

Per ROI r with predictions p (x) and q (x_cf), the penalty is the symmetric KL divergence
- softmax: 1/2 sum_c (p_c - q_c) (log p_c - log q_c);
- bce (independent sigmoids, AVA): the same per class for the Bernoulli (p_c, 1 - p_c),
  summed over classes;
and R is the mean over ROIs. It is >= 0, zero iff the predictions agree, symmetric (both
renderings get a gradient, neither is the "teacher"), and on the scale of the task loss.
"""

from __future__ import annotations

import torch
from torch import nn

from stal.errors import ConfigError
from stal.losses import per_roi_task_loss


def prediction_shift(logits: torch.Tensor, logits_cf: torch.Tensor, *, loss_func: str) -> torch.Tensor:
    """Symmetric KL between the predictions of the two renderings, per ROI: float (R,).

    logits, logits_cf: (R, num_classes), row r of both is the same actor.
    """
    if logits.shape != logits_cf.shape:
        raise ValueError(f"counterfactual logits {tuple(logits_cf.shape)} do not match {tuple(logits.shape)}")
    if loss_func == "softmax":
        logp, logq = logits.log_softmax(-1), logits_cf.log_softmax(-1)
        return 0.5 * ((logp.exp() - logq.exp()) * (logp - logq)).sum(-1)
    if loss_func == "bce":
        # Bernoulli symmetric KL: (p - q) (logit p - logit q), logit = log p - log (1 - p).
        p, q = logits.sigmoid(), logits_cf.sigmoid()
        return 0.5 * ((p - q) * (logits - logits_cf)).sum(-1)
    raise ValueError(f"unknown loss_func {loss_func!r}; expected 'softmax' or 'bce'")


def paired_rois(rois: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
    """ROI rows (R, 5) for the batch [clip; clip_cf] stacked along dim 0: (2R, 5).

    The second copy points at batch index b + batch_size; None (one ROI per clip) stays None.
    """
    if rois is None:
        return None
    shifted = rois.clone()
    shifted[:, 0] += batch_size
    return torch.cat([rois, shifted])


def counterfactual_losses(model: nn.Module, batch: dict, *, loss_func: str, guidance_weight: float,
                          task_on_both: bool = False) -> tuple[dict, dict]:
    """``{"task", "guidance"}``: task loss on ``clip``, lambda * mean prediction shift to ``clip_cf``.

    Both renderings go through one forward (batch 2B): the same weights and dropout stream for
    both, and one backward. The penalty is computed (and logged) even while the weight is 0 so
    that warm-up runs show what they will be penalized for. ``task_on_both``: the task loss is
    the mean over the ROIs of both renderings (the re-rendered clip is also a training sample,
    with the same labels), so that with weight 0 the renderings act as augmentation alone.
    """
    if batch.get("clip_cf") is None:
        raise ConfigError("GUIDANCE.MODE counterfactual needs batch['clip_cf'] (B, 3, T, H, W), the same "
                          "actors over another background; this training set does not render it")
    clip, rois, num = batch["clip"], batch["rois"], len(batch["labels"])
    logits = model(torch.cat([clip, batch["clip_cf"]]), paired_rois(rois, clip.shape[0]))
    logits, logits_cf = logits[:num], logits[num:]
    shift = prediction_shift(logits, logits_cf, loss_func=loss_func)
    penalty = shift.mean() if num else logits.sum() * 0.0
    task = per_roi_task_loss(logits, batch["labels"], loss_func=loss_func).mean()
    if task_on_both:
        task = 0.5 * (task + per_roi_task_loss(logits_cf, batch["labels"], loss_func=loss_func).mean())
    entry = guidance_weight * penalty if guidance_weight > 0 else guidance_weight * penalty.detach()
    return {"task": task, "guidance": entry}, {"penalty": float(penalty.detach())}
