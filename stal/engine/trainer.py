"""The training loop: data, forward, dict of losses summed, backward, step, schedule, log.

Guidance is one entry of the loss dict (see :class:`stal.objective.Objective`), never a
branch here. Schedules are functions of the global iteration, so a resumed run computes
the same learning rate and guidance weight as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from tqdm import tqdm


def lr_at(iteration: int, *, total: int, warmup: int, base_lr: float, policy: str) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup`` iterations, then constant or cosine to 0."""
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    if policy == "constant":
        return base_lr
    progress = (iteration - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch to ``device`` (other entries unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class JsonlLog:
    """Appends one JSON object per line to ``path`` (flushed, so a crash loses at most a line)."""

    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Trainer:
    """Runs epochs of ``objective`` over ``loader`` with ``optimizer``.

    guidance_lambda / guidance_warmup_iters: weight of the guidance entry, ramped linearly
    from 0 over the warm-up (its parameter gradient dominates the task loss's at init).
    """

    def __init__(self, *, model, objective, optimizer, loader, epochs: int, base_lr: float,
                 lr_policy: str, warmup_iters: int, guidance_lambda: float,
                 guidance_warmup_iters: int, log: JsonlLog, log_period: int, shuffle_seed: int,
                 max_iters: int = 0):
        self.model, self.objective, self.optimizer, self.loader = model, objective, optimizer, loader
        self.iters_per_epoch = len(loader)
        self.total_iters = epochs * self.iters_per_epoch
        self.base_lr, self.lr_policy, self.warmup_iters = base_lr, lr_policy, warmup_iters
        self.guidance_lambda, self.guidance_warmup_iters = guidance_lambda, guidance_warmup_iters
        self.log, self.log_period, self.max_iters = log, log_period, max_iters
        self.shuffle_seed = shuffle_seed
        self.iteration = 0

    def guidance_weight(self) -> float:
        ramp = min(1.0, (self.iteration + 1) / self.guidance_warmup_iters) if self.guidance_warmup_iters else 1.0
        return self.guidance_lambda * ramp

    def run_step(self, batch: dict) -> dict:
        lr = lr_at(self.iteration, total=self.total_iters, warmup=self.warmup_iters,
                   base_lr=self.base_lr, policy=self.lr_policy)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(batch, next(self.model.parameters()).device)
        losses, stats = self.objective(self.model, batch, guidance_weight=self.guidance_weight())
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at iteration {self.iteration}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"lr": lr, "loss": float(total.detach()), **{f"loss_{k}": float(v.detach()) for k, v in losses.items()}, **stats}

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the loader (``epoch`` 0-based); returns the epoch's mean of each entry."""
        self.model.train()
        if hasattr(self.loader.dataset, "set_epoch"):
            self.loader.dataset.set_epoch(epoch)
        # The shuffle order depends only on (seed, epoch): a resumed run sees the same order.
        self.loader.generator.manual_seed(self.shuffle_seed * 100_003 + epoch)
        sums: dict = {}
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}", leave=False, disable=None, dynamic_ncols=True)
        tick = time.perf_counter()
        for step, batch in enumerate(bar):
            data_time = time.perf_counter() - tick
            record = self.run_step(batch)
            record.update(data_time=data_time, step_time=time.perf_counter() - tick)
            for k, v in record.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.iteration % self.log_period == 0:
                self.log.write({"iter": self.iteration, "epoch": epoch + 1, **record})
                bar.set_postfix(loss=f"{record['loss']:.3f}")
            self.iteration += 1
            tick = time.perf_counter()
            if self.max_iters and self.iteration >= self.max_iters:
                break
        return {k: v / max(1, step + 1) for k, v in sums.items()}
