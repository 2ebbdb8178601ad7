"""Weak supervision: multiple-instance pooling of per-proposal scores into clip scores.

UCF101-24 in the paper's weak setting has clip-level labels only. Each clip comes with
person proposals (from a detector or the synthesizer's boxes); the detector scores every
proposal and :class:`MILDetector` pools the scores of a clip's proposals into one row per
clip, which the ordinary clip-level loss (``stal.losses.per_roi_task_loss``) trains. At test
time :meth:`MILDetector.proposal_logits` gives per-box scores for frame-mAP.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

MIL_POOLINGS = ("max", "lse", "mean")


def mil_pool(logits: Tensor, batch_index: Tensor, *, num_clips: int, pooling: str, lse_r: float = 5.0) -> Tensor:
    """Pool per-proposal logits (R, K) into per-clip logits (num_clips, K).

    batch_index: int64 (R,) clip of each proposal; every clip must have at least one.
    pooling: "max" (classic MIL: the best instance decides), "mean", or "lse"
    (``log(mean(exp(r * x))) / r``: a smooth max between the two, and smooth for
    finite-difference guidance). Masked with finite/where ops only (no scatter), so every
    derivative order exists; the max goes through ``amax``, whose kink the FD recorder
    freezes.
    """
    if pooling not in MIL_POOLINGS:
        raise ValueError(f"MIL pooling must be one of {MIL_POOLINGS}, got {pooling!r}")
    member = batch_index[None, :] == torch.arange(num_clips, device=logits.device)[:, None]  # (B, R)
    counts = member.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError(f"clips {torch.nonzero(counts == 0).flatten().tolist()} have no proposals")
    x = logits[None].expand(num_clips, -1, -1)  # (B, R, K)
    keep = member[..., None]
    if pooling == "mean":
        return (x * keep).sum(dim=1) / counts[:, None].to(logits.dtype)
    if pooling == "max":
        # Non-members get a finite value below every logit (not -inf: the FD kink replay
        # multiplies by a 0/1 pattern, and 0 * inf is nan).
        floor = logits.detach().min() - 1.0
        return torch.where(keep, x, floor).amax(dim=1)
    scaled = torch.where(keep, lse_r * x, torch.full_like(x, -math.inf))
    return (torch.logsumexp(scaled, dim=1) - counts[:, None].to(logits.dtype).log()) / lse_r


class MILDetector(nn.Module):
    """Clip-level scores from per-proposal scores of an :class:`ActionDetector`.

    Args:
        detector: scores (R, K) for proposals.
        pooling: see :func:`mil_pool`. lse_r: sharpness of "lse".

    Forward:
        clip: (B, 3, T, H, W). rois: (R, 5) person proposals ``[batch_index, x1, y1, x2, y2]``
        in input pixels. A clip without any proposal is scored on the whole frame (the box
        [0, 0, W, H]) rather than dropped, so its label still trains the model.
        returns: (B, K) clip logits, one row per clip in clip order (``clip_level``: the
        objective's per-source guidance then takes row b against ``source_masks[b]``, the
        voxels of the source that carries clip b's label).
    """

    clip_level = True  # one output row per clip, not per box (read by stal.guidance.objective)

    def __init__(self, *, detector: nn.Module, pooling: str = "max", lse_r: float = 5.0) -> None:
        super().__init__()
        if pooling not in MIL_POOLINGS:
            raise ValueError(f"MIL pooling must be one of {MIL_POOLINGS}, got {pooling!r}")
        self.detector = detector
        self.pooling = pooling
        self.lse_r = lse_r

    def forward(self, clip: Tensor, rois: Tensor | None = None) -> Tensor:
        rois = with_full_frame_for_empty_clips(rois, clip)
        logits = self.detector(clip, rois)
        return mil_pool(logits, rois[:, 0].long(), num_clips=clip.shape[0], pooling=self.pooling,
                        lse_r=self.lse_r)

    def proposal_logits(self, clip: Tensor, rois: Tensor) -> Tensor:
        """Per-proposal logits (R, K) for localization at test time."""
        return self.detector(clip, rois)


def with_full_frame_for_empty_clips(rois: Tensor | None, clip: Tensor) -> Tensor:
    """``rois`` (R, 5) plus a full-frame box ``[b, 0, 0, W, H]`` for each clip b without any."""
    b, _, _, h, w = clip.shape
    if rois is None:
        rois = clip.new_zeros((0, 5))
    present = torch.zeros(b, dtype=torch.bool, device=clip.device)
    index = rois[:, 0].long()
    present[index[(index >= 0) & (index < b)]] = True  # bad indices: the detector's DataError
    missing = torch.nonzero(~present).flatten()
    if len(missing) == 0:
        return rois
    full = rois.new_tensor([0.0, 0.0, w, h]).expand(len(missing), 4)
    return torch.cat([rois, torch.cat([missing[:, None].to(rois.dtype), full], dim=1)])
