"""The training loop: data, forward, dict of losses summed, backward, step, schedule, log.

Guidance is one entry of the loss dict (see :class:`stal.guidance.objective.Objective`), never a
branch here. Schedules are functions of the global iteration, so a resumed run computes
the same learning rate and guidance weight as an uninterrupted one. One optimizer step
sums the gradients of ``accum_steps`` micro-batches (each loss divided by their number);
under DDP the gradients are averaged over ranks in the last micro-batch's backward only.

Mixed precision: ``amp_dtype`` bfloat16 or float16 runs the forward (and the guidance's
inner input gradient) under autocast; float16 uses the GradScaler, whose current scale is
also passed to the objective as ``input_grad_scale`` so that the inner gradient ds/dx is
computed on the scaled score (fp16 underflow) and unscaled in float32.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Callable

import torch

from stal.engine.distributed import DistContext, reduce_mean
from stal.errors import StalError


class NonFiniteLossError(StalError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class PreemptedError(StalError):
    """The run was asked to stop (SIGTERM, or Ctrl-C / SIGINT) and saved a checkpoint to resume from."""

    def __init__(self, message: str, *, signum: int = 15):
        super().__init__(message)
        self.exit_code = 128 + signum  # 143 (SIGTERM) / 130 (SIGINT): what shells and schedulers expect


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch to ``device`` (other entries unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """Optimizer steps of ``objective`` on ``model`` (a module or its DDP wrapper).

    lr_fn / guidance_weight_fn: iteration -> learning rate / guidance weight.
    amp_dtype: None (float32), torch.bfloat16 or torch.float16 (with ``scaler`` enabled).
    clip_grad_norm: clip the global gradient L2 norm to this value (0: only measure it).
    max_nonfinite: stop after this many consecutive skipped (non-finite) steps (fp16: counted
    once the scaler's scale is <= 1).
    """

    def __init__(self, *, model, objective, optimizer: torch.optim.Optimizer, lr_fn: Callable[[int], float],
                 guidance_weight_fn: Callable[[int], float], amp_dtype: torch.dtype | None,
                 scaler: torch.amp.GradScaler, clip_grad_norm: float, max_nonfinite: int, ctx: DistContext):
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.lr_fn, self.guidance_weight_fn = lr_fn, guidance_weight_fn
        self.amp_dtype, self.scaler, self.clip_grad_norm = amp_dtype, scaler, clip_grad_norm
        self.max_nonfinite, self.ctx = max_nonfinite, ctx
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.iteration, self.nonfinite_in_row, self.nonfinite_total = 0, 0, 0
        # stop_requested: set by a signal handler on any rank; should_stop: agreed by all ranks
        # in the same step (it travels in the step's all-reduce).
        self.stop_requested, self.should_stop = False, False

    def run_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over ``micro_batches``; returns the rank-averaged record."""
        lr, weight = self.lr_fn(self.iteration), self.guidance_weight_fn(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict = {}
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            with (nullcontext() if last or not self.ctx.active else self.model.no_sync()):
                losses, stats = self._forward(to_device(batch, self.ctx.device), weight)
                total = sum(losses.values())
                self.scaler.scale(total / len(micro_batches)).backward()
            for k, v in {"loss": total, **{f"loss_{k}": v for k, v in losses.items()}, **stats}.items():
                sums[k] = sums.get(k, 0.0) + torch.as_tensor(v).detach().double() / len(micro_batches)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 0.0
        self.scaler.unscale_(self.optimizer)
        clip = self.clip_grad_norm if self.clip_grad_norm > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, clip) if self.params else torch.zeros(())
        bad = ~(torch.isfinite(sums["loss"]) & torch.isfinite(grad_norm))
        record = reduce_mean({**sums, "grad_norm": grad_norm, "nonfinite": bad,
                              "stop": float(self.stop_requested)}, self.ctx)
        self.should_stop = record.pop("stop") > 0
        ok = record["nonfinite"] == 0  # any rank's bad step is every rank's: the same decision
        record["nonfinite"] = 0.0 if ok else 1.0
        if ok:
            self.scaler.step(self.optimizer)  # fp16: the scaler may still skip on inf grads
        self.scaler.update()
        # fp16: overflow while the scale is > 1 is the scaler's calibration (it halves the scale;
        # the inner input gradient of the guidance usually needs a smaller scale than the
        # outer one), so such a step counts toward the guard only once the scale is <= 1.
        if ok or scale <= 1.0:
            self.nonfinite_in_row = 0 if ok else self.nonfinite_in_row + 1
        self.nonfinite_total += 0 if ok else 1
        self.iteration += 1
        return {"lr": lr, "guidance_weight": weight, **record,
                **({"grad_scale": self.scaler.get_scale()} if self.scaler.is_enabled() else {})}

    def _forward(self, batch: dict, weight: float) -> tuple[dict, dict]:
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.objective(self.model, batch, guidance_weight=weight, input_grad_scale=scale)

    def check_nonfinite(self, record: dict) -> None:
        """NonFiniteLossError after ``max_nonfinite`` skipped steps in a row (call once logged)."""
        if self.nonfinite_in_row >= self.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_row} optimizer steps in a row had a non-finite loss or gradient "
                f"(iterations {self.iteration - self.nonfinite_in_row}..{self.iteration - 1}, last loss "
                f"{record['loss']}); stopped without saving, so the newest checkpoint is from before "
                f"them. Lower SOLVER.BASE_LR, set SOLVER.CLIP_GRAD_L2NORM, or use TRAIN.MIXED_PRECISION "
                f"bf16 or fp32 instead of fp16")

    def train_epoch(self, loader, *, accum_steps: int, epoch: int, on_step: Callable[[dict], None]) -> None:
        """Steps over ``loader`` (micro-batches; ``accum_steps`` per step), calling ``on_step(record)``
        with ``epoch`` (1-based), ``data_time`` and ``step_time`` (seconds) added."""
        self.model.train()
        group, tick = [], time.perf_counter()
        for batch in loader:
            group.append(batch)
            if len(group) < accum_steps:
                continue
            data_time = time.perf_counter() - tick
            record = self.run_step(group)
            if self.ctx.device.type == "cuda":
                torch.cuda.synchronize(self.ctx.device)  # honest step times
            record.update(epoch=epoch, data_time=data_time, step_time=time.perf_counter() - tick)
            on_step(record)
            self.check_nonfinite(record)
            group, tick = [], time.perf_counter()
