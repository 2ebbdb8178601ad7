"""Counterfactual guidance: the background-swapped rendering and the prediction-shift penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stal.guidance.counterfactual import paired_rois, prediction_shift


def test_prediction_shift_is_the_symmetric_kl():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    p, q = a.softmax(-1), b.softmax(-1)
    kl = lambda u, v: (u * (u / v).log()).sum(-1)  # noqa: E731
    torch.testing.assert_close(prediction_shift(a, b, loss_func="softmax"), 0.5 * (kl(p, q) + kl(q, p)))
    ps, qs = a.sigmoid(), b.sigmoid()
    bern = lambda u, v: (u * (u / v).log() + (1 - u) * ((1 - u) / (1 - v)).log()).sum(-1)  # noqa: E731
    torch.testing.assert_close(prediction_shift(a, b, loss_func="bce"), 0.5 * (bern(ps, qs) + bern(qs, ps)))
    assert torch.all(prediction_shift(a, a, loss_func="softmax") == 0)
    # Adding a constant to all logits changes no softmax prediction.
    assert prediction_shift(a, a + 3.0, loss_func="softmax").abs().max() < 1e-12


def test_paired_rois_point_at_the_second_half():
    rois = torch.tensor([[0, 1, 2, 3, 4], [1, 5, 6, 7, 8]], dtype=torch.float32)
    out = paired_rois(rois, batch_size=2)
    assert out[:, 0].tolist() == [0, 1, 2, 3] and torch.equal(out[2:, 1:], rois[:, 1:])
    assert paired_rois(None, batch_size=2) is None


def _instant(repo_root, *opts):
    from stal.config.load import load_cfg

    return load_cfg(f"{repo_root}/configs/instant.yaml", ["GUIDANCE.ENABLE", "True",
                                                          "GUIDANCE.MODE", "counterfactual", *opts])


def test_counterfactual_step_reaches_every_parameter(repo_root, tmp_path):
    from stal.engine.builders import build_model, build_objective, build_train_loader

    cfg = _instant(repo_root, "DEMO.ROOT", str(tmp_path))
    torch.manual_seed(0)
    batch = next(iter(build_train_loader(cfg)))
    model, objective = build_model(cfg), build_objective(cfg)
    losses, stats = objective(model, batch, guidance_weight=1.0)
    assert stats["penalty"] > 0 and torch.isfinite(losses["guidance"])
    params = list(model.parameters())
    # The penalty alone has a gradient (it pulls the two renderings' predictions together).
    g_pen = torch.autograd.grad(losses["guidance"], params, retain_graph=True, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in g_pen if g is not None) > 0
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def test_missing_counterfactual_clip_is_a_config_error(repo_root, tmp_path):
    from stal.engine.builders import build_model, build_objective
    from stal.errors import ConfigError

    cfg = _instant(repo_root, "DEMO.ROOT", str(tmp_path))
    model, objective = build_model(cfg), build_objective(cfg)
    batch = {"clip": torch.zeros(1, 3, 4, 32, 32), "rois": torch.tensor([[0, 2.0, 2.0, 20.0, 20.0]]),
             "labels": torch.tensor([1]), "mask": torch.zeros(1, 4, 32, 32)}
    with pytest.raises(ConfigError, match="clip_cf"):
        objective(model, batch, guidance_weight=1.0)


class _PerClipLinear(torch.nn.Module):
    """Logits = mean(clip) (B, 3) @ W (3, 3): one ROI per clip (rois None), hand-checkable losses."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0], [0.3, 0.1, 0.2]]))

    def forward(self, clip: torch.Tensor, rois) -> torch.Tensor:
        return clip.mean(dim=(2, 3, 4)) @ self.weight


def test_cf_task_loss_trains_on_both_renderings_and_lambda_0_is_augmentation_only():
    from stal.guidance.counterfactual import counterfactual_losses
    from stal.losses import per_roi_task_loss

    model = _PerClipLinear()
    clip, clip_cf = torch.ones(2, 3, 1, 2, 2), torch.full((2, 3, 1, 2, 2), -0.5)
    clip[1] *= 2.0
    batch = {"clip": clip, "clip_cf": clip_cf, "rois": None, "labels": torch.tensor([0, 2])}
    plain = {name: per_roi_task_loss(model(x, None), batch["labels"], loss_func="softmax").mean()
             for name, x in (("clip", clip), ("clip_cf", clip_cf))}
    default, _ = counterfactual_losses(model, batch, loss_func="softmax", guidance_weight=1.0)
    both, stats = counterfactual_losses(model, batch, loss_func="softmax", guidance_weight=0.0, task_on_both=True)
    torch.testing.assert_close(default["task"], plain["clip"])  # the re-rendering gets no task loss by default
    torch.testing.assert_close(both["task"], 0.5 * (plain["clip"] + plain["clip_cf"]))
    assert stats["penalty"] > 0  # still measured (the two renderings disagree) ...
    (both["task"] + both["guidance"]).backward()  # ... but with LAMBDA 0 only the task loss trains
    want = torch.autograd.grad(0.5 * (plain["clip"] + plain["clip_cf"]), model.weight)[0]
    torch.testing.assert_close(model.weight.grad, want)
