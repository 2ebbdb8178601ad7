"""Model registry: a plain dict from name to a builder returning an :class:`ActionDetector`.

Builders take explicit keyword arguments only (no config object); the config layer maps its
keys onto these kwargs. Every builder accepts ``num_classes`` plus the RoI-head kwargs

    roi_output_size: tuple[int, int] = (7, 7)   RoIAlign bins before the spatial max
    sampling_ratio: int = 2                     RoIAlign samples per bin per axis (fixed)
    dropout: float = 0.0                        dropout before the classifier
    double_backward: bool = True                differentiable RoIAlign (exact guidance);
                                                False: torchvision's first-order kernel

and the backbone kwargs listed in its own docstring. Boxes are input pixels throughout.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from stal.models.backbones import SmallCNN3D, x3d_xs
from stal.models.detector import ActionDetector
from stal.models.heads import RoIActionHead


def _with_roi_head(
    backbone: nn.Module,
    *,
    num_classes: int,
    roi_output_size: tuple[int, int],
    sampling_ratio: int,
    dropout: float,
    double_backward: bool,
) -> ActionDetector:
    head = RoIActionHead(
        in_channels=backbone.out_channels,
        num_classes=num_classes,
        spatial_stride=backbone.spatial_stride,
        output_size=tuple(roi_output_size),
        sampling_ratio=sampling_ratio,
        dropout=dropout,
        double_backward=double_backward,
    )
    return ActionDetector(backbone=backbone, head=head)


def build_small3d(
    *,
    num_classes: int,
    width: int = 16,
    depth: int = 4,
    norm: str = "group",
    spatial_stride: int = 8,
    temporal_stride: int = 1,
    in_channels: int = 3,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """:class:`SmallCNN3D` + RoI head, for 8x64x64 clips on CPU.

    Backbone kwargs: ``width`` (channels after the stem), ``depth`` (conv blocks after the
    stem), ``norm`` ("group" | "batch" | "none"), ``spatial_stride`` (4 or 8),
    ``temporal_stride`` (1 or 2), ``in_channels``. Head kwargs: see the module docstring.
    """
    backbone = SmallCNN3D(
        in_channels=in_channels,
        width=width,
        depth=depth,
        norm=norm,
        spatial_stride=spatial_stride,
        temporal_stride=temporal_stride,
    )
    return _with_roi_head(
        backbone,
        num_classes=num_classes,
        roi_output_size=roi_output_size,
        sampling_ratio=sampling_ratio,
        dropout=dropout,
        double_backward=double_backward,
    )


def build_small3d_tiny(*, num_classes: int, **kwargs) -> ActionDetector:
    """Tiny :func:`build_small3d` for tests (width 4, depth 2, stride 4); same kwargs."""
    kwargs = {"width": 4, "depth": 2, "spatial_stride": 4, "roi_output_size": (2, 2), **kwargs}
    return build_small3d(num_classes=num_classes, **kwargs)


def build_x3d_xs(
    *,
    num_classes: int,
    input_clip_length: int = 4,
    input_crop_size: int = 160,
    depth_factor: float = 2.2,
    width_factor: float = 2.0,
    activation: str = "relu",
    res5_spatial_stride: int = 2,
    in_channels: int = 3,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """pytorchvideo X3D-XS (random init, head removed) + RoI head on res5.

    Backbone kwargs (see :func:`stal.models.backbones.x3d_xs`): ``input_clip_length`` and
    ``input_crop_size`` (only size the discarded X3D head), ``depth_factor`` (2.2 for XS),
    ``width_factor`` (2.0 for XS), ``activation`` ("relu" as in X3D, or "silu" for accurate
    finite-difference guidance), ``res5_spatial_stride`` (2: stride 32; 1: stride 16),
    ``in_channels``. Uses BatchNorm3d (X3D's). Head kwargs: see the module docstring.
    """
    backbone = x3d_xs(
        in_channels=in_channels,
        input_clip_length=input_clip_length,
        input_crop_size=input_crop_size,
        depth_factor=depth_factor,
        width_factor=width_factor,
        activation=activation,
        res5_spatial_stride=res5_spatial_stride,
    )
    return _with_roi_head(
        backbone,
        num_classes=num_classes,
        roi_output_size=roi_output_size,
        sampling_ratio=sampling_ratio,
        dropout=dropout,
        double_backward=double_backward,
    )


def build_x3d_xs_tiny(*, num_classes: int, **kwargs) -> ActionDetector:
    """Tiny :func:`build_x3d_xs` for tests (depth_factor 0.5, width_factor 0.5); same kwargs."""
    kwargs = {
        "depth_factor": 0.5,
        "width_factor": 0.5,
        "input_crop_size": 32,
        "roi_output_size": (2, 2),
        **kwargs,
    }
    return build_x3d_xs(num_classes=num_classes, **kwargs)


MODEL_REGISTRY: dict[str, Callable[..., ActionDetector]] = {
    "small3d": build_small3d,
    "small3d_tiny": build_small3d_tiny,
    "x3d_xs": build_x3d_xs,
    "x3d_xs_tiny": build_x3d_xs_tiny,
}


class UnknownModelError(KeyError, ValueError):
    """Unknown registry name; catchable as KeyError or ValueError."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def build_detector(name: str, *, num_classes: int, **kwargs) -> ActionDetector:
    """Build the registered model ``name`` with ``num_classes`` outputs and builder kwargs."""
    try:
        builder = MODEL_REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(sorted(MODEL_REGISTRY))}"
        ) from None
    return builder(num_classes=num_classes, **kwargs)
