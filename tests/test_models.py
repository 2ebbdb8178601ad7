"""Tests of stal.models: RoIAlign parity and double backward, every registered model."""

from __future__ import annotations

import pytest
import torch
import torchvision

from stal.models import MODEL_REGISTRY, RoIAlign, build_detector, roi_align
from stal.models.backbones import GroupedConv3d


def _random_rois(
    n_images: int, n_rois: int, *, extent: float, generator: torch.Generator
) -> torch.Tensor:
    """(R, 5) [batch_index, x1, y1, x2, y2]; many boxes cross or lie beyond the border."""
    batch = torch.randint(0, n_images, (n_rois, 1), generator=generator).float()
    xy1 = torch.rand(n_rois, 2, generator=generator) * 1.4 * extent - 0.3 * extent
    wh = torch.rand(n_rois, 2, generator=generator) * 0.8 * extent
    return torch.cat([batch, xy1, xy1 + wh], dim=1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_roi_align_matches_torchvision(aligned: bool, sampling_ratio: int) -> None:
    gen = torch.Generator().manual_seed(sampling_ratio)
    features = torch.randn(3, 4, 9, 11, generator=gen)
    rois = _random_rois(3, 64, extent=22.0, generator=gen)  # input pixels, scale 1/2
    # Exact corner cases: whole map, degenerate box, box fully outside the map.
    corners = torch.tensor([[0, 0, 0, 22, 18], [1, 5, 5, 5, 5], [2, 40, 40, 60, 60.0]])
    rois = torch.cat([rois, corners])
    kwargs = dict(
        output_size=(5, 3), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned
    )
    ours = roi_align(features, rois, **kwargs)
    ref = torchvision.ops.roi_align(features, rois, **kwargs)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_roi_align_module_switches_kernel() -> None:
    features = torch.randn(2, 3, 6, 6)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 11.0], [1, -3.0, 0.0, 5.0, 4.0]])
    kwargs = dict(output_size=(2, 2), spatial_scale=0.5, sampling_ratio=2)
    fast = RoIAlign(double_backward=False, **kwargs)(features, rois)
    differentiable = RoIAlign(double_backward=True, **kwargs)(features, rois)
    torch.testing.assert_close(differentiable, fast, atol=1e-5, rtol=0)


def test_roi_align_gradgradcheck() -> None:
    features = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, -1.0, 0.5, 6.0, 7.0], [1, 2.0, 1.0, 9.0, 12.0]], dtype=torch.float64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return roi_align(x, rois, output_size=(2, 2), spatial_scale=0.5, sampling_ratio=2)

    assert torch.autograd.gradcheck(fn, (features,))
    assert torch.autograd.gradgradcheck(fn, (features,))


# Full-size registered models are tested at a tiny size through their own builder kwargs.
_TINY_OVERRIDES = {
    "small3d": dict(width=4, depth=2, spatial_stride=8, roi_output_size=(2, 2)),
    "x3d_xs": dict(depth_factor=0.3, width_factor=0.5, input_crop_size=32, roi_output_size=(2, 2)),
}


@pytest.mark.parametrize("name", sorted(MODEL_REGISTRY))
def test_registered_model_guided_step(name: str) -> None:
    torch.manual_seed(0)
    if not name.endswith("_tiny"):
        assert name in _TINY_OVERRIDES, f"add tiny kwargs for {name!r} to _TINY_OVERRIDES"
    kwargs = _TINY_OVERRIDES.get(name, {})
    model = build_detector(name, num_classes=3, **kwargs).train()
    clip = torch.rand(2, 3, 4, 32, 32, requires_grad=True)
    rois = torch.tensor([[0, 2.0, 4.0, 20.0, 30.0], [1, 10.0, 0.0, 31.0, 25.0]])  # input pixels
    features = model.backbone(clip)
    stride = model.backbone.spatial_stride  # the head maps boxes with it: must be the real one
    assert features.shape[1] == model.backbone.out_channels
    assert features.shape[-2:] == (32 // stride, 32 // stride)
    logits = model(clip, rois)
    assert logits.shape == (2, 3)

    targets = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    (g,) = torch.autograd.grad(logits.sum(), clip, create_graph=True)
    mask = torch.ones_like(clip)
    mask[..., 8:24, 8:24] = 0  # "off-target" voxels
    penalty = (g * mask).pow(2).sum()

    params = [p for p in model.parameters() if p.requires_grad]
    from_penalty = torch.autograd.grad(penalty, params, retain_graph=True, allow_unused=True)
    assert any(gp is not None and gp.abs().sum() > 0 for gp in from_penalty)
    (loss + penalty).backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_unknown_model_name() -> None:
    with pytest.raises(KeyError, match="small3d"):
        build_detector("no_such_model", num_classes=2)
    with pytest.raises(ValueError, match="available"):
        build_detector("no_such_model", num_classes=2)


def test_pytorchvideo_transforms_import_through_compat() -> None:
    # pytorchvideo.transforms imports a module torchvision 0.29 removed; the alias fixes it.
    from stal.models.pytorchvideo_compat import import_pytorchvideo

    assert hasattr(import_pytorchvideo("transforms"), "ShortSideScale")


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_grouped_conv3d_matches_conv3d_to_second_order(stride: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    ref = torch.nn.Conv3d(4, 4, 3, stride=stride, padding=1, groups=4, bias=True).double()
    fast = GroupedConv3d.from_conv(ref)
    x = torch.randn(1, 4, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(fast(x), ref(x))

    def penalty_grads(conv: torch.nn.Conv3d) -> tuple[torch.Tensor, ...]:
        (g,) = torch.autograd.grad(conv(x).tanh().sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), [conv.weight, conv.bias, x])

    for a, b in zip(penalty_grads(fast), penalty_grads(ref)):
        torch.testing.assert_close(a, b)
