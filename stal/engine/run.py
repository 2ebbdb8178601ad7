"""A whole run from a config: processes, output directory, resume, train, evaluate, metrics.json.

``run(cfg)`` is what ``tools/train_net.py`` calls (once per process under torchrun);
``run_test(cfg)`` is ``tools/test_net.py``. Rank 0 writes every file; the other ranks only
train. See docs/training.md for the outputs and the resume rules.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from contextlib import nullcontext

import numpy as np
import torch
from fvcore.common.config import CfgNode
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from stal.config.defaults import get_cfg
from stal.data import build as data_build
from stal.engine import builders, solver
from stal.engine.checkpoint import (BEST_NAME, CheckpointError, atomic_torch_save, check_resume_config,
                                   checkpoint_name, load_model_weights, load_newest, read_checkpoint,
                                   remove_stale_temporaries, rng_states, save_checkpoint, set_rng_states)
from stal.engine.distributed import (DistContext, barrier, broadcast_object, gather_objects, init_distributed,
                                    shutdown)
from stal.engine.evaluate import evaluate_frame_map, evaluate_synthetic
from stal.engine.evaluate_wsol import evaluate_wsol
from stal.engine.outputs import RunLog, write_json
from stal.engine.trainer import PreemptedError, Trainer
from stal.errors import StalError
from stal.formats.ava import write_ava_csv
from stal.io.atomic import WriteError, atomic_write_text

logger = logging.getLogger("stal")
# Epoch index of the held-out synthesized clips: never reached by training epochs.
HELD_OUT_EPOCH = 1_000_000


def prepare_output_dir(cfg: CfgNode) -> None:
    """Create OUTPUT_DIR and dump the resolved config into it (fails early if not writable)."""
    try:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
    except OSError as exc:
        raise StalError(f"OUTPUT_DIR {cfg.OUTPUT_DIR!r} cannot be written: {exc.strerror}") from None
    except WriteError as exc:
        raise StalError(f"OUTPUT_DIR {cfg.OUTPUT_DIR!r} cannot be written: {exc.reason}") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainState:
    """What a checkpoint carries besides weights: progress, per-epoch means, evaluations."""

    def __init__(self):
        self.history: list[dict] = []  # per finished epoch: means of the logged entries
        self.epoch_sums: dict = {}  # running sums of the current epoch (for a mid-epoch resume)
        self.evals: list[dict] = []  # per evaluation during training
        self.best: dict | None = None  # {"metric", "value", "epoch", "iter"}
        self.nonfinite_total = 0

    def as_dict(self) -> dict:
        return {"history": self.history, "epoch_sums": self.epoch_sums, "evals": self.evals,
                "best": self.best, "nonfinite_total": self.nonfinite_total}

    def load(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _save(cfg: CfgNode, ctx: DistContext, trainer: Trainer, model, st: TrainState, *,
          iters_per_epoch: int, name: str) -> None:
    """Checkpoint ``name`` (collective: every rank's RNG state goes in; rank 0 writes)."""
    rng = gather_objects(rng_states(), ctx)
    error = None
    if ctx.is_main:
        st.nonfinite_total = trainer.nonfinite_total
        state = {"model_state": model.state_dict(), "optimizer_state": trainer.optimizer.state_dict(),
                 "scaler_state": trainer.scaler.state_dict(), "iteration": trainer.iteration,
                 "epoch": trainer.iteration // iters_per_epoch, "iters_per_epoch": iters_per_epoch,
                 "rng": rng, "cfg": cfg.dump(), "train_state": st.as_dict()}
        try:
            save_checkpoint(os.path.join(cfg.OUTPUT_DIR, "checkpoints"), state, name=name,
                            keep=cfg.TRAIN.CHECKPOINT_KEEP)
        except CheckpointError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)  # every rank stops, none waits forever
    if error:
        raise CheckpointError(error)


