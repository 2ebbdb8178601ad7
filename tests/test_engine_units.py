"""Engine pieces on their own: schedules, the global batch sampler, mixed precision, checkpoint files."""

from __future__ import annotations

import math
import os

import pytest
import torch

from stal.config import load_cfg
from stal.engine import checkpoint as ckpt
from stal.engine.distributed import DistContext, GlobalBatchSampler
from stal.engine.solver import lr_at
from stal.errors import ConfigError


def _lr(it, **kw):
    args = dict(iters_per_epoch=10, max_epoch=10, policy="cosine", base_lr=1.0, warmup_epochs=0.0,
                warmup_start_lr=0.0, cosine_end_lr=0.0, cosine_after_warmup=True)
    return lr_at(it, **{**args, **kw})


def test_lr_policies():
    assert _lr(0) == 1.0 and _lr(50) == pytest.approx(0.5) and _lr(100) == pytest.approx(0.0)
    assert _lr(100, cosine_end_lr=0.1) == pytest.approx(0.1)
    # Warm-up: linear from WARMUP_START_LR to the policy's rate at the end of warm-up.
    assert _lr(0, warmup_epochs=1.0, warmup_start_lr=0.1) == pytest.approx(0.1 + 0.9 * 1 / 10)
    assert _lr(9, warmup_epochs=1.0) == pytest.approx(1.0) and _lr(10, warmup_epochs=1.0) == pytest.approx(1.0)
    steps = dict(policy="steps_with_relative_lrs", steps=(0, 4, 8), lrs=(1.0, 0.1, 0.01))
    assert [_lr(it, **steps) for it in (0, 39, 40, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert _lr(5, warmup_epochs=1.0, **steps) == pytest.approx(0.6)
    assert _lr(37, policy="constant") == 1.0
    # PySlowFast's default: the cosine runs from iteration 0; warm-up ramps to its value at epoch 1.
    end_of_warmup = 0.5 * (1 + math.cos(math.pi * 10 / 100))
    assert _lr(9, warmup_epochs=1.0, cosine_after_warmup=False) == pytest.approx(end_of_warmup)
    assert _lr(50, warmup_epochs=1.0, cosine_after_warmup=False) == pytest.approx(0.5)
    assert _lr(50, warmup_epochs=1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 90)))


def test_steps_policy_needs_matching_steps_and_lrs():
    with pytest.raises(ConfigError, match="SOLVER.STEPS"):
        load_cfg(None, ["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 5]", "SOLVER.LRS", "[1.0]"])
    with pytest.raises(ConfigError, match="TRAIN.MIXED_PRECISION"):
        load_cfg(None, ["TRAIN.MIXED_PRECISION", "fp8"])
    load_cfg(None, ["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 5]",
                    "SOLVER.LRS", "[1.0, 0.1]"])


