"""Builders of the model, the objective and the training loader (datasets: :mod:`stal.data.build`,
solver: :mod:`stal.engine.solver`)."""

from __future__ import annotations

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader

from stal.data.batch import collate_train
from stal.data.build import build_train_dataset
from stal.engine.distributed import DistContext, GlobalBatchSampler
from stal.guidance.objective import Objective
from stal.guidance.penalty import GuidanceSpec
from stal.models import build_detector, load_pretrained


def build_model(cfg: CfgNode) -> torch.nn.Module:
    """The detector named by MODEL.ARCH; the differentiable RoIAlign only when exact guidance needs it."""
    kwargs = {"roi_output_size": (cfg.MODEL.ROI_SIZE, cfg.MODEL.ROI_SIZE),
              "dropout": cfg.MODEL.DROPOUT_RATE,
              "double_backward": bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "exact")}
    if cfg.MODEL.ARCH == "small3d":  # the *_tiny test variants keep their own sizes
        kwargs.update(width=cfg.MODEL.WIDTH, spatial_stride=cfg.MODEL.SPATIAL_STRIDE)
    model = build_detector(cfg.MODEL.ARCH, num_classes=cfg.MODEL.NUM_CLASSES,
                           mil_pooling=cfg.MODEL.MIL_POOLING or None, **kwargs)
    if cfg.MODEL.PRETRAINED:  # logs the missing / unexpected key report
        load_pretrained(model, cfg.MODEL.PRETRAINED)
    return model


def build_objective(cfg: CfgNode) -> Objective:
    """Task loss of MODEL.LOSS_FUNC plus, with GUIDANCE.ENABLE, the GUIDANCE.* penalty."""
    spec = None
    if cfg.GUIDANCE.ENABLE:
        g = cfg.GUIDANCE
        spec = GuidanceSpec(score=g.SCORE, norm=g.NORM, p=g.P, region=g.REGION, mode=g.MODE, penalty=g.PENALTY,
                            tolerance=g.TOLERANCE, tolerance_frames=g.TOLERANCE_FRAMES, lowpass=g.LOWPASS,
                            temporal_decay=g.TEMPORAL_DECAY, absent_frames_off_target=g.ABSENT_FRAMES_OFF_TARGET,
                            fd_step=g.FD_STEP, fd_freeze_kinks=g.FD_FREEZE_KINKS, max_ratio=g.MAX_RATIO,
                            merge_same_class=g.MERGE_SAME_CLASS, inner_bn=g.INNER_BN, lambda_rule=g.LAMBDA_RULE,
                            cf_task_loss=g.CF_TASK_LOSS)
    return Objective(loss_func=cfg.MODEL.LOSS_FUNC, guidance=spec)


def build_train_loader(cfg: CfgNode, *, ctx: DistContext | None = None) -> DataLoader:
    """This process's training micro-batches (layout of :mod:`stal.data.batch`).

    The loader's ``batch_sampler`` is a :class:`stal.engine.distributed.GlobalBatchSampler`
    (call its ``set_epoch``); ``ctx`` is the process's DistContext (default: one process).
    """
    dataset = build_train_dataset(cfg)
    sampler = GlobalBatchSampler(length=len(dataset), global_batch=cfg.TRAIN.BATCH_SIZE,
                                 accum_steps=cfg.TRAIN.GRAD_ACCUM_STEPS, seed=cfg.RNG_SEED,
                                 ctx=ctx or DistContext())
    # Own generator: worker seeds never draw from (and so never shift) the global torch RNG.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATA_LOADER.NUM_WORKERS,
                      collate_fn=collate_train, generator=torch.Generator().manual_seed(cfg.RNG_SEED),
                      pin_memory=cfg.NUM_GPUS > 0)
