"""Every registered model (tiny variant) through shapes, a plain step and both guided steps."""

from __future__ import annotations


import pytest
import torch

from stal.guidance.penalty import GuidanceSpec
from stal.models import DEFAULT_INPUTS, MODEL_REGISTRY, build_detector
from stal.guidance.objective import Objective

TINY = sorted(n for n in MODEL_REGISTRY if n.endswith("_tiny"))
# X3D-S/M are the X3D-XS network with another default input: x3d_xs_tiny covers them.
COVERED_BY = {"x3d_s": "x3d_xs_tiny", "x3d_m": "x3d_xs_tiny"}


def test_every_model_has_a_tiny_variant_and_a_default_input():
    for name in MODEL_REGISTRY:
        if not name.endswith("_tiny"):
            assert COVERED_BY.get(name, f"{name}_tiny") in MODEL_REGISTRY, name
        assert name in DEFAULT_INPUTS, name


def _batch(frames: int, size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    rois = torch.tensor([[0, 2.0, 3.0, 18.0, 25.0], [0, 12.0, 6.0, 30.0, 28.0], [1, 5.0, 5.0, 21.0, 27.0]])
    rois[:, 1:] *= size / 32
    mask = torch.zeros(2, frames, size, size)
    for b, x1, y1, x2, y2 in rois.long().tolist():
        mask[b, :, y1:y2, x1:x2] = 1.0
    return {"clip": torch.randn(2, 3, frames, size, size, generator=g), "rois": rois,
            "labels": torch.tensor([1, 2, 0]), "mask": mask}


def _step(model, objective, batch, *, double_backward: bool) -> dict:
    """One objective + backward with the chosen RoIAlign kernel; returns the finite losses."""
    model.head.roi_align.double_backward = double_backward
    model.zero_grad(set_to_none=True)
    losses, _ = objective(model, batch, guidance_weight=0.5)
    for name, value in losses.items():
        assert torch.isfinite(value), name
    sum(losses.values()).backward()
    return losses


def _assert_grads_reach_every_parameter(model, what: str):
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{what}: no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"{what}: non-finite gradient for {name}"


@pytest.mark.parametrize("name", TINY)
def test_registered_model(name):
    torch.manual_seed(0)
    frames, size = DEFAULT_INPUTS[name]
    model = build_detector(name, num_classes=3).train()
    batch = _batch(frames, size)
    feats = model.backbone(batch["clip"])
    stride = model.backbone.spatial_stride
    pathways = feats if isinstance(feats, list) else [feats]
    assert sum(f.shape[1] for f in pathways) == model.backbone.out_channels
    assert all(f.shape[-2:] == (size // stride, size // stride) for f in pathways)
    assert model(batch["clip"], batch["rois"]).shape == (3, 3)
    assert model(batch["clip"], None).shape == (2, 3)  # one row per clip

    _step(model, Objective(loss_func="softmax", guidance=None), batch, double_backward=False)
    _assert_grads_reach_every_parameter(model, "plain")
    for mode in ("exact", "fd"):
        objective = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode, tolerance=1))
        losses = _step(model, objective, batch, double_backward=mode == "exact")
        assert float(losses["guidance"].detach()) > 0, mode
        _assert_grads_reach_every_parameter(model, mode)