def _steps(world, accum, epoch=3, start=0):
    """Per optimizer step, the sorted clips of all ranks and micro-batches together."""
    parts = []
    for rank in range(world):
        s = GlobalBatchSampler(length=26, global_batch=8, accum_steps=accum, seed=5,
                               ctx=DistContext(rank=rank, world_size=world))
        s.set_epoch(epoch, start=start)
        batches = list(s)
        assert len(batches) == len(s) and all(len(b) == 8 // (world * accum) for b in batches)
        parts.append([sum(batches[i:i + accum], []) for i in range(0, len(batches), accum)])
    return [sorted(sum(step, [])) for step in zip(*parts)]


def test_global_batches_do_not_depend_on_processes_or_accumulation():
    ref = _steps(1, 1)
    assert len(ref) == 3 and len(set(sum(ref, []))) == 24  # 26 clips: the incomplete tail is dropped
    assert _steps(2, 1) == _steps(4, 1) == _steps(2, 2) == _steps(1, 4) == ref
    assert _steps(2, 2, start=1) == ref[1:]  # mid-epoch resume
    assert _steps(1, 1, epoch=4) != ref
    with pytest.raises(ConfigError, match="divisible"):
        GlobalBatchSampler(length=26, global_batch=8, accum_steps=3, seed=0, ctx=DistContext())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_on_cpu(tmp_path, precision):
    """One guided optimizer step under autocast: finite, and close to float32."""
    from stal.engine import builders
    from stal.engine.loop import build_trainer

    records = {}
    for mode in ("fp32", precision):
        cfg = load_cfg(os.path.join(os.path.dirname(__file__), "..", "configs", "instant.yaml"),
                       ["DEMO.ROOT", str(tmp_path / "data"), "TRAIN.MIXED_PRECISION", mode])
        torch.manual_seed(0)
        model = builders.build_model(cfg)
        trainer = build_trainer(cfg, DistContext(), model, model, iters_per_epoch=2)
        loader = builders.build_train_loader(cfg)
        records[mode] = trainer.run_step([next(iter(loader))])
    low, ref = records[precision], records["fp32"]
    assert low["nonfinite"] == 0 and math.isfinite(low["loss_guidance"])
    assert low["loss"] == pytest.approx(ref["loss"], rel=2e-2)
    assert low["off_target_energy"] == pytest.approx(ref["off_target_energy"], abs=5e-2)
    assert ("grad_scale" in low) == (precision == "fp16")


def test_input_grad_scale_leaves_the_objective_unchanged():
    """The fp16 path computes ds/dx of scale * s and divides back: in float32 nothing changes."""
    from stal.guidance.penalty import GuidanceSpec
    from stal.models import build_detector
    from stal.guidance.objective import Objective

    torch.manual_seed(0)
    model = build_detector("small3d_tiny", num_classes=3).double()
    batch = {"clip": torch.randn(2, 3, 4, 16, 16, dtype=torch.float64),
             "rois": torch.tensor([[0, 2, 2, 10, 12], [1, 4, 3, 14, 15]], dtype=torch.float64),
             "labels": torch.tensor([0, 2]), "mask": (torch.rand(2, 4, 16, 16) > 0.7).double()}
    grads = []
    for scale in (1.0, 2.0 ** 14):
        losses, stats = Objective(loss_func="softmax", guidance=GuidanceSpec())(
            model, batch, guidance_weight=0.5, input_grad_scale=scale)
        model.zero_grad()
        sum(losses.values()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_fp16_inner_gradient_is_scaled(monkeypatch):
    """Under fp16 autocast, part of a small input gradient ds/dx underflows to 0; the objective's
    input_grad_scale (the GradScaler's scale in training) keeps it, close to the fp32 gradient."""
    import stal.guidance.objective as objective_module
    from stal.guidance.penalty import GuidanceSpec
    from stal.models import build_detector

    torch.manual_seed(0)
    model = build_detector("small3d_tiny", num_classes=3)
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(1e-4)  # small scores, small input gradients (as late in training)
    batch = {"clip": torch.randn(2, 3, 4, 16, 16), "rois": torch.tensor([[0, 2, 2, 10, 12], [1, 4, 3, 14, 15.0]]),
             "labels": torch.tensor([0, 2]), "mask": (torch.rand(2, 4, 16, 16) > 0.7).float()}
    seen, real = [], objective_module.gradient_penalty
    monkeypatch.setattr(objective_module, "gradient_penalty",
                        lambda g, m, spec: seen.append(g.detach()) or real(g, m, spec=spec))
    objective = objective_module.Objective(loss_func="softmax", guidance=GuidanceSpec(score="logit"))
    for dtype, scale in ((None, 1.0), (torch.float16, 1.0), (torch.float16, 256.0)):
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            objective(model, batch, guidance_weight=0.0, input_grad_scale=scale)
    ref, unscaled, scaled = seen
    assert (ref == 0).float().mean() == 0 and (unscaled == 0).float().mean() > 0.05
    assert (scaled == 0).float().mean() < 0.01
    assert (scaled - ref).norm() < 0.5 * (unscaled - ref).norm()


def test_checkpoint_files(tmp_path):
    """Order (epoch ends before the next epoch's mid-epoch saves), pruning, weights_only loading."""
    names = [ckpt.checkpoint_name(epoch=0, iteration=5), ckpt.checkpoint_name(epoch=1),
             ckpt.checkpoint_name(epoch=1, iteration=12), ckpt.checkpoint_name(epoch=2)]
    for i, name in enumerate(reversed(names)):
        ckpt.save_checkpoint(str(tmp_path), {"model_state": {"w": torch.tensor(float(i))}}, name=name, keep=0)
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(str(tmp_path))] == names
    ckpt.save_checkpoint(str(tmp_path), {"model_state": {}}, name=ckpt.checkpoint_name(epoch=3), keep=2)
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(str(tmp_path))] == \
        [ckpt.checkpoint_name(epoch=2), ckpt.checkpoint_name(epoch=3)]
    (tmp_path / "other.pyth").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint .*other.pyth"):
        ckpt.read_checkpoint(str(tmp_path / "other.pyth"))
    from fractions import Fraction

    torch.save({"model_state": {}, "x": Fraction(1, 3)}, tmp_path / "pickled.pyth")  # not weights_only
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        ckpt.read_checkpoint(str(tmp_path / "pickled.pyth"))