def _resume(cfg: CfgNode, ctx: DistContext, trainer: Trainer, model, st: TrainState, *,
            iters_per_epoch: int) -> None:
    """Restore the newest readable checkpoint of OUTPUT_DIR/checkpoints, if any."""
    ckpt_dir = os.path.join(cfg.OUTPUT_DIR, "checkpoints")
    found = None
    if ctx.is_main and os.path.isdir(ckpt_dir):
        remove_stale_temporaries(ckpt_dir)
        found = load_newest(ckpt_dir)
    path = broadcast_object(found[0] if found else None, ctx)
    if path is None:
        return
    state = found[1] if ctx.is_main else read_checkpoint(path)
    check_resume_config(state, cfg, path=path, defaults=get_cfg(), allow=cfg.TRAIN.ALLOW_CONFIG_CHANGE)
    if state["iters_per_epoch"] not in (None, iters_per_epoch) and not cfg.TRAIN.ALLOW_CONFIG_CHANGE:
        raise StalError(f"{path} has {state['iters_per_epoch']} iterations per epoch, this run "
                        f"{iters_per_epoch}: the training set or TRAIN.BATCH_SIZE changed")
    load_model_weights(model, state, path=path)
    trainer.optimizer.load_state_dict(state["optimizer_state"])
    if state["scaler_state"]:  # empty: written without fp16 (or by the first checkpoint format)
        trainer.scaler.load_state_dict(state["scaler_state"])
    trainer.iteration = state["iteration"]
    st.load(state["train_state"])
    trainer.nonfinite_total = st.nonfinite_total
    if len(state["rng"]) == ctx.world_size:
        set_rng_states(state["rng"][ctx.rank])
    else:  # another number of processes: data order is unchanged, dropout streams are not
        logger.warning("%s was written by %d processes, this run has %d: random states re-seeded",
                       path, len(state["rng"]), ctx.world_size)
        seed_everything(cfg.RNG_SEED + 7919 * (trainer.iteration + 1) + ctx.rank)
    logger.info("resumed from %s (epoch %d, iteration %d)", path, state["epoch"], trainer.iteration)


