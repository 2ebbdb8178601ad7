"""Actor-centric action detector: backbone + head, with the input checks users hit first."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from stal.errors import ConfigError, DataError


def check_clip_size(clip: Tensor, backbone: nn.Module) -> None:
    """Raise :class:`ConfigError` unless the clip fits the backbone's strides.

    H and W must be multiples of ``spatial_stride`` (otherwise the feature map is rounded
    and input-pixel boxes no longer map onto it), T a multiple of ``temporal_multiple``
    (SlowFast's alpha), and a backbone with ``fixed_input`` (MViT's learned positional
    embeddings) takes exactly that (T, H, W).
    """
    _, _, t, h, w = clip.shape
    fixed = getattr(backbone, "fixed_input", None)
    name = type(backbone).__name__
    if fixed is not None and (t, h, w) != tuple(fixed):
        raise ConfigError(f"{name} takes clips of exactly T x H x W = {fixed[0]}x{fixed[1]}x{fixed[2]} "
                          f"(learned positional embeddings), got {t}x{h}x{w}: set DATA.NUM_FRAMES and "
                          f"DATA.CROP_SIZE or build the model with temporal_size/spatial_size to match")
    stride, multiple = backbone.spatial_stride, getattr(backbone, "temporal_multiple", 1)
    if h % stride or w % stride:
        raise ConfigError(f"{name} has spatial stride {stride}: clip height and width must be multiples "
                          f"of it, got {h}x{w} (DATA.CROP_SIZE)")
    if t % multiple:
        raise ConfigError(f"{name} needs a frame count that is a multiple of {multiple} (slow/fast "
                          f"ratio alpha), got T={t} (DATA.NUM_FRAMES)")


def clamp_rois(rois: Tensor, *, batch_size: int, height: int, width: int) -> Tensor:
    """Boxes clamped into the frame [0, W] x [0, H] (input pixels), with a warning if any moved.

    rois: (R, 5) ``[batch_index, x1, y1, x2, y2]``. A batch index outside [0, B) or a box with
    x2 < x1 or y2 < y1 is a :class:`DataError` (a clamp would hide a wrong annotation).
    """
    if len(rois) == 0:
        return rois
    index = rois[:, 0]
    if bool((index < 0).any() | (index >= batch_size).any() | (index != index.round()).any()):
        raise DataError(f"rois[:, 0] must be integer batch indices in [0, {batch_size}), "
                        f"got {sorted(set(index.tolist()))}")
    if bool((rois[:, 3] < rois[:, 1]).any() | (rois[:, 4] < rois[:, 2]).any()):
        bad = torch.nonzero((rois[:, 3] < rois[:, 1]) | (rois[:, 4] < rois[:, 2])).flatten().tolist()
        raise DataError(f"boxes must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1; rows {bad[:10]} are not")
    lo = rois.new_zeros(4)
    hi = rois.new_tensor([width, height, width, height])
    boxes = torch.maximum(torch.minimum(rois[:, 1:], hi), lo)
    moved = (boxes != rois[:, 1:]).any(dim=1)
    if bool(moved.any()):
        warnings.warn(f"{int(moved.sum())} of {len(rois)} boxes extend outside the {width}x{height} clip "
                      f"and were clamped to it (boxes are input pixels)", stacklevel=3)
        return torch.cat([rois[:, :1], boxes], dim=1)
    return rois


class ActionDetector(nn.Module):
    """Scores actions for given actor boxes on a clip.

    Args:
        backbone: module (B, 3, T, H, W) -> (B, C, T', H', W') (or a list of pathways) with
            ``out_channels`` and ``spatial_stride`` attributes (optionally ``temporal_multiple``
            and ``fixed_input``, see :func:`check_clip_size`).
        head: module (features, rois) -> (R, num_classes), e.g. :class:`RoIActionHead`.

    Forward:
        clip: (B, 3, T, H, W) float, normalised network input.
        rois: (R, 5) float ``[batch_index, x1, y1, x2, y2]`` in input pixels of ``clip``
            (keyframe boxes; batch_index in [0, B)); boxes past the frame are clamped with a
            warning; R = 0 gives an empty (0, num_classes) result. None: one row per clip.
        returns: (R, num_classes) logits ((B, num_classes) for ``rois=None``).
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, clip: Tensor, rois: Tensor | None = None) -> Tensor:
        if clip.ndim != 5:
            raise ValueError(f"clip must be (B, C, T, H, W), got {tuple(clip.shape)}")
        check_clip_size(clip, self.backbone)
        if rois is not None:
            if rois.ndim != 2 or rois.shape[1] != 5:
                raise ValueError(
                    f"rois must be (R, 5) [batch_index, x1, y1, x2, y2], got {tuple(rois.shape)}"
                )
            rois = clamp_rois(rois, batch_size=clip.shape[0], height=clip.shape[3], width=clip.shape[4])
        return self.head(self.backbone(clip), rois)

    def cam(self, clip: Tensor, *, upsample: bool = True) -> Tensor:
        """Class activation maps (B, num_classes, H, W) (input size; feature size without
        ``upsample``), for heads with a ``cam`` method (:class:`CAMHead`)."""
        if not hasattr(self.head, "cam"):
            raise ConfigError(f"{type(self.head).__name__} has no class activation maps; "
                              f"use an image model with a CAM head (resnet50, vgg16_gap)")
        check_clip_size(clip, self.backbone)
        maps = self.head.cam(self.backbone(clip))
        if upsample:
            maps = F.interpolate(maps, size=clip.shape[-2:], mode="bilinear", align_corners=False)
        return maps
