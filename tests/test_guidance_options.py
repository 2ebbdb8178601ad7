"""Guidance options of issue 18 (part 1), each on a tiny model whose answer is known by hand:
scores (logit, logsumprob), NORM share, masks merged by class, the union-over-mixing config
error, BatchNorm in the guided pass, LAMBDA_RULE balance_init (with resume) and the held-out
diagnostics with the logit score. Every test fails on the code before these options (the
option is refused there, or the old behaviour gives the other answer, which is asserted too).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from stal.cli import train_net
from stal.config.load import load_cfg
from stal.data.batch import collate_train
from stal.data.images import CutMixImageDataset, SourceImage
from stal.errors import ConfigError
from stal.guidance.batchnorm import InnerBatchNorm
from stal.guidance.cap import global_norm
from stal.guidance.gradients import gradient_rows
from stal.guidance.objective import Objective
from stal.guidance.penalty import GuidanceSpec, gradient_penalty, merge_same_class, per_roi_score


def _input_grad(logits_fn, x, labels, score, loss_func="softmax"):
    x = x.clone().requires_grad_(True)
    s = per_roi_score(logits_fn(x), labels, score=score, loss_func=loss_func).sum()
    (g,) = torch.autograd.grad(s, x)
    return g


# --- scores -------------------------------------------------------------------------------

def test_saturating_scores_vanish_logit_and_logsumprob_do_not():
    """Linear logits z = W x + b with b = (beta, 0, 0), label 0: as beta grows p_0 -> 1.
    By hand: d(-CE)/dx = W_0 - sum_k p_k W_k -> 0; d z_0/dx = W_0 whatever p;
    d sum_k log p_k / dx = sum_k W_k - K sum_j p_j W_j -> W_1 + W_2 - 2 W_0."""
    gen = torch.Generator().manual_seed(0)
    W, x, labels = torch.randn(3, 10, generator=gen, dtype=torch.float64), torch.randn(1, 10, generator=gen,
                                                                                      dtype=torch.float64), torch.tensor([0])
    rms = {}
    for beta in (0.0, 40.0):
        b = torch.tensor([beta, 0.0, 0.0], dtype=torch.float64)
        for score in ("task_loss", "logprob", "logit", "logsumprob"):
            g = _input_grad(lambda v: v @ W.T + b, x, labels, score)
            rms[score, beta] = float(g.pow(2).mean().sqrt())
            if score == "logit":
                torch.testing.assert_close(g[0], W[0])
            if score == "logsumprob" and beta > 0:
                torch.testing.assert_close(g[0], W[1] + W[2] - 2 * W[0])
    for score in ("task_loss", "logprob"):  # vanish: (1 - p) ~ exp(-40)
        assert rms[score, 40.0] < 1e-12 * rms[score, 0.0]
    assert rms["logit", 40.0] == pytest.approx(rms["logit", 0.0])
    assert rms["logsumprob", 40.0] > 0.3 * rms["logsumprob", 0.0]


class TwoRegionIdeal(nn.Module):
    """Ideal two-source model on a 1 x 1 x 1 x 4 clip: z_0 = a * (x_0 + x_1) reads only region A
    (pixels 0, 1), z_1 = a * (x_2 + x_3) only region B, z_2 = 0. One logits row per ROI, of its clip."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, clip, rois):
        flat = clip.flatten(1)
        z = torch.stack([flat[:, :2].sum(1), flat[:, 2:].sum(1), torch.zeros_like(flat[:, 0])], 1) * self.a
        return z[rois[:, 0].long()]


def _two_region_batch():
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64).view(2, 1, 1, 4)
    return {"clip": torch.zeros(1, 1, 1, 1, 4, dtype=torch.float64),
            "rois": torch.tensor([[0, 0, 0, 4, 1], [0, 0, 0, 4, 1]], dtype=torch.float64),
            "labels": torch.tensor([0, 1]), "mask": torch.ones(1, 1, 1, 4, dtype=torch.float64),
            "source_masks": masks}


@pytest.mark.parametrize("score, expected", [("task_loss", 0.2), ("logprob", 0.2), ("logit", 0.0)])
def test_ideal_two_region_model_pays_only_with_softmax_scores(score, expected):
    """x = 0: p = (1/3, 1/3, 1/3). By hand, row A's gradient of log p_0 is (2/3) on A and -p_1 =
    -(1/3) on B (the other source's legitimate evidence): off-target share (2/9) / (10/9) = 0.2,
    the same for row B. The logit's gradient lies on A only: R = 0."""
    obj = Objective(loss_func="softmax", guidance=GuidanceSpec(region="per_source", score=score))
    _, stats = obj(TwoRegionIdeal(), _two_region_batch(), guidance_weight=1.0)
    assert stats["penalty"] == pytest.approx(expected, abs=1e-12)


