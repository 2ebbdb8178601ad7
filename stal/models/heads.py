"""RoI action classification heads."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from stal.models.roi_align import RoIAlign


class RoIActionHead(nn.Module):
    """AVA-style RoI head (PySlowFast ``ResNetRoIHead``, one pathway).

    features (B, C, T', H', W') -> temporal mean over T' -> RoIAlign of the keyframe boxes ->
    spatial max -> dropout -> linear -> logits (R, num_classes). No final activation: the loss
    applies sigmoid (multi-label, AVA) or softmax (single-label).

    Args:
        in_channels: C of the feature map.
        num_classes: logits per RoI.
        spatial_stride: input pixels per feature pixel; boxes are scaled by 1 / stride.
        output_size: RoIAlign bins (oh, ow) before the spatial max.
        sampling_ratio: RoIAlign samples per bin along each axis (fixed, > 0).
        dropout: dropout probability before the linear layer.
        double_backward: use the differentiable RoIAlign (needed for exact input-gradient
            guidance); False uses torchvision's kernel (first order only).

    Forward:
        features: (B, C, T', H', W').
        rois: (R, 5) float rows ``[batch_index, x1, y1, x2, y2]`` in INPUT pixels (the clip
            that went into the backbone), keyframe boxes.
        returns: (R, num_classes) logits.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        spatial_stride: int,
        output_size: tuple[int, int] = (7, 7),
        sampling_ratio: int = 2,
        dropout: float = 0.0,
        double_backward: bool = True,
    ) -> None:
        super().__init__()
        self.roi_align = RoIAlign(
            output_size=output_size,
            spatial_scale=1.0 / spatial_stride,
            sampling_ratio=sampling_ratio,
            aligned=True,
            double_backward=double_backward,
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(in_channels, num_classes)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        if features.ndim != 5:
            raise ValueError(f"features must be (B, C, T, H, W), got {tuple(features.shape)}")
        pooled = self.roi_align(features.mean(dim=2), rois)  # (R, C, oh, ow)
        return self.proj(self.dropout(pooled.amax(dim=(2, 3))))
