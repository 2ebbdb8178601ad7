"""The solver: optimizer, learning-rate schedule, guidance-weight schedule and mixed precision.

Schedules are functions of the global optimizer step (0-based), so a resumed run computes the
same learning rate and guidance weight as an uninterrupted one.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import torch
from fvcore.common.config import CfgNode


def lr_at(iteration: int, *, iters_per_epoch: int, max_epoch: int, policy: str, base_lr: float,
          warmup_epochs: float, warmup_start_lr: float, cosine_end_lr: float, cosine_after_warmup: bool,
          steps: Sequence[float] = (), lrs: Sequence[float] = ()) -> float:
    """Learning rate of optimizer step ``iteration`` (0-based), PySlowFast's policies.

    policy: "constant"; "cosine" from ``base_lr`` to ``cosine_end_lr`` at the last step, over the
    whole schedule (PySlowFast's default) or, with ``cosine_after_warmup``, starting at the end of
    warm-up (PySlowFast's ``COSINE_AFTER_WARMUP True``); "steps_with_relative_lrs": ``base_lr * lrs[i]`` from epoch ``steps[i]``
    on (``steps[0]`` = 0). Warm-up: linear from ``warmup_start_lr`` to the policy's rate at
    the end of warm-up; step i counts as i + 1 steps done (the first step does not waste a
    zero rate).
    """
    total, warmup = max_epoch * iters_per_epoch, round(warmup_epochs * iters_per_epoch)

    def policy_lr(it: int) -> float:
        if policy == "constant":
            return base_lr
        if policy == "steps_with_relative_lrs":
            epoch = it / iters_per_epoch
            return base_lr * lrs[max(i for i, s in enumerate(steps) if s <= epoch)]
        start = warmup if cosine_after_warmup else 0
        progress = min(1.0, (it - start) / max(1, total - start))
        return cosine_end_lr + (base_lr - cosine_end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    if iteration < warmup:
        end = policy_lr(warmup)
        return warmup_start_lr + (end - warmup_start_lr) * (iteration + 1) / warmup
    return policy_lr(iteration)


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the trainable parameters (SOLVER.*)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.SOLVER.OPTIMIZING_METHOD == "sgd":
        return torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                               weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    return torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def build_lr_schedule(cfg: CfgNode, *, iters_per_epoch: int) -> Callable[[int], float]:
    """iteration -> learning rate (SOLVER.*, see :func:`lr_at`)."""
    s = cfg.SOLVER
    return partial(lr_at, iters_per_epoch=iters_per_epoch, max_epoch=s.MAX_EPOCH, policy=s.LR_POLICY,
                   base_lr=s.BASE_LR, warmup_epochs=s.WARMUP_EPOCHS, warmup_start_lr=s.WARMUP_START_LR,
                   cosine_end_lr=s.COSINE_END_LR, cosine_after_warmup=s.COSINE_AFTER_WARMUP, steps=tuple(s.STEPS),
                   lrs=tuple(s.LRS))


def build_guidance_schedule(cfg: CfgNode, *, iters_per_epoch: int) -> Callable[[int], float]:
    """iteration -> guidance weight: GUIDANCE.LAMBDA ramped linearly over GUIDANCE.WARMUP_EPOCHS
    (LAMBDA_RULE balance_init: the ramp alone; the objective multiplies by its balanced lambda)."""
    lam = 1.0 if cfg.GUIDANCE.LAMBDA_RULE == "balance_init" else cfg.GUIDANCE.LAMBDA
    warmup = round(cfg.GUIDANCE.WARMUP_EPOCHS * iters_per_epoch)
    return lambda it: lam * min(1.0, (it + 1) / warmup) if warmup else lam


def build_precision(cfg: CfgNode, *, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """(autocast dtype or None, gradient scaler enabled only for fp16) from TRAIN.MIXED_PRECISION."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.TRAIN.MIXED_PRECISION]
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