# --- NORM share ---------------------------------------------------------------------------

def _rand_rows(seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(2, 3, 2, 4, 4, generator=gen, dtype=dtype)
    m = (torch.rand(2, 2, 4, 4, generator=gen) > 0.6).to(dtype)
    return g, m


@pytest.mark.parametrize("scale", [1.0, 1e-5])
@pytest.mark.parametrize("p, power", [("l2", 2), ("l1", 1)])
def test_share_has_no_push_along_the_gradients_own_scale(scale, p, power):
    """d/da R(a g) at a = 1: p R for the detached ratio at every scale (the push to shrink g),
    0 for the share; both have the same value."""
    g, m = _rand_rows()
    g = g * scale
    slopes, values = {}, {}
    for norm in ("ratio", "share"):
        a = torch.ones((), dtype=torch.float64, requires_grad=True)
        r, _ = gradient_penalty(a * g, m, spec=GuidanceSpec(norm=norm, p=p))
        (slopes[norm],) = torch.autograd.grad(r, a)
        values[norm] = float(r.detach())
    assert values["share"] == pytest.approx(values["ratio"], rel=1e-12)
    assert float(slopes["ratio"]) == pytest.approx(power * values["ratio"], rel=1e-9)
    assert abs(float(slopes["share"])) < 1e-12


@pytest.mark.parametrize("penalty", ["energy", "colour_shift"])
def test_share_backward_is_finite_when_the_gradient_underflows(penalty):
    """float32 rows of size 1e-30: ||g||^2 = 1e-60 underflows to 0, so a plain E / ||g||^2 is
    0 / 0. The guarded share keeps the value of the unit-scale row and the exact 1 / scale
    backward; a zero row (and a subnormal one, 1e-40) gives 0 and a zero, finite gradient."""
    g1, m = _rand_rows(dtype=torch.float32)
    spec = GuidanceSpec(norm="share", penalty=penalty)
    assert float((g1 * 1e-30).pow(2).sum()) == 0.0  # the underflow the guard is for
    ref, grad_ref = None, None
    for scale in (1.0, 1e-30, 1e-40, 0.0):
        g = (g1 * scale).requires_grad_(True)
        r, _ = gradient_penalty(g, m, spec=spec)
        (dg,) = torch.autograd.grad(r, g)
        assert torch.isfinite(r) and torch.isfinite(dg).all()
        if scale == 1.0:
            ref, grad_ref = float(r.detach()), dg
            assert ref > 1e-3
        elif scale == 1e-30:
            assert float(r.detach()) == pytest.approx(ref, rel=1e-5)
            torch.testing.assert_close(dg * 1e-30, grad_ref, rtol=1e-4, atol=1e-9)
        else:
            assert float(r.detach()) == 0.0 and float(dg.abs().max()) == 0.0


class SmoothNet(nn.Module):
    """Conv3d -> SiLU -> mean over all voxels -> linear: one logits row per clip (rois None)."""

    def __init__(self, *, norm: nn.Module | None = None, channels: int = 3, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(channels, 4, kernel, padding=kernel // 2)
        self.norm = norm if norm is not None else nn.Identity()
        self.fc = nn.Linear(4, 3)

    def forward(self, clip, rois):
        return self.fc(torch.nn.functional.silu(self.norm(self.conv(clip))).mean((2, 3, 4)))


def _param_grad(model, entry):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(entry, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])


def test_share_trains_exact_and_fd_alike():
    """The share's parameter gradient through the whole objective: FD matches exact."""
    torch.manual_seed(0)
    model = SmoothNet().double()
    g, m = _rand_rows()
    batch = {"clip": torch.randn(2, 3, 2, 4, 4, dtype=torch.float64), "rois": None, "labels": torch.tensor([0, 2]),
             "mask": m}
    grads = {}
    for mode in ("exact", "fd"):
        obj = Objective(loss_func="softmax", guidance=GuidanceSpec(norm="share", mode=mode, score="logit",
                                                                   fd_step=1e-5))
        losses, _ = obj(model, batch, guidance_weight=1.0)
        grads[mode] = _param_grad(model, losses["guidance"])
    cos = torch.nn.functional.cosine_similarity(grads["exact"], grads["fd"], dim=0)
    assert float(cos) > 0.9999


# --- masks merged by class ----------------------------------------------------------------

class OneClassSource:
    """Random 8 x 8 images, every one of class ``label`` (2 classes)."""

    num_classes = 2

    def __init__(self, label=0):
        self.label = label

    def draw(self, rng):
        return SourceImage(image=rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), label=self.label)


class ChannelEvidence(nn.Module):
    """Ideal classifier: z_c = a * sum of channel c over the whole image (class c's evidence is
    wherever channel c is), one row per ROI of its clip."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones(()))

    def forward(self, clip, rois):
        return (clip[:, :2].sum((2, 3, 4)) * self.a)[rois[:, 0].long()]


def _cutmix_batch(label=0):
    ds = CutMixImageDataset(source=OneClassSource(label), length=4, seed=1, mix_prob=1.0, area_min=0.2,
                            area_max=0.5, provenance="region", counterfactual=False, mean=[0.5] * 3, std=[0.25] * 3)
    return collate_train([ds[i] for i in range(4)])


@pytest.mark.parametrize("merge, expected", [(False, 0.5), (True, 0.0)])
def test_same_class_cutmix_pair_floor_removed_by_merging(merge, expected):
    """Both CutMix sources of class 0: the ideal model's gradient of z_0 is uniform on channel 0, so
    row k's off-target share is 1 - lam_k and the mean over the pair is exactly 1/2 whatever the
    areas (and the model). Merged by class, each row's target is the whole image: R = 0."""
    obj = Objective(loss_func="softmax", guidance=GuidanceSpec(region="per_source", score="logit",
                                                               merge_same_class=merge))
    _, stats = obj(ChannelEvidence(), _cutmix_batch(), guidance_weight=1.0)
    assert stats["penalty"] == pytest.approx(expected, abs=1e-6)


def test_merge_same_class_keeps_other_labels_and_other_clips_apart():
    masks = torch.eye(4).view(4, 1, 1, 4)
    merged = merge_same_class(masks, torch.tensor([1, 1, 2, 1]), torch.tensor([0, 0, 0, 1]))
    assert merged.view(4, 4).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    soft = torch.tensor([[0.6, 0.0], [0.0, 1.4], [1.2, 0.0]])  # CutMix rows 2 lam onehot(y)
    merged = merge_same_class(masks[:3], soft, torch.tensor([0, 0, 0]))
    assert merged.view(3, 4).tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0]]


