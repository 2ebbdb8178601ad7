"""Model registry: a plain dict from name to a builder returning an :class:`ActionDetector`.

Builders take explicit keyword arguments only (no config object); the config layer maps its
keys onto these kwargs. Every builder accepts ``num_classes`` plus the RoI-head kwargs

    roi_output_size: tuple[int, int] = (7, 7)   RoIAlign bins before the spatial max
    sampling_ratio: int = 2                     RoIAlign samples per bin per axis (fixed)
    dropout: float = 0.0                        dropout before the classifier
    double_backward: bool = True                differentiable RoIAlign (exact guidance);
                                                False: torchvision's first-order kernel

and the backbone kwargs listed in its own docstring (the image models' CAM head takes the same
head kwargs). Boxes are input pixels throughout. ``*_tiny`` entries are small variants for
tests; ``DEFAULT_INPUTS`` gives each name's intended (frames, crop size). ``build_detector``
adds ``mil_pooling`` (weak supervision, :mod:`stal.models.mil`). See docs/models.md.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from torchvision.models.vgg import cfgs as vgg_cfgs

from stal.models.backbones import SmallCNN3D, x3d_xs
from stal.models.detector import ActionDetector
from stal.models.heads import CAMHead, RoIActionHead
from stal.models.image import resnet50_2d, vgg16_gap_2d
from stal.models.mil import MILDetector
from stal.models.mvit import mvit
from stal.models.resnet3d import slow_resnet, slowfast_resnet


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


def build_x3d_s(*, num_classes: int, **kwargs) -> ActionDetector:
    """X3D-S: the X3D-XS network (same depth and width factors) meant for 13x160 clips."""
    return build_x3d_xs(num_classes=num_classes, **{"input_clip_length": 13, **kwargs})


def build_x3d_m(*, num_classes: int, **kwargs) -> ActionDetector:
    """X3D-M: the X3D-XS network meant for 16x224 clips (X3D-XS/S/M differ only in input)."""
    return build_x3d_xs(num_classes=num_classes, **{"input_clip_length": 16, "input_crop_size": 224, **kwargs})


def build_slow_resnet(
    *,
    num_classes: int,
    depth: int = 50,
    stem_dim_out: int = 64,
    blocks_per_stage: int | None = None,
    res5_spatial_stride: int = 1,
    res4_temporal_blocks: int | None = None,
    in_channels: int = 3,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """pytorchvideo Slow-R50 / R101 + RoI head on res5 (stride 16 by default, PySlowFast AVA).

    Backbone kwargs: see :func:`stal.models.resnet3d.slow_resnet`. Head kwargs: module docstring.
    """
    backbone = slow_resnet(depth=depth, in_channels=in_channels, stem_dim_out=stem_dim_out,
                           blocks_per_stage=blocks_per_stage, res5_spatial_stride=res5_spatial_stride,
                           res4_temporal_blocks=res4_temporal_blocks)
    return _with_roi_head(backbone, num_classes=num_classes, roi_output_size=roi_output_size,
                          sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)


def build_slowfast_resnet(
    *,
    num_classes: int,
    depth: int = 50,
    stem_dim_out: int = 64,
    alpha: int = 4,
    beta_inv: int = 8,
    fusion_kernel_size: int = 7,
    blocks_per_stage: int | None = None,
    res5_spatial_stride: int = 1,
    res4_temporal_blocks: int | None = None,
    in_channels: int = 3,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """pytorchvideo SlowFast-R50 / R101 + RoI head on both pathways' res5 (concatenated channels).

    Takes one clip of T frames (T a multiple of ``alpha``); see
    :func:`stal.models.resnet3d.slowfast_resnet`. Head kwargs: module docstring.
    """
    backbone = slowfast_resnet(depth=depth, in_channels=in_channels, stem_dim_out=stem_dim_out, alpha=alpha,
                               beta_inv=beta_inv, fusion_kernel_size=fusion_kernel_size,
                               blocks_per_stage=blocks_per_stage, res5_spatial_stride=res5_spatial_stride,
                               res4_temporal_blocks=res4_temporal_blocks)
    return _with_roi_head(backbone, num_classes=num_classes, roi_output_size=roi_output_size,
                          sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)


def build_mvit_b_16x4(
    *,
    num_classes: int,
    temporal_size: int = 16,
    spatial_size: int = 224,
    depth: int = 16,
    patch_embed_dim: int = 96,
    num_heads: int = 1,
    stage_blocks: tuple[int, ...] = (1, 3, 14),
    pool_kv_stride: tuple[int, int, int] = (1, 8, 8),
    droppath_rate: float = 0.0,
    in_channels: int = 3,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """pytorchvideo MViT-B 16x4 + RoI head on the last tokens reshaped to a map (stride 32).

    Takes exactly ``temporal_size x spatial_size x spatial_size`` clips; backbone kwargs: see
    :func:`stal.models.mvit.mvit`. Head kwargs: module docstring.
    """
    backbone = mvit(in_channels=in_channels, temporal_size=temporal_size, spatial_size=spatial_size,
                    depth=depth, patch_embed_dim=patch_embed_dim, num_heads=num_heads,
                    stage_blocks=tuple(stage_blocks), pool_kv_stride=tuple(pool_kv_stride),
                    droppath_rate=droppath_rate)
    return _with_roi_head(backbone, num_classes=num_classes, roi_output_size=roi_output_size,
                          sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)


def _with_cam_head(backbone: nn.Module, *, num_classes: int, roi_output_size: tuple[int, int],
                   sampling_ratio: int, dropout: float, double_backward: bool) -> ActionDetector:
    head = CAMHead(in_channels=backbone.out_channels, num_classes=num_classes,
                   spatial_stride=backbone.spatial_stride, output_size=tuple(roi_output_size),
                   sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)
    return ActionDetector(backbone=backbone, head=head)


def build_resnet50(
    *,
    num_classes: int,
    layers: tuple[int, int, int, int] = (3, 4, 6, 3),
    width_per_group: int = 64,
    layer4_dilation: bool = True,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """torchvision ResNet-50 on one-frame clips (B, 3, 1, H, W) + GAP/CAM head (stride 16).

    ``rois=None`` classifies the image (WSOL); :meth:`ActionDetector.cam` gives the CAMs.
    Backbone kwargs: see :func:`stal.models.image.resnet50_2d`.
    """
    backbone = resnet50_2d(layers=tuple(layers), width_per_group=width_per_group,
                           layer4_dilation=layer4_dilation)
    return _with_cam_head(backbone, num_classes=num_classes, roi_output_size=roi_output_size,
                          sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)


def build_vgg16_gap(
    *,
    num_classes: int,
    cfg: tuple = tuple(vgg_cfgs["D"]),
    conv6_channels: int = 1024,
    roi_output_size: tuple[int, int] = (7, 7),
    sampling_ratio: int = 2,
    dropout: float = 0.0,
    double_backward: bool = True,
) -> ActionDetector:
    """torchvision VGG16 conv layers + conv6 + GAP/CAM head (VGG16-GAP of CAM, stride 16).

    Backbone kwargs: see :func:`stal.models.image.vgg16_gap_2d`.
    """
    backbone = vgg16_gap_2d(cfg=tuple(cfg), conv6_channels=conv6_channels)
    return _with_cam_head(backbone, num_classes=num_classes, roi_output_size=roi_output_size,
                          sampling_ratio=sampling_ratio, dropout=dropout, double_backward=double_backward)


def _preset(builder: Callable[..., ActionDetector], name: str, doc: str, **preset) -> Callable[..., ActionDetector]:
    """``builder`` with other defaults (still overridable), registered as ``name``."""
    def build(*, num_classes: int, **kwargs) -> ActionDetector:
        return builder(num_classes=num_classes, **{**preset, **kwargs})
    build.__doc__ = f"{doc}; kwargs of {builder.__name__}."
    build.__name__ = f"build_{name}"
    return build


def _tiny(builder: Callable[..., ActionDetector], doc: str, **tiny_kwargs) -> Callable[..., ActionDetector]:
    """A builder with tiny defaults (still overridable), for tests on 4x32x32 clips."""
    return _preset(builder, f"{builder.__name__.removeprefix('build_')}_tiny", f"Tiny variant for tests: {doc}",
                   **tiny_kwargs)


# PySlowFast's model-zoo layouts (configs/Kinetics/c2/SLOWFAST_8x8_R101_101_101.yaml and
# SLOWFAST_16x8_R101_50_50.yaml): FUSION_KERNEL_SZ 5; NUM_BLOCK_TEMP_KERNEL of res4 23 / 6.
build_slow_r50 = _preset(build_slow_resnet, "slow_r50", "Slow-R50 8x8", depth=50)
build_slow_r101 = _preset(build_slow_resnet, "slow_r101", "Slow-R101 8x8", depth=101)
build_slowfast_r50 = _preset(build_slowfast_resnet, "slowfast_r50", "SlowFast-R50 8x8 (alpha 4)", depth=50)
build_slowfast_r101 = _preset(build_slowfast_resnet, "slowfast_r101",
                              "SlowFast-R101 8x8 (alpha 4, fusion kernel 5, all res4 blocks temporal)",
                              depth=101, fusion_kernel_size=5)
build_slowfast_r101_16x8 = _preset(build_slowfast_resnet, "slowfast_r101_16x8",
                                   "SlowFast-R101 16x8 (64 frames, alpha 4, fusion kernel 5, 6 of 23 res4 "
                                   "blocks temporal)", depth=101, fusion_kernel_size=5, res4_temporal_blocks=6)


_TINY_HEAD = {"roi_output_size": (2, 2)}

MODEL_REGISTRY: dict[str, Callable[..., ActionDetector]] = {
    "small3d": build_small3d,
    "small3d_tiny": build_small3d_tiny,
    "x3d_xs": build_x3d_xs,
    "x3d_xs_tiny": build_x3d_xs_tiny,
    "x3d_s": build_x3d_s,
    "x3d_m": build_x3d_m,
    "slow_r50": build_slow_r50,
    "slow_r50_tiny": _tiny(build_slow_r50, "stem 8, one block per stage", stem_dim_out=8,
                           blocks_per_stage=1, **_TINY_HEAD),
    "slow_r101": build_slow_r101,
    "slow_r101_tiny": _tiny(build_slow_r101, "stem 4, all 3+4+23+3 blocks", stem_dim_out=4, **_TINY_HEAD),
    "slowfast_r50": build_slowfast_r50,
    "slowfast_r50_tiny": _tiny(build_slowfast_r50, "stem 8/1, one block per stage", stem_dim_out=8,
                               blocks_per_stage=1, **_TINY_HEAD),
    "slowfast_r101": build_slowfast_r101,
    "slowfast_r101_tiny": _tiny(build_slowfast_r101, "stem 8/1, all 3+4+23+3 blocks", stem_dim_out=8,
                                **_TINY_HEAD),
    "slowfast_r101_16x8": build_slowfast_r101_16x8,
    "slowfast_r101_16x8_tiny": _tiny(build_slowfast_r101_16x8, "stem 8/1, all 3+4+23+3 blocks",
                                     stem_dim_out=8, **_TINY_HEAD),
    "mvit_b_16x4": build_mvit_b_16x4,
    "mvit_b_16x4_tiny": _tiny(build_mvit_b_16x4, "4x32x32 input, depth 3, width 16-64",
                              temporal_size=4, spatial_size=32, depth=3, patch_embed_dim=16,
                              stage_blocks=(1, 2), pool_kv_stride=(1, 4, 4), **_TINY_HEAD),
    "resnet50": build_resnet50,
    "resnet50_tiny": _tiny(build_resnet50, "one bottleneck per stage, inner width / 8",
                           layers=(1, 1, 1, 1), width_per_group=8, **_TINY_HEAD),
    "vgg16_gap": build_vgg16_gap,
    "vgg16_gap_tiny": _tiny(build_vgg16_gap, "widths 8-32, conv6 64",
                            cfg=(8, "M", 16, "M", 32, "M", 32, "M", 32, "M"), conv6_channels=64,
                            **_TINY_HEAD),
}

# The input each model is meant for, (frames, crop size); model_info and bench_models use it.
# X3D-S/M share the X3D-XS network (x3d_xs_tiny covers them in tests).
DEFAULT_INPUTS: dict[str, tuple[int, int]] = {
    "small3d": (8, 64), "x3d_xs": (4, 160), "x3d_s": (13, 160), "x3d_m": (16, 224),
    "slow_r50": (8, 224), "slowfast_r50": (32, 224), "mvit_b_16x4": (16, 224),
    "slow_r101": (8, 224), "slowfast_r101": (32, 224), "slowfast_r101_16x8": (64, 224),
    "resnet50": (1, 224), "vgg16_gap": (1, 224),
    **{name: (4, 32) for name in MODEL_REGISTRY if name.endswith("_tiny")},
    "resnet50_tiny": (1, 32), "vgg16_gap_tiny": (1, 32),
}


class UnknownModelError(KeyError, ValueError):
    """Unknown registry name; catchable as KeyError or ValueError."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def build_detector(name: str, *, num_classes: int, mil_pooling: str | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` outputs and builder kwargs.

    ``mil_pooling`` ("max" | "lse" | "mean") wraps it in a :class:`MILDetector` for weak
    supervision: boxes are person proposals and the output is one row per clip.
    """
    try:
        builder = MODEL_REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(sorted(MODEL_REGISTRY))}"
        ) from None
    model = builder(num_classes=num_classes, **kwargs)
    return model if not mil_pooling else MILDetector(detector=model, pooling=mil_pooling)
