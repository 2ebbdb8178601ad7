import pytest
import torch

from stal.guidance.penalty import GuidanceSpec, guidance_score, input_gradient_penalty
from stal.guidance.objective import Objective


class TinySmooth(torch.nn.Module):
    """Conv3d + SiLU + mean over space-time + linear: smooth, so second derivatives exist."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 3, 3, padding=1)
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, clip, rois=None):
        return self.fc(torch.nn.functional.silu(self.conv(clip)).mean((2, 3, 4)))


def _reference_penalty(model, clip, mask, labels):
    """Penalty written out by hand: per-clip off-target energy over total energy (detached)."""
    x = clip.detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), labels, reduction="sum")
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    total = []
    for b in range(x.shape[0]):
        off = (1 - mask[b])[None] * g[b]
        total.append((off ** 2).sum() / (g[b] ** 2).sum().detach())
    return sum(total) / len(total)


def test_penalty_matches_hand_written_reference():
    torch.manual_seed(0)
    model = TinySmooth().double()
    clip = torch.randn(3, 2, 4, 6, 6, dtype=torch.float64)
    mask = (torch.rand(3, 4, 6, 6) > 0.6).double()
    labels = torch.tensor([0, 2, 3])

    x = clip.clone().requires_grad_(True)
    score = guidance_score(model(x), labels, score="task_loss", loss_func="softmax")
    ours, fraction = input_gradient_penalty(score, x, mask, spec=GuidanceSpec(norm="ratio"))
    grads = torch.autograd.grad(ours, list(model.parameters()))
    ref = _reference_penalty(model, clip, mask, labels)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(fraction.mean(), ref.detach())
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("norm", ["none", "count"])
@pytest.mark.parametrize("p", ["l2", "l1"])
def test_penalty_parameter_gradient_matches_finite_differences(norm, p):
    torch.manual_seed(1)
    model = TinySmooth().double()
    clip = torch.randn(2, 2, 3, 5, 5, dtype=torch.float64)
    mask = (torch.rand(2, 3, 5, 5) > 0.5).double()
    labels = torch.tensor([1, 3])
    weight = model.fc.weight

    def penalty_of(w):
        model.fc.weight = torch.nn.Parameter(w) if not isinstance(w, torch.nn.Parameter) else w
        x = clip.clone().requires_grad_(True)
        logits = torch.nn.functional.linear(
            torch.nn.functional.silu(model.conv(x)).mean((2, 3, 4)), w, model.fc.bias)
        s = guidance_score(logits, labels, score="logprob", loss_func="softmax")
        return input_gradient_penalty(s, x, mask, spec=GuidanceSpec(norm=norm, p=p))[0]

    w = weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(penalty_of, (w,), eps=1e-6, atol=1e-5)


def test_linear_model_penalty_closed_form():
    # s = sum_i w_i x_i  ->  g = w;  R = ||(1-m) w||^2 / (#off voxels * C);  dR/dw = 2 (1-m)^2 w / N.
    w = torch.randn(1, 2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    mask[0, :, 1, 1] = 1.0
    pen, _ = input_gradient_penalty((w * x).sum(), x, mask, spec=GuidanceSpec(norm="count"))
    (grad,) = torch.autograd.grad(pen, w)
    n_off = (1 - mask).sum() * 2
    off = (1 - mask)[:, None]
    torch.testing.assert_close(pen, ((off * w) ** 2).sum() / n_off)
    torch.testing.assert_close(grad, 2 * off ** 2 * w / n_off)


def test_objective_adds_guidance_as_one_loss_entry():
    torch.manual_seed(0)
    model = TinySmooth()
    batch = {"clip": torch.randn(2, 2, 3, 5, 5), "rois": None, "labels": torch.tensor([0, 1]),
             "mask": torch.zeros(2, 3, 5, 5)}
    plain, _ = Objective(loss_func="softmax", guidance=None)(model, batch, guidance_weight=1.0)
    guided, stats = Objective(loss_func="softmax", guidance=GuidanceSpec())(model, batch, guidance_weight=0.5)
    assert set(plain) == {"task"} and set(guided) == {"task", "guidance"}
    torch.testing.assert_close(plain["task"], guided["task"])
    # An empty target mask puts all gradient energy off target: ratio penalty == 1.
    assert stats["off_target_energy"] == pytest.approx(1.0)
    assert float(guided["guidance"].detach()) == pytest.approx(0.5)


def test_energy_fraction_is_scale_free_for_tiny_gradients():
    # A model can shrink its input gradient below any fixed epsilon: the fraction must not
    # then read as 0 (guided demo runs reached 1e-10 .. 1e-12 rms).
    from stal.guidance.attribution import energy_fraction

    g = torch.randn(2, 3, 2, 4, 4)
    mask = (torch.rand(2, 2, 4, 4) > 0.5).float()
    big = energy_fraction(g, mask)
    torch.testing.assert_close(energy_fraction(g * 1e-9, mask), big, rtol=1e-5, atol=0)
    assert energy_fraction(torch.zeros_like(g), mask).eq(0).all()