# --- REGION union over a mixing synthesizer ------------------------------------------------

def test_union_of_cutmix_regions_is_everything():
    """Why the config error: the union mask of region provenance is all ones, so R = 0 for any g."""
    batch = _cutmix_batch()
    assert bool((batch["mask"] == 1).all())
    g = torch.randn(4, 3, 1, 8, 8)
    assert float(gradient_penalty(g, batch["mask"], spec=GuidanceSpec())[0]) == 0.0


@pytest.mark.parametrize("opts, refused", [
    (["TRAIN.DATASET", "image_demo", "TEST.DATASET", "image_demo"], True),
    (["TRAIN.DATASET", "image_demo", "TEST.DATASET", "image_demo", "GUIDANCE.REGION", "per_source"], False),
    (["TRAIN.DATASET", "image_demo", "TEST.DATASET", "image_demo", "IMAGE.PROVENANCE", "object"], False),
    (["TRAIN.DATASET", "synthesis", "SYNTHESIS.MIXER", "batchmix"], True),
    (["TRAIN.DATASET", "synthesis", "SYNTHESIS.MIXER", "cutmix"], True),
    (["TRAIN.DATASET", "synthesis", "SYNTHESIS.MIXER", "batchmix", "MODEL.MIL_POOLING", "max"], False),
    (["TRAIN.DATASET", "synthesis", "SYNTHESIS.MIXER", "none"], False),
])
def test_union_region_with_mixing_provenance_is_a_config_error(opts, refused):
    args = ["GUIDANCE.ENABLE", "True", "GUIDANCE.REGION", "union", *opts]
    if not refused:
        load_cfg(None, args)
        return
    with pytest.raises(ConfigError) as exc:
        load_cfg(None, args)
    msg = str(exc.value)
    assert "\n" not in msg and "GUIDANCE.REGION union" in msg and "per_source" in msg
    assert ("IMAGE.PROVENANCE region" in msg) or ("SYNTHESIS.MIXER" in msg)


# --- BatchNorm in the guided pass ---------------------------------------------------------

