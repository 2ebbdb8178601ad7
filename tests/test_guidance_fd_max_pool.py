"""FD guidance through max pooling: the frozen kink pattern must cover max_pool too."""

import pytest
import torch

from stal.guidance.finite_difference import KinkPattern
from stal.guidance.penalty import GuidanceSpec
from stal.models import build_detector
from stal.guidance.objective import Objective


def _guidance_grad(model, batch, spec):
    losses, _ = Objective(loss_func="softmax", guidance=spec)(model, batch, guidance_weight=1.0)
    grads = torch.autograd.grad(losses["guidance"], list(model.parameters()), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(model.parameters(), grads)])


# vgg16_gap: five max-pool layers, no BatchNorm; resnet50: a max-pool stem and BatchNorm with
# batch statistics over 2 images, curved enough to want a smaller step (see finite_difference).
@pytest.mark.parametrize("name,step", [("vgg16_gap_tiny", 1e-3), ("resnet50_tiny", 1e-5)])
def test_fd_matches_exact_through_max_pooling(name, step):
    torch.manual_seed(0)
    model = build_detector(name, num_classes=4, double_backward=True).train()
    batch = {"clip": torch.randn(2, 3, 1, 32, 32), "labels": torch.tensor([1, 2]),
             "rois": torch.tensor([[0, 2.0, 2.0, 20.0, 20.0], [1, 5.0, 5.0, 30.0, 30.0]]),
             "mask": torch.zeros(2, 1, 32, 32)}
    batch["mask"][:, :, 4:20, 4:20] = 1
    exact = _guidance_grad(model, batch, GuidanceSpec(norm="count"))
    cos = {}
    for freeze in (False, True):
        fd = _guidance_grad(model, batch, GuidanceSpec(norm="count", mode="fd", fd_step=step, fd_freeze_kinks=freeze))
        cos[freeze] = float(fd @ exact / (fd.norm() * exact.norm()))
    assert cos[True] >= 0.999 and cos[False] < 0.5, cos


def test_replayed_max_pool_gathers_the_recorded_argmax():
    x = torch.randn(2, 3, 4, 6, 6, dtype=torch.float64)
    pattern = KinkPattern()
    with pattern.recording():
        first = torch.nn.functional.max_pool3d(x, 2)
    moved = x + 0.5 * torch.randn_like(x)
    with pattern.replaying():
        replayed = torch.nn.functional.max_pool3d(moved, 2)
    _, idx = torch.nn.functional.max_pool3d(x, 2, return_indices=True)
    torch.testing.assert_close(replayed, moved.flatten(-3).gather(-1, idx.flatten(-3)).view(idx.shape))
    torch.testing.assert_close(first, torch.nn.functional.max_pool3d(x, 2))
    with pytest.raises(RuntimeError, match="max-pool"), pattern.replaying():
        torch.nn.functional.max_pool3d(torch.randn(1, 3, 4, 6, 6), 2)
