"""Video backbones: clip (B, 3, T, H, W) -> feature map (B, C, T', H', W').

Every backbone exposes ``out_channels`` (C) and ``spatial_stride`` (H / H'), which the RoI
head needs to map input-pixel boxes to feature pixels. All of them support double backward
(exact input-gradient guidance) on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from stal.models.pytorchvideo_compat import import_pytorchvideo

_NORMS = ("batch", "group", "none")
_ACTIVATIONS = ("relu", "silu")


def _norm3d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        # Up to 8 groups; GroupNorm keeps no batch statistics, so the two evaluations of
        # finite-difference guidance see exactly the same normalisation.
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {_NORMS}, got {kind!r}")


def _conv_block(c_in: int, c_out: int, *, stride: tuple[int, int, int], norm: str) -> nn.Sequential:
    """3x3x3 conv -> norm -> SiLU (smooth, so finite-difference guidance is accurate)."""
    conv = nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=norm == "none")
    return nn.Sequential(conv, _norm3d(norm, c_out), nn.SiLU(inplace=False))


class SmallCNN3D(nn.Module):
    """Small plain 3D CNN for fast CPU training on small clips (e.g. 8x64x64).

    Layout: a stride-(1,2,2) stem conv, then ``depth`` 3x3x3 conv blocks. Spatial downsampling
    is done by strided convs (no max pooling: its gradient is a hard switch, which makes
    input-gradient penalties and finite differences noisy); each downsampling block doubles
    the width. Activations are SiLU.

    Args:
        in_channels: input channels (3 for RGB).
        width: channels after the stem; the output has ``width * spatial_stride / 2``.
        depth: conv blocks after the stem (>= log2(spatial_stride) - 1).
        norm: ``"group"`` (default; no batch statistics), ``"batch"`` or ``"none"``.
        spatial_stride: 2, 4, 8 or 16 (input pixels per feature pixel; 4 or 8 suit 64x64).
        temporal_stride: 1 or 2 (applied in the first downsampling block).

    Forward: (B, in_channels, T, H, W) -> (B, out_channels, T / temporal_stride,
    H / spatial_stride, W / spatial_stride) (ceil division for odd sizes).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        width: int = 16,
        depth: int = 4,
        norm: str = "group",
        spatial_stride: int = 8,
        temporal_stride: int = 1,
    ) -> None:
        super().__init__()
        if spatial_stride not in (2, 4, 8, 16):
            raise ValueError(f"spatial_stride must be 2, 4, 8 or 16, got {spatial_stride}")
        if temporal_stride not in (1, 2):
            raise ValueError(f"temporal_stride must be 1 or 2, got {temporal_stride}")
        n_down = int(math.log2(spatial_stride)) - 1
        if depth < max(n_down, 1):
            raise ValueError(f"depth={depth} is too small for spatial_stride={spatial_stride}")
        if temporal_stride > 1 and n_down == 0:
            raise ValueError("temporal_stride 2 needs a downsampling block (spatial_stride >= 4)")

        # Downsampling blocks spread evenly over the depth, the first one at block 0.
        down_at = {i * depth // n_down for i in range(n_down)}
        layers = [_conv_block(in_channels, width, stride=(1, 2, 2), norm=norm)]
        channels = width
        for i in range(depth):
            if i in down_at:
                t = temporal_stride if i == 0 else 1
                layers.append(_conv_block(channels, 2 * channels, stride=(t, 2, 2), norm=norm))
                channels *= 2
            else:
                layers.append(_conv_block(channels, channels, stride=(1, 1, 1), norm=norm))
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels
        self.spatial_stride = spatial_stride
        self.temporal_stride = temporal_stride

    def forward(self, clip: Tensor) -> Tensor:
        return self.layers(clip)


class X3DBackbone(nn.Module):
    """pytorchvideo X3D without its head: clip -> res5 feature map.

    Built by :func:`x3d_xs`. ``blocks`` are the stem and the four residual stages of
    ``pytorchvideo.models.x3d.create_x3d`` (same module names, so X3D checkpoints load after
    dropping the ``blocks.5`` head keys).
    """

    def __init__(self, *, blocks: nn.ModuleList, out_channels: int, spatial_stride: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.out_channels = out_channels
        self.spatial_stride = spatial_stride

    def forward(self, clip: Tensor) -> Tensor:
        for block in self.blocks:
            clip = block(clip)
        return clip


class _GroupedConv3dFn(torch.autograd.Function):
    """conv3d (no bias) whose input gradient is an explicit ``conv_transpose3d``.

    Why: PyTorch's double backward of a grouped convolution (``_convolution_double_backward``)
    computes the weight term group by group, one small convolution per channel for a
    depthwise conv. Exact guidance needs exactly that term (how the input gradient changes
    with the weights), and X3D's depthwise 3x3x3 convs then dominate the guided step
    (X3D-XS, 8x64x64 clips, measured with and without this: 1.3-1.5x slower on 2 CPU
    threads, 4x slower on an H100 at batch 8). Written as a transposed convolution, the input
    gradient's own derivatives are first-order convolution backward kernels, which handle
    groups natively. Forward and first-order gradients are those of ``F.conv3d``.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        return F.conv3d(x, weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # output_padding recovers the input size lost to strided floor division.
            k = weight.shape[2:]
            out_pad = [
                x.shape[2 + d]
                - (grad_out.shape[2 + d] - 1) * stride[d]
                + 2 * padding[d]
                - dilation[d] * (k[d] - 1)
                - 1
                for d in range(3)
            ]
            w = weight.to(grad_out.dtype)  # under autocast the saved weight may be float32
            grad_x = F.conv_transpose3d(
                grad_out, w, None, stride, padding, out_pad, groups, dilation
            )
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x.to(grad_out.dtype), weight.to(grad_out.dtype), None, stride, padding,
                dilation, False, [0, 0, 0], groups, [False, True, False],
            )[1]
        return grad_x, grad_w, None, None, None, None


class GroupedConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state_dict keys) with a fast double backward for
    ``groups > 1``; see :class:`_GroupedConv3dFn`. Zero padding only."""

    def forward(self, x: Tensor) -> Tensor:
        if self.groups == 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        y = _GroupedConv3dFn.apply(
            x, self.weight, self.stride, self.padding, self.dilation, self.groups
        )
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1, 1)

    @classmethod
    def from_conv(cls, conv: nn.Conv3d) -> "GroupedConv3d":
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        new.load_state_dict(conv.state_dict())
        return new


def _replace_grouped_convs(module: nn.Module) -> None:
    """Swap every grouped ``nn.Conv3d`` child for a :class:`GroupedConv3d` (same weights)."""
    for name, child in module.named_children():
        if type(child) is nn.Conv3d and child.groups > 1:
            setattr(module, name, GroupedConv3d.from_conv(child))
        else:
            _replace_grouped_convs(child)


def _replace_modules(module: nn.Module, old_type: type, factory: type) -> None:
    """Recursively replace every ``old_type`` child of ``module`` by ``factory()``."""
    for name, child in module.named_children():
        if isinstance(child, old_type):
            setattr(module, name, factory())
        else:
            _replace_modules(child, old_type, factory)


def x3d_xs(
    *,
    in_channels: int = 3,
    input_clip_length: int = 4,
    input_crop_size: int = 160,
    depth_factor: float = 2.2,
    width_factor: float = 2.0,
    activation: str = "relu",
    res5_spatial_stride: int = 2,
) -> X3DBackbone:
    """X3D-XS backbone (pytorchvideo ``create_x3d``, random init, nothing downloaded).

    Args:
        in_channels: input channels.
        input_clip_length: clip length T the model is meant for; only used to size the head
            that is built and discarded (the backbone itself takes any T and H, W >= 32).
        input_crop_size: crop size, same remark.
        depth_factor: X3D depth multiplier (XS: 2.2; e.g. 0.5 for a tiny test model).
        width_factor: X3D width multiplier (XS: 2.0); res5 has ``round(96 * width_factor)``
            channels, rounded to a multiple of 8.
        activation: ``"relu"`` (X3D's) or ``"silu"`` (smooth everywhere; recommended for
            finite-difference guidance, which is inaccurate through ReLU).
        res5_spatial_stride: 2 (X3D's, total stride 32) or 1 (total stride 16, no dilation;
            AVA RoI models use stride 16 to give the RoI head a finer map).

    Returns:
        :class:`X3DBackbone`: (B, 3, T, H, W) -> (B, C, T, H/stride, W/stride).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if res5_spatial_stride not in (1, 2):
        raise ValueError(f"res5_spatial_stride must be 1 or 2, got {res5_spatial_stride}")
    create_x3d = import_pytorchvideo("models.x3d").create_x3d
    net = create_x3d(
        input_channel=in_channels,
        input_clip_length=input_clip_length,
        input_crop_size=input_crop_size,
        depth_factor=depth_factor,
        width_factor=width_factor,
        stage_spatial_stride=(2, 2, 2, res5_spatial_stride),
        model_num_class=1,  # the head is dropped below
    )
    blocks = nn.ModuleList(list(net.blocks)[:-1])
    # pytorchvideo's Swish is a Python autograd.Function; it does support double backward
    # (its backward uses differentiable ops) but nn.SiLU is the same function as one native
    # kernel with a native double-backward formula.
    _replace_modules(blocks, import_pytorchvideo("layers.swish").Swish, nn.SiLU)
    _replace_grouped_convs(blocks)  # X3D's depthwise convs: see GroupedConv3d
    if activation == "silu":
        # Post-hoc rather than create_x3d(activation=...): that argument misses the ReLU
        # hard-coded inside the squeeze-excitation blocks.
        _replace_modules(blocks, nn.ReLU, nn.SiLU)
    res5_out = blocks[-1].res_blocks[-1].branch2.conv_c.out_channels
    return X3DBackbone(
        blocks=blocks, out_channels=res5_out, spatial_stride=16 * res5_spatial_stride
    )
