"""Action heads: the AVA-style RoI head and the class-activation-map (GAP) head."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from stal.models.roi_align import RoIAlign


def temporal_mean(features: Tensor | list[Tensor]) -> Tensor:
    """(B, C, T', H', W') -> (B, C, H', W'); a list of pathways (SlowFast, each with its own T')
    is averaged per pathway and concatenated along C, as PySlowFast's ``ResNetRoIHead``."""
    if isinstance(features, Tensor):
        features = [features]
    for f in features:
        if f.ndim != 5:
            raise ValueError(f"features must be (B, C, T, H, W), got {tuple(f.shape)}")
    pooled = [f.mean(dim=2) for f in features]
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)


class RoIActionHead(nn.Module):
    """AVA-style RoI head (PySlowFast ``ResNetRoIHead``).

    features (B, C, T', H', W') or a list of pathways -> temporal mean (per pathway, then
    concatenated) -> RoIAlign of the keyframe boxes -> spatial max -> dropout -> linear ->
    logits (R, num_classes). No final activation: the loss applies sigmoid (multi-label,
    AVA) or softmax (single-label). ``rois=None`` scores each clip as a whole (the max over
    the whole map, the RoI of the full frame): (B, num_classes).

    Args:
        in_channels: C of the feature map (sum over pathways).
        num_classes: logits per RoI.
        spatial_stride: input pixels per feature pixel; boxes are scaled by 1 / stride.
        output_size: RoIAlign bins (oh, ow) before the spatial max.
        sampling_ratio: RoIAlign samples per bin along each axis (fixed, > 0).
        dropout: dropout probability before the linear layer.
        double_backward: use the differentiable RoIAlign (needed for exact input-gradient
            guidance); False uses torchvision's kernel (first order only).

    Forward:
        features: (B, C, T', H', W') or list of such tensors (same B, H', W').
        rois: (R, 5) float rows ``[batch_index, x1, y1, x2, y2]`` in INPUT pixels (the clip
            that went into the backbone), keyframe boxes; R may be 0; or None.
        returns: (R, num_classes) logits, or (B, num_classes) for ``rois=None``.
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

    def forward(self, features: Tensor | list[Tensor], rois: Tensor | None) -> Tensor:
        fmap = temporal_mean(features)
        region = fmap if rois is None else self.roi_align(fmap, rois)
        return self.proj(self.dropout(self.pool(region)))  # pooled: (R or B, C)

    @staticmethod
    def pool(region: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, C): spatial max, as the AVA head of PySlowFast."""
        return region.amax(dim=(2, 3))


class CAMHead(RoIActionHead):
    """Global-average-pooling classifier with class activation maps (Zhou et al. 2016).

    features -> temporal mean -> spatial mean (``rois=None``: whole clip, (B, num_classes))
    or RoIAlign + mean over the bins (per box, (R, num_classes)) -> dropout -> linear. Because
    the linear layer commutes with the mean, :meth:`cam` (the linear layer applied at every
    position) averages to exactly the clip logits.

    Args: as :class:`RoIActionHead` (``output_size`` etc. only matter when boxes are given).
    """

    @staticmethod
    def pool(region: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, C): spatial mean, so that the CAM averages to the logits."""
        return region.mean(dim=(2, 3))

    def cam(self, features: Tensor | list[Tensor]) -> Tensor:
        """Class activation maps (B, num_classes, H', W'): logit contribution per position,
        bias included (spatial mean of the maps = the clip logits)."""
        fmap = temporal_mean(features)
        return torch.einsum("kc,bchw->bkhw", self.proj.weight, fmap) + self.proj.bias[:, None, None]
