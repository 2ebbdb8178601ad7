"""MViT (pytorchvideo ``create_multiscale_vision_transformers``) as a feature-map backbone.

The transformer's tokens (after the final LayerNorm, class token dropped) are reshaped to a
(B, C, T', H', W') map so the same RoI head serves CNNs and transformers.

Double backward: pytorchvideo 0.1.5 writes attention as explicit ``q @ k^T``, softmax and
``attn @ v`` matmuls (no ``scaled_dot_product_attention``), so every op has a double-backward
formula on CPU and GPU; the objective's SDPA math-backend pin (exact mode) is therefore not
even needed here, but keeps a future SDPA-based MViT correct. The attention-pooling convs are
depthwise: they are swapped for :class:`stal.models.backbones.GroupedConv3d` (same weights)
for a fast double backward.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from stal.models.backbones import _replace_grouped_convs
from stal.models.pytorchvideo_compat import import_pytorchvideo


class MViTBackbone(nn.Module):
    """MViT without its head: clip (B, 3, T, S, S) -> (B, C, T / 2, S / stride, S / stride).

    The positional embeddings are learned for one input size, so the clip must be exactly
    ``fixed_input = (T, S, S)`` (checked by the detector with a clear message). Submodule
    names equal pytorchvideo's, so its state dicts load after dropping ``head.*``.
    """

    temporal_multiple = 1

    def __init__(self, *, net: nn.Module, out_channels: int, spatial_stride: int,
                 temporal_stride: int, fixed_input: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch_embed = net.patch_embed
        self.cls_positional_encoding = net.cls_positional_encoding
        self.pos_drop = net.pos_drop
        self.norm_patch_embed = net.norm_patch_embed
        self.blocks = net.blocks
        self.norm_embed = net.norm_embed
        self.out_channels = out_channels
        self.spatial_stride = spatial_stride
        self.temporal_stride = temporal_stride
        self.fixed_input = fixed_input

    def forward(self, clip: Tensor) -> Tensor:
        x = self.cls_positional_encoding(self.patch_embed(clip))  # (B, 1 + N, C)
        if self.pos_drop is not None:
            x = self.pos_drop(x)
        if self.norm_patch_embed is not None:
            x = self.norm_patch_embed(x)
        thw = self.cls_positional_encoding.patch_embed_shape
        for block in self.blocks:
            x, thw = block(x, thw)
        x = self.norm_embed(x)[:, 1:]  # drop the class token
        b, _, c = x.shape
        return x.transpose(1, 2).reshape(b, c, *thw)


def mvit(
    *,
    in_channels: int = 3,
    temporal_size: int = 16,
    spatial_size: int = 224,
    depth: int = 16,
    patch_embed_dim: int = 96,
    num_heads: int = 1,
    stage_blocks: tuple[int, ...] = (1, 3, 14),
    pool_kv_stride: tuple[int, int, int] = (1, 8, 8),
    droppath_rate: float = 0.0,
) -> MViTBackbone:
    """MViT-B 16x4 by default (depth 16, widths 96-768, heads 1-8), random init.

    Args:
        in_channels: input channels.
        temporal_size, spatial_size: the (only) input size T x S x S the model accepts.
        depth: transformer blocks.
        patch_embed_dim: width after the (3, 7, 7) stride-(2, 4, 4) patch conv.
        num_heads: heads of the first stage.
        stage_blocks: indices of the blocks where a new stage starts: width and heads double
            and queries are pooled by (1, 2, 2); total spatial stride 4 * 2 ** len(stage_blocks).
        pool_kv_stride: key/value pooling stride of the first stage (adaptive, as MViT-B).
        droppath_rate: stochastic depth at the last block (0 keeps the forward deterministic
            given the RNG, which finite-difference guidance replays anyway).
    """
    create = import_pytorchvideo("models.vision_transformers").create_multiscale_vision_transformers
    net = create(
        spatial_size=spatial_size, temporal_size=temporal_size, depth=depth, input_channels=in_channels,
        patch_embed_dim=patch_embed_dim, num_heads=num_heads, droppath_rate_block=droppath_rate,
        embed_dim_mul=[[i, 2.0] for i in stage_blocks], atten_head_mul=[[i, 2.0] for i in stage_blocks],
        pool_q_stride_size=[[i, 1, 2, 2] for i in stage_blocks],
        pool_kv_stride_adaptive=list(pool_kv_stride), pool_kvq_kernel=[3, 3, 3], head=None,
    )
    _replace_grouped_convs(net.blocks)
    stride = 4 * 2 ** len(stage_blocks)
    if spatial_size % stride or temporal_size % 2:
        raise ValueError(f"MViT input {temporal_size}x{spatial_size}x{spatial_size}: spatial size must be a "
                         f"multiple of {stride} and the frame count even")
    return MViTBackbone(
        net=net, out_channels=net.norm_embed.normalized_shape[0], spatial_stride=stride,
        temporal_stride=2, fixed_input=(temporal_size, spatial_size, spatial_size),
    )
