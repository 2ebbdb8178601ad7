"""Tests of stal.models: RoIAlign parity and double backward, every registered model."""

from __future__ import annotations

import pytest
import torch
import torchvision

from stal.models import RoIAlign, build_detector, roi_align
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


# Every registered model: tests/test_models_registry.py.


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
