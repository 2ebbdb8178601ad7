"""A whole run from a config: output directory, build, resume, train, evaluate, metrics.json."""

from __future__ import annotations

import json
import logging
import os
import random
import time

import numpy as np
import torch
from fvcore.common.config import CfgNode

from stal.engine import builders
from stal.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from stal.engine.evaluate import evaluate_frame_map, evaluate_synthetic
from stal.engine.trainer import JsonlLog, Trainer
from stal.errors import StalError

logger = logging.getLogger("stal")
# Epoch index of the held-out synthesized clips: never reached by training epochs.
HELD_OUT_EPOCH = 1_000_000


def prepare_output_dir(cfg: CfgNode) -> None:
    """Create OUTPUT_DIR and dump the resolved config into it (fails early if not writable)."""
    try:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        tmp = os.path.join(cfg.OUTPUT_DIR, ".config.yaml.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(cfg.dump())
        os.replace(tmp, os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
    except OSError as exc:
        raise StalError(f"OUTPUT_DIR {cfg.OUTPUT_DIR!r} cannot be written: {exc.strerror}") from None


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def select_device(num_gpus: int) -> torch.device:
    """CPU for NUM_GPUS 0, else the first CUDA device (multi-GPU runs use one process per GPU)."""
    if num_gpus == 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise StalError(f"NUM_GPUS is {num_gpus} but no CUDA device is available; set NUM_GPUS 0")
    return torch.device("cuda", 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build_trainer(cfg: CfgNode, model, optimizer, log: JsonlLog) -> Trainer:
    loader = builders.build_train_loader(cfg)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise StalError("the training set yields no batch: fewer clips than TRAIN.BATCH_SIZE")
    return Trainer(
        model=model, objective=builders.build_objective(cfg), optimizer=optimizer, loader=loader,
        epochs=cfg.SOLVER.MAX_EPOCH, base_lr=cfg.SOLVER.BASE_LR, lr_policy=cfg.SOLVER.LR_POLICY,
        warmup_iters=round(cfg.SOLVER.WARMUP_EPOCHS * per_epoch), guidance_lambda=cfg.GUIDANCE.LAMBDA,
        guidance_warmup_iters=round(cfg.GUIDANCE.WARMUP_EPOCHS * per_epoch), log=log,
        log_period=cfg.LOG_PERIOD, shuffle_seed=cfg.RNG_SEED, max_iters=cfg.TRAIN.MAX_ITERS)


def train(cfg: CfgNode, model: torch.nn.Module) -> dict:
    """Train ``model`` for SOLVER.MAX_EPOCH epochs, resuming from OUTPUT_DIR/checkpoints."""
    ckpt_dir = os.path.join(cfg.OUTPUT_DIR, "checkpoints")
    optimizer = builders.build_optimizer(cfg, model)
    log = JsonlLog(os.path.join(cfg.OUTPUT_DIR, "log.jsonl"))
    trainer = _build_trainer(cfg, model, optimizer, log)
    start_epoch, history = 0, []
    existing = list_checkpoints(ckpt_dir) if cfg.TRAIN.AUTO_RESUME else []
    if existing:
        state = load_checkpoint(existing[-1], model=model, optimizer=optimizer)
        start_epoch, trainer.iteration = state["epoch"], state["iteration"]
        logger.info("resumed from %s (epoch %d, iteration %d)", existing[-1], start_epoch, trainer.iteration)
    for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        tick = time.perf_counter()
        means = trainer.train_epoch(epoch)
        means.update(epoch=epoch + 1, epoch_time=time.perf_counter() - tick)
        history.append(means)
        logger.info("epoch %d/%d: %s", epoch + 1, cfg.SOLVER.MAX_EPOCH,
                    ", ".join(f"{k}={v:.4g}" for k, v in means.items() if k.startswith(("loss", "off"))))
        last = epoch + 1 == cfg.SOLVER.MAX_EPOCH or (cfg.TRAIN.MAX_ITERS and trainer.iteration >= cfg.TRAIN.MAX_ITERS)
        if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last:
            save_checkpoint(ckpt_dir, epoch=epoch + 1, iteration=trainer.iteration, model=model,
                            optimizer=optimizer, keep=cfg.TRAIN.CHECKPOINT_KEEP, cfg_dump=cfg.dump())
        if last:
            break
    log.close()
    return {"epochs": history}


def test(cfg: CfgNode, model: torch.nn.Module) -> dict:
    """Frame-mAP on the test split, plus guidance diagnostics on held-out synthesized clips."""
    metrics: dict = {}
    split = builders.build_test_split(cfg)
    result, det = evaluate_frame_map(model, split, batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC)
    from stal.data.ava_format import write_ava_csv

    write_ava_csv(os.path.join(cfg.OUTPUT_DIR, "detections.csv"), det, score=True)
    metrics.update(frame_mAP=result["frame_mAP"], per_class_AP=result["per_class_AP"])
    if cfg.TRAIN.DATASET == "demo" and cfg.TEST.NUM_ENERGY_CLIPS > 0:
        metrics.update(_held_out_synthetic(cfg, model))
    else:
        metrics["off_target_energy"] = None
    return metrics


def _held_out_synthetic(cfg: CfgNode, model: torch.nn.Module) -> dict:
    """Diagnostics on clips synthesized from the training bank with an unseen seed.

    ``off_target_energy`` and ``synth_val_accuracy`` use the training distribution (biased
    scenes); ``synth_unbiased_accuracy`` draws scenes independently of the actions. Both are
    validation data: method choices are made on them, never on the test split.
    """
    held_out = builders.build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.TEST.NUM_ENERGY_CLIPS)
    held_out.set_epoch(HELD_OUT_EPOCH)
    kwargs = dict(batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC, score=cfg.GUIDANCE.SCORE)
    out = evaluate_synthetic(model, held_out, **kwargs)
    held_out.scene_bias = 0.0  # same seed and bank, scenes now independent of the actions
    unbiased = evaluate_synthetic(model, held_out, attribution=False, **kwargs)
    out["synth_unbiased_accuracy"] = unbiased.get("synth_val_accuracy")
    return out


def run(cfg: CfgNode) -> dict:
    """Train and/or test as configured; writes OUTPUT_DIR/metrics.json and returns it."""
    prepare_output_dir(cfg)
    seed_everything(cfg.RNG_SEED)
    model = builders.build_model(cfg).to(select_device(cfg.NUM_GPUS))
    metrics: dict = {}
    if cfg.TRAIN.ENABLE:
        metrics.update(train(cfg, model))
    else:
        existing = list_checkpoints(os.path.join(cfg.OUTPUT_DIR, "checkpoints"))
        if not existing:
            raise StalError(f"TRAIN.ENABLE is False but {cfg.OUTPUT_DIR}/checkpoints has no checkpoint to test")
        load_checkpoint(existing[-1], model=model)
    if cfg.TEST.ENABLE:
        metrics = {**test(cfg, model), **metrics}
        write_json(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), metrics)
    return metrics
