"""Training state and checkpoints of a run: what a checkpoint carries besides the weights, how a
run saves it (collectively, rank 0 writes) and resumes from the newest readable one, and how a
trained model is found for testing. File-level details (names, atomic writes, pruning,
``weights_only`` reads) are in :mod:`stal.engine.checkpoint`.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
from fvcore.common.config import CfgNode

from stal.config.defaults import get_cfg
from stal.engine.checkpoint import (CheckpointError, check_resume_config, load_model_weights, load_newest,
                                    read_checkpoint, remove_stale_temporaries, rng_states, save_checkpoint,
                                    set_rng_states)
from stal.engine.distributed import DistContext, broadcast_object, gather_objects
from stal.engine.trainer import Trainer
from stal.errors import StalError

logger = logging.getLogger("stal")


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


def save_state(cfg: CfgNode, ctx: DistContext, trainer: Trainer, model, st: TrainState, *,
          iters_per_epoch: int, name: str) -> None:
    """Checkpoint ``name`` (collective: every rank's RNG state goes in; rank 0 writes)."""
    rng = gather_objects(rng_states(), ctx)
    error = None
    if ctx.is_main:
        st.nonfinite_total = trainer.nonfinite_total
        state = {"model_state": model.state_dict(), "optimizer_state": trainer.optimizer.state_dict(),
                 "scaler_state": trainer.scaler.state_dict(), "iteration": trainer.iteration,
                 "epoch": trainer.iteration // iters_per_epoch, "iters_per_epoch": iters_per_epoch,
                 "rng": rng, "cfg": cfg.dump(), "train_state": st.as_dict(),
                 "objective_state": trainer.objective.state_dict()}
        try:
            save_checkpoint(os.path.join(cfg.OUTPUT_DIR, "checkpoints"), state, name=name,
                            keep=cfg.TRAIN.CHECKPOINT_KEEP)
        except CheckpointError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)  # every rank stops, none waits forever
    if error:
        raise CheckpointError(error)


def resume_state(cfg: CfgNode, ctx: DistContext, trainer: Trainer, model, st: TrainState, *,
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
    trainer.objective.load_state_dict(state.get("objective_state") or {})  # older checkpoints: none
    if cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.LAMBDA_RULE == "balance_init" and trainer.objective.balanced_lambda is None:
        raise StalError(f"{path} has no balanced guidance lambda (GUIDANCE.LAMBDA_RULE balance_init sets it on "
                        f"the first batch of a run): resume with the LAMBDA_RULE it was trained with")
    st.load(state["train_state"])
    trainer.nonfinite_total = st.nonfinite_total
    if len(state["rng"]) == ctx.world_size:
        set_rng_states(state["rng"][ctx.rank])
    else:  # another number of processes: data order is unchanged, dropout streams are not
        logger.warning("%s was written by %d processes, this run has %d: random states re-seeded",
                       path, len(state["rng"]), ctx.world_size)
        seed_everything(cfg.RNG_SEED + 7919 * (trainer.iteration + 1) + ctx.rank)
    logger.info("resumed from %s (epoch %d, iteration %d)", path, state["epoch"], trainer.iteration)


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
