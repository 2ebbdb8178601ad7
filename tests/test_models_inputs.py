"""Bad input to the models, class activation maps, multiple-instance pooling."""

from __future__ import annotations

import pytest
import torch

from stal.errors import ConfigError, DataError
from stal.guidance.penalty import GuidanceSpec
from stal.models import build_detector, mil_pool
from stal.guidance.objective import Objective


@pytest.mark.parametrize("name, shape, match", [
    ("slow_r50_tiny", (1, 3, 4, 30, 32), "multiples of it, got 30x32"),
    ("small3d_tiny", (1, 3, 4, 32, 34), "multiples of it"),
    ("slowfast_r50_tiny", (1, 3, 6, 32, 32), "multiple of 4"),
    ("mvit_b_16x4_tiny", (1, 3, 4, 64, 64), "exactly T x H x W = 4x32x32"),
])
def test_clip_size_that_does_not_fit_the_strides_is_a_clear_error(name, shape, match):
    model = build_detector(name, num_classes=2)
    with pytest.raises(ConfigError, match=match):
        model(torch.zeros(shape), torch.tensor([[0, 1.0, 1.0, 8.0, 8.0]]))


def test_boxes_outside_the_frame_are_clamped_with_a_warning():
    torch.manual_seed(0)
    model = build_detector("small3d_tiny", num_classes=2).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    outside = torch.tensor([[0, -5.0, 3.0, 40.0, 20.0], [1, 2.0, 2.0, 10.0, 10.0]])
    inside = torch.tensor([[0, 0.0, 3.0, 32.0, 20.0], [1, 2.0, 2.0, 10.0, 10.0]])
    with pytest.warns(UserWarning, match="1 of 2 boxes .* clamped"):
        clamped = model(clip, outside)
    torch.testing.assert_close(clamped, model(clip, inside))


@pytest.mark.parametrize("rois, match", [
    (torch.tensor([[2, 1.0, 1.0, 5.0, 5.0]]), "batch indices in \\[0, 2\\)"),
    (torch.tensor([[0, 9.0, 1.0, 5.0, 5.0]]), "x2 >= x1"),
])
def test_malformed_boxes_are_a_data_error(rois, match):
    model = build_detector("small3d_tiny", num_classes=2)
    with pytest.raises(DataError, match=match):
        model(torch.zeros(2, 3, 4, 32, 32), rois)


@pytest.mark.parametrize("double_backward", [True, False])
@pytest.mark.parametrize("name", ["small3d_tiny", "slowfast_r50_tiny", "resnet50_tiny"])
def test_zero_boxes_give_an_empty_result(name, double_backward):
    model = build_detector(name, num_classes=3, double_backward=double_backward)
    clip = torch.randn(2, 3, 4, 32, 32, requires_grad=True)
    logits = model(clip, torch.zeros(0, 5))
    assert logits.shape == (0, 3)
    logits.sum().backward()  # no crash; nothing to propagate


def test_cam_averages_to_the_clip_logits():
    torch.manual_seed(0)
    model = build_detector("resnet50_tiny", num_classes=3).eval()
    image = torch.randn(2, 3, 1, 32, 32)  # one-frame clips
    cams = model.cam(image, upsample=False)
    assert cams.shape == (2, 3, 2, 2)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), model(image, None), atol=1e-5, rtol=1e-4)
    assert model.cam(image).shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="no class activation maps"):
        build_detector("small3d_tiny", num_classes=3).cam(image)


def test_mil_pool_values():
    logits = torch.tensor([[1.0, -1.0], [3.0, 0.0], [2.0, 5.0]])
    index = torch.tensor([0, 0, 1])
    torch.testing.assert_close(mil_pool(logits, index, num_clips=2, pooling="max"),
                               torch.tensor([[3.0, 0.0], [2.0, 5.0]]))
    torch.testing.assert_close(mil_pool(logits, index, num_clips=2, pooling="mean"),
                               torch.tensor([[2.0, -0.5], [2.0, 5.0]]))
    lse = mil_pool(logits, index, num_clips=2, pooling="lse", lse_r=5.0)
    want = (torch.logsumexp(5 * logits[:2], 0) - torch.log(torch.tensor(2.0))) / 5
    torch.testing.assert_close(lse[0], want)
    torch.testing.assert_close(lse[1], logits[2])
    with pytest.raises(ValueError, match="no proposals"):
        mil_pool(logits, index, num_clips=3, pooling="max")


@pytest.mark.parametrize("pooling", ["max", "lse"])
def test_weakly_supervised_guided_steps(pooling):
    """Clip labels only: proposals are pooled per clip; a clip without proposals is scored on
    the whole frame. Exact and FD guidance (union region: one row per clip)."""
    torch.manual_seed(0)
    model = build_detector("x3d_xs_tiny", num_classes=3, mil_pooling=pooling).train()
    proposals = torch.tensor([[0, 2.0, 3.0, 18.0, 25.0], [0, 12.0, 6.0, 30.0, 28.0]])  # none in clip 1
    mask = torch.zeros(2, 4, 32, 32)
    mask[0, :, 3:28, 2:30] = 1.0
    batch = {"clip": torch.randn(2, 3, 4, 32, 32), "rois": proposals, "labels": torch.tensor([1, 2]),
             "mask": mask}
    assert model(batch["clip"], proposals).shape == (2, 3)
    assert model.proposal_logits(batch["clip"], proposals).shape == (2, 3)
    for mode in ("exact", "fd"):
        model.detector.head.roi_align.double_backward = mode == "exact"
        model.zero_grad()
        losses, _ = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode))(
            model, batch, guidance_weight=0.5)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_mil_reports_a_bad_batch_index_clearly():
    model = build_detector("small3d_tiny", num_classes=2, mil_pooling="mean")
    with pytest.raises(DataError, match="batch indices"):
        model(torch.zeros(1, 3, 4, 32, 32), torch.tensor([[3, 1.0, 1.0, 8.0, 8.0]]))


@pytest.mark.parametrize("mode", ["exact", "fd"])
def test_weakly_supervised_per_source_rows_are_clips(mode):
    """With clip-level (MIL) outputs, per-source guidance takes row b against source_masks[b];
    with one source per clip equal to the union mask it is the union penalty exactly."""
    torch.manual_seed(0)
    model = build_detector("small3d_tiny", num_classes=3, mil_pooling="max").double().train()
    model.detector.head.roi_align.double_backward = mode == "exact"
    # Two boxes in clip 0, none in clip 1, one in clip 2: box rows do not line up with clips.
    proposals = torch.tensor([[0, 2.0, 3.0, 18.0, 25.0], [0, 12.0, 6.0, 30.0, 28.0],
                              [2, 4.0, 4.0, 20.0, 20.0]], dtype=torch.float64)
    mask = torch.zeros(3, 4, 32, 32, dtype=torch.float64)
    mask[0, :, 3:28, 2:30], mask[2, :, 4:20, 4:20] = 1.0, 1.0
    batch = {"clip": torch.randn(3, 3, 4, 32, 32, dtype=torch.float64), "rois": proposals,
             "labels": torch.tensor([1, 2, 0]), "mask": mask, "source_masks": mask.clone()}
    union = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode, norm="count"))(model, batch, guidance_weight=1.0)
    per_source = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode, norm="count", region="per_source"))(
        model, batch, guidance_weight=1.0)
    torch.testing.assert_close(per_source[1]["penalty"], union[1]["penalty"])
    assert torch.isfinite(per_source[0]["guidance"])
