"""pytorchvideo ResNet backbones: Slow and SlowFast (two pathways), R50 and R101, heads removed.

Both take ONE clip (B, 3, T, H, W): the input gradient that guidance penalises is taken with
respect to that tensor, so SlowFast builds its two pathways inside ``forward`` (the slow one
is a frame subset of the fast one, and its gradient flows back into the same clip).

Module names are those of ``pytorchvideo.models.resnet.create_resnet`` /
``pytorchvideo.models.slowfast.create_slowfast`` (``blocks.0`` stem, ``blocks.1-4`` res2-res5),
so their state dicts load after dropping the head keys (see :mod:`stal.models.pretrained`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from stal.models.pytorchvideo_compat import import_pytorchvideo


# Residual blocks of res2..res5 (pytorchvideo's _MODEL_STAGE_DEPTH, PySlowFast's _MODEL_STAGE_DEPTH).
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Temporal kernel of conv_a in res2..res5: PySlowFast's _TEMPORAL_KERNEL_BASIS for "slow" /
# "slowfast" (video_model_builder.py): the slow pathway is temporal only in res4 / res5.
_SLOW_TEMPORAL = (1, 1, 3, 3)
_FAST_TEMPORAL = (3, 3, 3, 3)


def _conv_a_kernels(temporal: tuple[int, ...], depth: int, res4_temporal_blocks: int | None) -> tuple:
    """Per-stage conv_a kernel sizes; res4 as a per-block list when only its first
    ``res4_temporal_blocks`` blocks are temporal (PySlowFast's ``RESNET.NUM_BLOCK_TEMP_KERNEL``,
    e.g. 6 of 23 in the R101 "50_50" models; resnet_helper.py ``ResStage``), None: all blocks."""
    blocks = STAGE_DEPTHS[depth][2]
    if res4_temporal_blocks is None or res4_temporal_blocks == blocks:
        return tuple((t, 1, 1) for t in temporal)
    if not 0 <= res4_temporal_blocks <= blocks:
        raise ValueError(f"res4_temporal_blocks must be in [0, {blocks}] for depth {depth}, got {res4_temporal_blocks}")
    res4 = [(temporal[2], 1, 1) if i < res4_temporal_blocks else (1, 1, 1) for i in range(blocks)]
    return ((temporal[0], 1, 1), (temporal[1], 1, 1), res4, (temporal[3], 1, 1))


def _check_depth(depth: int) -> None:
    if depth not in STAGE_DEPTHS:
        raise ValueError(f"depth must be one of {sorted(STAGE_DEPTHS)}, got {depth}")


def _truncate_stages(stages: list[nn.Module], blocks_per_stage: int | None) -> None:
    """Keep the first ``blocks_per_stage`` residual blocks of each stage (None: all).

    pytorchvideo only builds depths 50/101/152; tiny test models drop the later blocks of a
    stage, which is valid because only the first block changes the width or the stride.
    """
    if blocks_per_stage is None:
        return
    if blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
    for stage in stages:
        stage.res_blocks = nn.ModuleList(list(stage.res_blocks)[:blocks_per_stage])


def _res5_layout(res5_spatial_stride: int) -> tuple[tuple[int, ...], tuple]:
    """(spatial strides of res2-res5, conv_b dilations) for a res5 stride of 1 or 2.

    Stride 1 uses dilation 2 in res5, as PySlowFast's AVA detection models do (total stride
    16, the same receptive field as the stride-32 classifier the weights come from).
    """
    if res5_spatial_stride not in (1, 2):
        raise ValueError(f"res5_spatial_stride must be 1 or 2, got {res5_spatial_stride}")
    dil5 = 2 if res5_spatial_stride == 1 else 1
    return (1, 2, 2, res5_spatial_stride), ((1, 1, 1),) * 3 + ((1, dil5, dil5),)


class SlowBackbone(nn.Module):
    """Slow-only 3D ResNet: (B, 3, T, H, W) -> res5 (B, C, T, H/stride, W/stride).

    Built by :func:`slow_resnet`. ``blocks`` = stem + res2..res5 of ``create_resnet``.
    """

    temporal_multiple = 1

    def __init__(self, *, blocks: nn.ModuleList, out_channels: int, spatial_stride: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.out_channels = out_channels
        self.spatial_stride = spatial_stride

    def forward(self, clip: Tensor) -> Tensor:
        for block in self.blocks:
            clip = block(clip)
        return clip


def slow_resnet(
    *,
    depth: int = 50,
    in_channels: int = 3,
    stem_dim_out: int = 64,
    blocks_per_stage: int | None = None,
    res5_spatial_stride: int = 1,
    res4_temporal_blocks: int | None = None,
) -> SlowBackbone:
    """Slow-R50 / R101 (8x8 layout: temporal kernels only in res4/res5), random init.

    Args:
        depth: 50 or 101 (res2..res5 blocks: 3, 4, 6, 3 or 3, 4, 23, 3).
        in_channels: input channels.
        stem_dim_out: stem width (64); res5 has ``32 * stem_dim_out`` channels.
        blocks_per_stage: keep only this many residual blocks per stage (None: all).
        res5_spatial_stride: 1 (default; total stride 16 with dilation 2, PySlowFast AVA) or 2
            (stride 32, the Kinetics classifier).
        res4_temporal_blocks: only the first this many res4 blocks have a temporal kernel
            (None: all of them).
    """
    _check_depth(depth)
    create_resnet = import_pytorchvideo("models.resnet").create_resnet
    strides, dilations = _res5_layout(res5_spatial_stride)
    net = create_resnet(
        input_channel=in_channels, model_depth=depth, model_num_class=1, stem_dim_out=stem_dim_out,
        stem_conv_kernel_size=(1, 7, 7), stage_spatial_h_stride=strides,
        stage_spatial_w_stride=strides, stage_conv_b_dilation=dilations,
        stage_conv_a_kernel_size=_conv_a_kernels(_SLOW_TEMPORAL, depth, res4_temporal_blocks),
    )
    blocks = nn.ModuleList(list(net.blocks)[:-1])  # drop the classification head
    _truncate_stages(list(blocks)[1:], blocks_per_stage)
    return SlowBackbone(
        blocks=blocks, out_channels=32 * stem_dim_out, spatial_stride=16 * res5_spatial_stride
    )


def slow_r50(**kwargs) -> SlowBackbone:
    """:func:`slow_resnet` with depth 50."""
    return slow_resnet(depth=50, **kwargs)


class SlowFastBackbone(nn.Module):
    """SlowFast: clip (B, 3, T, H, W) -> [slow (B, Cs, T/alpha, h, w), fast (B, Cf, T, h, w)].

    The fast pathway sees every frame, the slow one ``T / alpha`` frames picked as PySlowFast's
    ``PackPathway`` does (``linspace(0, T - 1, T / alpha)``, rounded down), so checkpoints
    trained there see the same frames. T must be a multiple of ``alpha``: the lateral
    fast-to-slow convolutions stride by ``alpha`` in time and must land on the slow length.
    ``out_channels`` is Cs + Cf (the RoI head concatenates the pathways).
    """

    def __init__(
        self, *, blocks: nn.ModuleList, alpha: int, out_channels: int, spatial_stride: int
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.alpha = alpha
        self.temporal_multiple = alpha
        self.out_channels = out_channels
        self.spatial_stride = spatial_stride

    def forward(self, clip: Tensor) -> list[Tensor]:
        frames = clip.shape[2]
        index = torch.linspace(0, frames - 1, frames // self.alpha, device=clip.device).long()
        x = [clip.index_select(2, index), clip]
        for block in self.blocks:
            x = block(x)
        return x


def slowfast_resnet(
    *,
    depth: int = 50,
    in_channels: int = 3,
    stem_dim_out: int = 64,
    alpha: int = 4,
    beta_inv: int = 8,
    fusion_kernel_size: int = 7,
    blocks_per_stage: int | None = None,
    res5_spatial_stride: int = 1,
    res4_temporal_blocks: int | None = None,
) -> SlowFastBackbone:
    """SlowFast-R50 / R101 (alpha = speed ratio, 1/beta = fast channel ratio), random init.

    Args:
        depth: 50 or 101 (res2..res5 blocks: 3, 4, 6, 3 or 3, 4, 23, 3).
        in_channels: input channels (both pathways see the same clip).
        stem_dim_out: slow stem width (64); the fast stem has ``stem_dim_out / beta_inv``.
        alpha: fast frames per slow frame (4 for 8x8 with 32 input frames); the fusion conv's
            temporal stride.
        beta_inv: slow/fast channel ratio (8).
        fusion_kernel_size: temporal kernel of the fast-to-slow fusion convs (PySlowFast's
            ``SLOWFAST.FUSION_KERNEL_SZ``: 7 in the R50 models, 5 in the R101 ones).
        blocks_per_stage: keep this many residual blocks per stage (None: all).
        res5_spatial_stride: 1 (default, dilation 2, stride 16 as in PySlowFast AVA) or 2.
        res4_temporal_blocks: only the first this many res4 blocks of each pathway have a
            temporal kernel (None: all; 6 in PySlowFast's R101 "50_50" models).
    """
    _check_depth(depth)
    if stem_dim_out % beta_inv:
        raise ValueError(f"stem_dim_out={stem_dim_out} must be a multiple of beta_inv={beta_inv}")
    create_slowfast = import_pytorchvideo("models.slowfast").create_slowfast
    strides, dilations = _res5_layout(res5_spatial_stride)
    net = create_slowfast(
        input_channels=(in_channels, in_channels), model_depth=depth, model_num_class=1,
        slowfast_channel_reduction_ratio=(beta_inv,), stem_dim_outs=(stem_dim_out, stem_dim_out // beta_inv),
        slowfast_fusion_conv_kernel_size=(fusion_kernel_size, 1, 1), slowfast_fusion_conv_stride=(alpha, 1, 1),
        stage_spatial_strides=(strides, strides), stage_conv_b_dilations=(dilations, dilations),
        stage_conv_a_kernel_sizes=(_conv_a_kernels(_SLOW_TEMPORAL, depth, res4_temporal_blocks),
                                   _conv_a_kernels(_FAST_TEMPORAL, depth, res4_temporal_blocks)),
    )
    blocks = nn.ModuleList(list(net.blocks)[:5])  # stem + res2..res5; drop pool-concat and head
    stages = [p for b in list(blocks)[1:] for p in b.multipathway_blocks]
    _truncate_stages(stages, blocks_per_stage)
    res5 = 32 * stem_dim_out
    return SlowFastBackbone(
        blocks=blocks, alpha=alpha, out_channels=res5 + res5 // beta_inv,
        spatial_stride=16 * res5_spatial_stride,
    )


def slowfast_r50(**kwargs) -> SlowFastBackbone:
    """:func:`slowfast_resnet` with depth 50."""
    return slowfast_resnet(depth=50, **kwargs)
