"""Image models for the one-frame path: torchvision ResNet-50 and VGG16-GAP on clips.

An image is a clip with T = 1, never a separate code path: :class:`ImageBackbone` folds the
frames of (B, 3, T, H, W) into the batch, runs the 2D network, and returns the video layout
(B, C, T, h, w), so the same heads, guidance and losses apply. With T > 1 every frame is
scored independently and the heads average over time (a TSN-style 2D baseline).

Submodule names equal torchvision's (``features.conv1``, ``features.layer1`` ... for
ResNet; ``features.0`` ... for VGG), so torchvision state dicts load after dropping the
classifier keys (see :mod:`stal.models.pretrained`). Nothing is downloaded.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
from torch import Tensor
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers


class ImageBackbone(nn.Module):
    """2D network applied per frame: (B, 3, T, H, W) -> (B, C, T, H / stride, W / stride)."""

    temporal_multiple = 1

    def __init__(self, *, features: nn.Module, out_channels: int, spatial_stride: int,
                 new_layers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.features = features
        # Key prefixes of layers that ImageNet checkpoints do not have (VGG16-GAP's conv6):
        # the pretrained loader reports them as new instead of failing.
        self.new_layers = new_layers
        self.out_channels = out_channels
        self.spatial_stride = spatial_stride

    def forward(self, clip: Tensor) -> Tensor:
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        out = self.features(frames)
        return out.reshape(b, t, *out.shape[1:]).transpose(1, 2)


def resnet50_2d(
    *, layers: tuple[int, int, int, int] = (3, 4, 6, 3), width_per_group: int = 64,
    layer4_dilation: bool = True,
) -> ImageBackbone:
    """torchvision ResNet-50 trunk (no avgpool/fc), random init.

    Args:
        layers: bottleneck blocks per stage ((3, 4, 6, 3) is ResNet-50; tiny: (1, 1, 1, 1)).
        width_per_group: bottleneck inner width per 64 planes (64 for ResNet-50).
        layer4_dilation: True (default) keeps layer4 at stride 16 with dilation 2: a 14x14 CAM
            at 224 px instead of 7x7, as WSOL methods do; False: stride 32.
    """
    net = ResNet(Bottleneck, list(layers), width_per_group=width_per_group,
                 replace_stride_with_dilation=[False, False, layer4_dilation])
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    features = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
    return ImageBackbone(features=features, out_channels=2048, spatial_stride=16 if layer4_dilation else 32)


def vgg16_gap_2d(*, cfg: tuple = tuple(vgg_cfgs["D"]), conv6_channels: int = 1024) -> ImageBackbone:
    """VGG16-GAP trunk: torchvision VGG16 ``features`` minus pool5, plus conv6 (3x3, ReLU) as in
    CAM (Zhou et al. 2016) and wsolevaluation; random init. conv6 takes index 30, pool5's.

    Args:
        cfg: torchvision VGG layer list (ints: 3x3 conv widths, "M": 2x2 max pool); the last
            entry must be "M" (it is removed). Default: VGG16 ("D"). Stride = 2 ** (pools - 1).
        conv6_channels: width of the added conv6 (1024 in CAM).
    """
    if cfg[-1] != "M":
        raise ValueError("VGG cfg must end with a max pool 'M' (pool5, removed for GAP)")
    features = make_layers(list(cfg), batch_norm=False)
    layers = list(features)[:-1]  # drop pool5
    last = [c for c in cfg if c != "M"][-1]
    conv6 = nn.Conv2d(last, conv6_channels, kernel_size=3, padding=1)
    trunk = nn.Sequential(*layers, conv6, nn.ReLU(inplace=True))
    stride = 2 ** (sum(c == "M" for c in cfg) - 1)
    return ImageBackbone(features=trunk, out_channels=conv6_channels, spatial_stride=stride,
                         new_layers=(f"features.{len(layers)}.",))