class PointwiseBN(nn.Module):
    """1x1x1 conv -> BatchNorm3d -> SiLU -> position-weighted sum -> linear, one row per clip.
    Pointwise before the BatchNorm, so permuting one clip's voxels keeps the batch statistics."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.conv, self.bn, self.fc = nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Linear(4, 3)
        self.register_buffer("where", torch.rand(1, 1, 2, 4, 4, generator=gen))

    def forward(self, clip, rois):
        return self.fc((torch.nn.functional.silu(self.bn(self.conv(clip))) * self.where).sum((2, 3, 4)))


def _rows(model, clip, mode):
    x = clip.clone().requires_grad_(True)
    bn = InnerBatchNorm(model, mode=mode)
    with bn.recording():
        logits = model(x, None)
    scores = per_roi_score(logits, torch.tensor([0, 1, 2]), score="logit", loss_func="softmax")
    return gradient_rows(scores, x, batch_index=torch.arange(3), region="union", create_graph=False)


def _bn_model():
    torch.manual_seed(0)
    model = PointwiseBN().double()
    model.train()
    with torch.no_grad():  # warm running statistics, so "eval" is a meaningful function
        model(torch.randn(8, 3, 2, 4, 4, dtype=torch.float64), None)
    return model


@pytest.mark.parametrize("mode, coupled", [("train", True), ("batch_constant", False)])
def test_guided_batchnorm_row_gradient_does_not_see_other_rows(mode, coupled):
    """Clip 2's voxels flipped: the batch's statistics are the same, only its arrangement differs.
    In train mode clip 0's row carries d s_2 / d x_0 (through the batch mean / variance), which
    depends on that arrangement; with the statistics as constants it is d s_0 / d x_0 alone."""
    model = _bn_model()
    clip = torch.randn(3, 3, 2, 4, 4, dtype=torch.float64)
    other = clip.clone()
    other[2] = clip[2].flip(-1, -2)
    a, b = _rows(model, clip, mode), _rows(model, other, mode)
    diff = float((a[0] - b[0]).abs().max() / a[0].abs().max())
    assert (diff > 1e-3) if coupled else (diff < 1e-12)


def test_eval_batchnorm_row_gradient_is_independent_of_any_other_row():
    model = _bn_model()
    clip = torch.randn(3, 3, 2, 4, 4, dtype=torch.float64)
    other = clip.clone()
    other[1:] = torch.randn(2, 3, 2, 4, 4, dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(_rows(model, clip, "eval")[0], _rows(model, other, "eval")[0], rtol=0, atol=0)
    assert float((_rows(model, clip, "train")[0] - _rows(model, other, "train")[0]).abs().max()) > 1e-3


def test_objective_guided_batchnorm_keeps_task_loss_and_running_stats():
    """Through the objective: the task loss is the train-mode one, running statistics move once,
    the penalty is the one of the constant-statistics rows, and FD (replaying the recorded
    statistics) matches exact."""
    clip, mask = torch.randn(3, 3, 2, 4, 4, dtype=torch.float64), (torch.rand(3, 2, 4, 4) > 0.5).double()
    batch = {"clip": clip, "rois": None, "labels": torch.tensor([0, 1, 2]), "mask": mask}
    out = {}
    for mode, inner in (("exact", "train"), ("exact", "batch_constant"), ("fd", "batch_constant")):
        model = _bn_model()
        tracked = int(model.bn.num_batches_tracked)
        obj = Objective(loss_func="softmax", guidance=GuidanceSpec(score="logit", mode=mode, inner_bn=inner,
                                                                   fd_step=1e-5))
        losses, stats = obj(model, batch, guidance_weight=1.0)
        assert int(model.bn.num_batches_tracked) == tracked + 1
        out[mode, inner] = float(losses["task"].detach()), stats["penalty"], _param_grad(model, losses["guidance"])
    assert out["exact", "batch_constant"][0] == out["exact", "train"][0]
    rows = _rows(_bn_model(), clip, "batch_constant")
    expected = float(gradient_penalty(rows, mask, spec=GuidanceSpec())[0])
    assert out["exact", "batch_constant"][1] == pytest.approx(expected, rel=1e-12)
    assert abs(out["exact", "train"][1] - expected) > 1e-6
    cos = torch.nn.functional.cosine_similarity(out["exact", "batch_constant"][2], out["fd", "batch_constant"][2], dim=0)
    assert float(cos) > 0.9999


# --- LAMBDA_RULE balance_init -------------------------------------------------------------

def _smooth_batch(seed):
    gen = torch.Generator().manual_seed(seed)
    return {"clip": torch.randn(2, 3, 2, 4, 4, generator=gen, dtype=torch.float64), "rois": None,
            "labels": torch.tensor([0, 2]), "mask": (torch.rand(2, 2, 4, 4, generator=gen) > 0.5).double()}


@pytest.mark.parametrize("mode", ["exact", "fd"])
def test_balance_init_equalizes_gradient_norms_on_the_first_batch_then_stays(mode):
    torch.manual_seed(0)
    model = SmoothNet().double()
    obj = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode, lambda_rule="balance_init"))
    losses, stats = obj(model, _smooth_batch(0), guidance_weight=1.0)
    lam = stats["guidance_lambda"]
    assert lam == obj.balanced_lambda and lam > 0
    n_pen, n_task = (float(global_norm([_param_grad(model, losses[k])])) for k in ("guidance", "task"))
    assert n_pen == pytest.approx(n_task, rel=1e-9)
    losses, stats = obj(model, _smooth_batch(1), guidance_weight=0.5)  # another batch, half the ramp
    assert stats["guidance_lambda"] == lam
    fixed = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode))
    ref, _ = fixed(model, _smooth_batch(1), guidance_weight=0.5 * lam)
    assert float(losses["guidance"].detach()) == pytest.approx(float(ref["guidance"].detach()), rel=1e-12)
    restored = Objective(loss_func="softmax", guidance=GuidanceSpec(mode=mode, lambda_rule="balance_init"))
    restored.load_state_dict(obj.state_dict())
    assert restored(model, _smooth_batch(2), guidance_weight=1.0)[1]["guidance_lambda"] == lam


def test_balance_init_with_counterfactual_is_refused():
    with pytest.raises(ConfigError, match="LAMBDA_RULE balance_init"):
        load_cfg(None, ["GUIDANCE.MODE", "counterfactual", "GUIDANCE.LAMBDA_RULE", "balance_init"])


@pytest.fixture(scope="module")
def instant_data(tmp_path_factory):
    return str(tmp_path_factory.mktemp("instant_data_options"))


def _train(repo_root, out, data_root, *extra):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_net.main(["--cfg", os.path.join(repo_root, "configs", "instant.yaml"), "OUTPUT_DIR", str(out),
                               "DEMO.ROOT", data_root, "TEST.ENABLE", "False", "GUIDANCE.LAMBDA_RULE",
                               "balance_init", *extra])
    finally:
        torch.set_num_threads(before)


def test_balance_init_lambda_is_logged_checkpointed_and_kept_on_resume(repo_root, tmp_path, instant_data):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _train(repo_root, full, instant_data) == 0
    assert _train(repo_root, part, instant_data, "TRAIN.MAX_ITERS", "2") == 0
    from stal.engine import checkpoint as ckpt
    state = ckpt.read_checkpoint(ckpt.list_checkpoints(str(part / "checkpoints"))[-1])
    assert _train(repo_root, part, instant_data) == 0  # resumes at iteration 2, on other batches
    logs = [[json.loads(line) for line in open(out / "log.jsonl")] for out in (full, part)]
    lam = logs[0][0]["guidance_lambda"]
    # The log holds float32 (the trainer's all-reduce), the checkpoint the float itself.
    assert state["objective_state"]["balanced_lambda"] == pytest.approx(lam, rel=1e-7)
    assert [r["iter"] for r in logs[1]] == [0, 1, 2, 3]
    for a, b in zip(*logs):
        assert a["guidance_lambda"] == b["guidance_lambda"] == lam
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["loss_guidance"] == pytest.approx(lam * a["guidance_weight"] * a["penalty"], rel=1e-5)


# --- diagnostics --------------------------------------------------------------------------

def test_held_out_diagnostics_use_unbiased_clips_and_the_logit(repo_root, instant_data):
    from stal.data import build as data_build
    from stal.engine import builders, evaluate
    cfg = load_cfg(os.path.join(repo_root, "configs", "instant.yaml"), ["DEMO.ROOT", instant_data])
    torch.manual_seed(0)
    model = builders.build_model(cfg)
    out = evaluate._held_out_synthetic(cfg, model, None)
    held_out = data_build.build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.TEST.NUM_ENERGY_CLIPS,
                                                  scene_bias=0.0)
    held_out.set_epoch(evaluate.HELD_OUT_EPOCH)
    ref = evaluate.evaluate_synthetic(model, held_out, batch_size=cfg.TEST.BATCH_SIZE, loss_func="softmax",
                                      score="logit")
    assert out["off_target_energy_unbiased_logit"] == ref["off_target_energy"]
    assert out["input_grad_rms_unbiased_logit"] == ref["input_grad_rms"]
    assert math.isfinite(out["off_target_energy"]) and out["input_grad_rms"] != ref["input_grad_rms"]
