"""The epochs of a training run: the trainer built from the config, sampler positions, logging,
progress, periodic and preemption checkpoints, the per-epoch evaluation and the best checkpoint.
One optimizer step is :meth:`stal.engine.trainer.Trainer.run_step`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext

import torch
from fvcore.common.config import CfgNode
from tqdm.contrib.logging import logging_redirect_tqdm

from stal.engine import builders, solver
from stal.engine.checkpoint import BEST_NAME, atomic_torch_save, checkpoint_name
from stal.engine.distributed import DistContext, barrier
from stal.engine.evaluate import test
from stal.engine.outputs import RunLog, prepare_output_dir, write_json
from stal.engine.state import TrainState, resume_state, save_state
from stal.engine.trainer import PreemptedError, Trainer
from stal.errors import StalError
from stal.progress import Progress

logger = logging.getLogger("stal")


def build_trainer(cfg: CfgNode, ctx: DistContext, model, ddp_model, *, iters_per_epoch: int) -> Trainer:
    amp_dtype, scaler = solver.build_precision(cfg, device=ctx.device)
    return Trainer(
        model=ddp_model, objective=builders.build_objective(cfg), optimizer=solver.build_optimizer(cfg, model),
        lr_fn=solver.build_lr_schedule(cfg, iters_per_epoch=iters_per_epoch),
        guidance_weight_fn=solver.build_guidance_schedule(cfg, iters_per_epoch=iters_per_epoch),
        amp_dtype=amp_dtype, scaler=scaler, clip_grad_norm=cfg.SOLVER.CLIP_GRAD_L2NORM,
        max_nonfinite=cfg.TRAIN.MAX_NONFINITE_STEPS, ctx=ctx)


def _wrap_ddp(model: torch.nn.Module, ctx: DistContext):
    if not ctx.active:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _epoch_means(sums: dict) -> dict:
    n = sums.get("steps", 0)
    return {k: v / n for k, v in sums.items() if k != "steps"} if n else {}


def _accumulate(sums: dict, record: dict) -> None:
    """Add a finite step's numbers to the epoch's running sums (skipped steps are only counted)."""
    if record["nonfinite"]:
        sums["nonfinite_steps"] = sums.get("nonfinite_steps", 0) + 1
        return
    sums["steps"] = sums.get("steps", 0) + 1
    for key, value in record.items():
        if key not in ("iter", "epoch", "nonfinite") and isinstance(value, (int, float)):
            sums[key] = sums.get(key, 0.0) + value


def train(cfg: CfgNode, model: torch.nn.Module, ctx: DistContext | None = None) -> dict:
    """Train ``model`` to SOLVER.MAX_EPOCH (or TRAIN.MAX_ITERS), resuming from OUTPUT_DIR/checkpoints."""
    ctx = ctx or DistContext()
    loader = builders.build_train_loader(cfg, ctx=ctx)
    ipe = loader.batch_sampler.steps_per_epoch
    if ipe == 0:
        raise StalError(f"the training set ({len(loader.dataset)} clips) yields no optimizer step of "
                        f"TRAIN.BATCH_SIZE {cfg.TRAIN.BATCH_SIZE} clips")
    trainer = build_trainer(cfg, ctx, model, _wrap_ddp(model, ctx), iters_per_epoch=ipe)
    st = TrainState()
    if cfg.TRAIN.AUTO_RESUME:
        resume_state(cfg, ctx, trainer, model, st, iters_per_epoch=ipe)
    if ctx.is_main:  # the data, model and resume are fine: now the run may leave files
        prepare_output_dir(cfg.OUTPUT_DIR, config_text=cfg.dump())
    loop = _Loop(cfg, ctx, trainer, model, st, loader=loader, iters_per_epoch=ipe)
    try:
        with loop.signals, logging_redirect_tqdm() if not loop.bar.disable else nullcontext():  # logs above the bar
            for epoch in range(trainer.iteration // ipe, cfg.SOLVER.MAX_EPOCH):
                if trainer.iteration >= loop.total or not loop.run_epoch(epoch):
                    break
    finally:
        loop.close()
    return {"epochs": st.history, "evals": st.evals, "best": st.best, "nonfinite_steps": trainer.nonfinite_total,
            "iterations": trainer.iteration}


class StopSignals:
    """While active, SIGTERM (what schedulers send before killing) and SIGINT (Ctrl-C) ask the
    trainer to stop after the current step, with a checkpoint; a second Ctrl-C stops at once
    (KeyboardInterrupt, no new checkpoint). Only the main thread can own signal handlers, so
    elsewhere (a test's worker thread) this does nothing."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.received, self._previous = trainer, None, {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == signal.SIGINT:  # a handler must not log (the logging lock may be held)
            sys.stderr.write("\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again: stop now)\n")
        self.received = self.received or signum
        self.trainer.stop_requested = True

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class _Loop:
    """The epochs of one training run: sampler positions, logging, progress, checkpoints."""

    def __init__(self, cfg: CfgNode, ctx: DistContext, trainer: Trainer, model, st: TrainState, *,
                 loader, iters_per_epoch: int):
        self.cfg, self.ctx, self.trainer, self.model, self.st = cfg, ctx, trainer, model, st
        self.loader, self.ipe = loader, iters_per_epoch
        self.total = cfg.SOLVER.MAX_EPOCH * iters_per_epoch
        if cfg.TRAIN.MAX_ITERS:
            self.total = min(self.total, cfg.TRAIN.MAX_ITERS)
        self.log = RunLog(cfg.OUTPUT_DIR, start_iteration=trainer.iteration, enabled=ctx.is_main)
        self.bar = Progress(total=self.total, initial=trainer.iteration, desc="train", unit="step",
                            enabled=ctx.is_main)
        self.signals = StopSignals(trainer)

    def save(self, name: str) -> None:
        save_state(self.cfg, self.ctx, self.trainer, self.model, self.st, iters_per_epoch=self.ipe, name=name)

    def on_step(self, record: dict) -> None:
        cfg, it = self.cfg, self.trainer.iteration  # steps done, this one included
        record = {"iter": it - 1, **record, "clips_per_s": cfg.TRAIN.BATCH_SIZE / record["step_time"]}
        _accumulate(self.st.epoch_sums, record)
        if (it - 1) % cfg.LOG_PERIOD == 0 or record["nonfinite"]:
            self.log.write(record)
        self.bar.set_postfix(epoch=record["epoch"], loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}")
        self.bar.update(1)
        mid_epoch = it % self.ipe and it < self.total
        periodic = cfg.TRAIN.CHECKPOINT_ITERS and it % cfg.TRAIN.CHECKPOINT_ITERS == 0
        if mid_epoch and (self.trainer.should_stop or periodic):
            self.save(checkpoint_name(epoch=it // self.ipe, iteration=it))
        if mid_epoch and self.trainer.should_stop:
            self.preempted()

    def preempted(self):
        it = self.trainer.iteration
        signum = self.signals.received or signal.SIGTERM  # another rank's signal: reported as SIGTERM
        raise PreemptedError(f"stopped by {signal.Signals(signum).name} after iteration {it} (epoch {it / self.ipe:.2f}) "
                             f"with a checkpoint in {self.cfg.OUTPUT_DIR}/checkpoints; run the same command to resume",
                             signum=int(signum))

    def run_epoch(self, epoch: int) -> bool:
        """Epoch ``epoch`` (0-based) from the trainer's position; False when TRAIN.MAX_ITERS cut it."""
        cfg, trainer, ipe = self.cfg, self.trainer, self.ipe
        self.loader.batch_sampler.set_epoch(epoch, start=trainer.iteration - epoch * ipe, stop=self.total - epoch * ipe)
        if hasattr(self.loader.dataset, "set_epoch"):
            self.loader.dataset.set_epoch(epoch)
        self.loader.generator.manual_seed(cfg.RNG_SEED * 100_003 + epoch)  # worker seeds
        tick = time.perf_counter()
        trainer.train_epoch(self.loader, accum_steps=cfg.TRAIN.GRAD_ACCUM_STEPS, epoch=epoch + 1,
                            on_step=self.on_step)
        if trainer.iteration < (epoch + 1) * ipe:
            self.save(checkpoint_name(epoch=epoch, iteration=trainer.iteration))
            return False
        _end_epoch(cfg, self.ctx, self.model, self.st, self.log, epoch=epoch, seconds=time.perf_counter() - tick,
                   iteration=trainer.iteration)
        last = epoch + 1 == cfg.SOLVER.MAX_EPOCH or trainer.iteration >= self.total
        if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last or trainer.should_stop:
            self.save(checkpoint_name(epoch=epoch + 1))
        if trainer.should_stop and not last:
            self.preempted()
        return True

    def close(self) -> None:
        self.bar.close()
        self.log.close()


def _end_epoch(cfg: CfgNode, ctx: DistContext, model, st: TrainState, log: RunLog, *, epoch: int,
               seconds: float, iteration: int) -> None:
    """Epoch means into the history; the periodic evaluation and the best checkpoint (rank 0)."""
    means = _epoch_means(st.epoch_sums)
    means.update(epoch=epoch + 1, epoch_time=seconds, nonfinite_steps=st.epoch_sums.get("nonfinite_steps", 0))
    st.history.append(means)
    st.epoch_sums = {}
    logger.info("epoch %d/%d: %s", epoch + 1, cfg.SOLVER.MAX_EPOCH,
                ", ".join(f"{k}={v:.4g}" for k, v in means.items() if k.startswith(("loss", "off"))))
    if not (cfg.TRAIN.EVAL_PERIOD and (epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0):
        return
    metrics = test(cfg, model, out_dir=None, ctx=ctx)
    if ctx.is_main:
        # "iter": the last training step's index, as in the training lines (and resume's log cut).
        row = {"epoch": epoch + 1, "iter": iteration - 1, **{k: v for k, v in metrics.items() if k != "per_class_AP"}}
        st.evals.append(row)
        log.write({"iter": iteration - 1, "epoch": epoch + 1, "split": "eval",
                   **{k: v for k, v in row.items() if isinstance(v, float)}}, prefix="eval")
        value = metrics.get(cfg.TRAIN.BEST_METRIC)
        if value is None:
            raise StalError(f"TRAIN.BEST_METRIC {cfg.TRAIN.BEST_METRIC!r} is not an evaluation metric; "
                            f"one of {sorted(k for k, v in row.items() if isinstance(v, float))}")
        if st.best is None or value > st.best["value"]:
            st.best = {"metric": cfg.TRAIN.BEST_METRIC, "value": value, "epoch": epoch + 1, "iter": iteration - 1}
            os.makedirs(os.path.join(cfg.OUTPUT_DIR, "checkpoints"), exist_ok=True)
            atomic_torch_save({"model_state": model.state_dict(), "epoch": epoch + 1, "iteration": iteration,
                               "cfg": cfg.dump(), "best": st.best},
                              os.path.join(cfg.OUTPUT_DIR, "checkpoints", BEST_NAME))
        write_json(os.path.join(cfg.OUTPUT_DIR, "metrics.json"),
                   {"evals": st.evals, "best": st.best, "epochs": st.history})
    barrier(ctx)