def _build_trainer(cfg: CfgNode, ctx: DistContext, model, ddp_model, *, iters_per_epoch: int) -> Trainer:
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
    trainer = _build_trainer(cfg, ctx, model, _wrap_ddp(model, ctx), iters_per_epoch=ipe)
    st = TrainState()
    if cfg.TRAIN.AUTO_RESUME:
        _resume(cfg, ctx, trainer, model, st, iters_per_epoch=ipe)
    loop = _Loop(cfg, ctx, trainer, model, st, loader=loader, iters_per_epoch=ipe)
    previous = _on_sigterm(lambda *_: setattr(trainer, "stop_requested", True))
    try:
        with logging_redirect_tqdm() if not loop.bar.disable else nullcontext():  # logs above the bar
            for epoch in range(trainer.iteration // ipe, cfg.SOLVER.MAX_EPOCH):
                if trainer.iteration >= loop.total or not loop.run_epoch(epoch):
                    break
    finally:
        loop.close()
        _on_sigterm(previous)
    return {"epochs": st.history, "evals": st.evals, "best": st.best, "nonfinite_steps": trainer.nonfinite_total,
            "iterations": trainer.iteration}


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (what schedulers send before killing); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


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
        self.bar = tqdm(total=self.total, initial=trainer.iteration, desc="train", dynamic_ncols=True,
                        disable=None if ctx.is_main else True)  # None: only on a terminal

    def save(self, name: str) -> None:
        _save(self.cfg, self.ctx, self.trainer, self.model, self.st, iters_per_epoch=self.ipe, name=name)

    def on_step(self, record: dict) -> None:
        cfg, it = self.cfg, self.trainer.iteration  # steps done, this one included
        record = {"iter": it - 1, **record, "clips_per_s": cfg.TRAIN.BATCH_SIZE / record["step_time"]}
        _accumulate(self.st.epoch_sums, record)
        if (it - 1) % cfg.LOG_PERIOD == 0 or record["nonfinite"]:
            self.log.write(record)
        self.bar.update(1)
        self.bar.set_postfix(epoch=record["epoch"], loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}")
        mid_epoch = it % self.ipe and it < self.total
        periodic = cfg.TRAIN.CHECKPOINT_ITERS and it % cfg.TRAIN.CHECKPOINT_ITERS == 0
        if mid_epoch and (self.trainer.should_stop or periodic):
            self.save(checkpoint_name(epoch=it // self.ipe, iteration=it))
        if mid_epoch and self.trainer.should_stop:
            self.preempted()

    def preempted(self):
        it = self.trainer.iteration
        raise PreemptedError(f"stopped by SIGTERM after iteration {it} (epoch {it / self.ipe:.2f}) with a checkpoint "
                             f"in {self.cfg.OUTPUT_DIR}/checkpoints; run the same command to resume")

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


def test(cfg: CfgNode, model: torch.nn.Module, *, out_dir: str | None, ctx: DistContext | None = None) -> dict:
    """Frame-mAP on the test split, plus guidance diagnostics on held-out synthesized clips.

    With ``out_dir`` the detections are written there as ``detections.csv`` (AVA format; rank 0).
    Collective with ``ctx``: every rank evaluates its share of the clips.
    """
    if cfg.TEST.DATASET in data_build.IMAGE_DATASETS:  # one-frame clips: CAM localization metrics

        return {k: v for prefix, ds in data_build.build_image_eval_splits(cfg).items()
                for k, v in evaluate_wsol(model, ds, batch_size=cfg.TEST.BATCH_SIZE, prefix=prefix).items()}
    metrics: dict = {}
    split = data_build.build_test_split(cfg)
    result, det = evaluate_frame_map(model, split, batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC,
                                     ctx=ctx)
    if out_dir is not None and (ctx is None or ctx.is_main):
        write_ava_csv(os.path.join(out_dir, "detections.csv"), det, score=True)
    metrics.update(frame_mAP=result["frame_mAP"], per_class_AP=result["per_class_AP"])
    if cfg.TRAIN.DATASET == "demo" and cfg.TEST.NUM_ENERGY_CLIPS > 0:
        metrics.update(_held_out_synthetic(cfg, model, ctx))
    else:
        metrics["off_target_energy"] = None
    if split.get("files"):
        metrics["files"] = split["files"]
    return metrics


def _held_out_synthetic(cfg: CfgNode, model: torch.nn.Module, ctx: DistContext | None) -> dict:
    """Diagnostics on clips synthesized from the training bank with an unseen seed.

    ``off_target_energy`` and ``synth_val_accuracy`` use the training distribution (biased
    scenes); ``synth_unbiased_accuracy`` draws scenes independently of the actions. Both are
    validation data: method choices are made on them, never on the test split.
    """
    held_out = data_build.build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.TEST.NUM_ENERGY_CLIPS)
    held_out.set_epoch(HELD_OUT_EPOCH)
    kwargs = dict(batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC, score=cfg.GUIDANCE.SCORE, ctx=ctx)
    out = evaluate_synthetic(model, held_out, **kwargs)
    held_out.scene_bias = 0.0  # same seed and bank, scenes now independent of the actions
    unbiased = evaluate_synthetic(model, held_out, attribution=False, **kwargs)
    out["synth_unbiased_accuracy"] = unbiased.get("synth_val_accuracy")
    return out


def run(cfg: CfgNode) -> dict:
    """Train and/or test as configured (one process of a torchrun job, or the only one);
    rank 0 writes OUTPUT_DIR/metrics.json. Returns the metrics (empty on other ranks)."""
    ctx = init_distributed(num_gpus=cfg.NUM_GPUS)
    try:
        if ctx.is_main:
            prepare_output_dir(cfg)
        barrier(ctx)
        seed_everything(cfg.RNG_SEED)
        model = builders.build_model(cfg).to(ctx.device)
        if ctx.active:
            seed_everything(cfg.RNG_SEED + ctx.rank)  # same initial weights, own dropout streams
        metrics: dict = {}
        if cfg.TRAIN.ENABLE:
            metrics.update(train(cfg, model, ctx))
        else:
            load_trained_weights(cfg, model)
        if cfg.TEST.ENABLE:
            metrics = {**test(cfg, model, out_dir=cfg.OUTPUT_DIR, ctx=ctx), **metrics}
            if ctx.is_main:
                write_json(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), metrics)
        barrier(ctx)
        return metrics if ctx.is_main else {}
    finally:
        shutdown(ctx)


def load_trained_weights(cfg: CfgNode, model: torch.nn.Module) -> str:
    """Load TEST.CHECKPOINT_FILE_PATH, else the newest readable checkpoint of OUTPUT_DIR; returns its path."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        path = cfg.TEST.CHECKPOINT_FILE_PATH
        state = read_checkpoint(path)
    else:
        ckpt_dir = os.path.join(cfg.OUTPUT_DIR, "checkpoints")
        found = load_newest(ckpt_dir) if os.path.isdir(ckpt_dir) else None
        if found is None:
            raise StalError(f"no checkpoint to test in {ckpt_dir}: train first "
                            f"(tools/train_net.py) or set TEST.CHECKPOINT_FILE_PATH")
        path, state = found
    load_model_weights(model, state, path=path)
    return path


def run_test(cfg: CfgNode) -> dict:
    """tools/test_net.py: the trained checkpoint on the test split; writes OUTPUT_DIR/test/
    (config.yaml, detections.csv in the dataset's native format, metrics.json)."""
    ctx = init_distributed(num_gpus=cfg.NUM_GPUS)
    if ctx.active:
        shutdown(ctx)
        raise StalError("tools/test_net.py runs in one process; launch it without torchrun")
    out_dir = os.path.join(cfg.OUTPUT_DIR, "test")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(cfg.dump())
    except OSError as exc:
        raise StalError(f"{out_dir!r} cannot be written: {exc.strerror}") from None
    seed_everything(cfg.RNG_SEED)
    model = builders.build_model(cfg).to(ctx.device)
    path = load_trained_weights(cfg, model)
    metrics = {"checkpoint": os.path.abspath(path), **test(cfg, model, out_dir=out_dir)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
