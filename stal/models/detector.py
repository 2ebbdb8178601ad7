"""Actor-centric action detector: backbone + RoI head."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class ActionDetector(nn.Module):
    """Scores actions for given actor boxes on a clip.

    Args:
        backbone: module (B, 3, T, H, W) -> (B, C, T', H', W') with ``out_channels`` and
            ``spatial_stride`` attributes.
        head: module (features, rois) -> (R, num_classes), e.g. :class:`RoIActionHead`.

    Forward:
        clip: (B, 3, T, H, W) float, normalised network input.
        rois: (R, 5) float ``[batch_index, x1, y1, x2, y2]`` in input pixels of ``clip``
            (keyframe boxes; batch_index in [0, B)).
        returns: (R, num_classes) logits.
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, clip: Tensor, rois: Tensor) -> Tensor:
        if clip.ndim != 5:
            raise ValueError(f"clip must be (B, C, T, H, W), got {tuple(clip.shape)}")
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(
                f"rois must be (R, 5) [batch_index, x1, y1, x2, y2], got {tuple(rois.shape)}"
            )
        return self.head(self.backbone(clip), rois)
