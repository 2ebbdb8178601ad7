"""Evaluation after (or during) training: :func:`test` (frame-mAP on the test split, or the WSOL
metrics of an image task, plus guidance diagnostics on held-out synthesized clips).

With several processes each rank runs the model on its contiguous share of the clips
(:func:`shard`); the detections are gathered in dataset order (so ties in score keep the
one-process order) and the diagnostics' sums are added up: the result equals one process's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Subset

from stal.data import build as data_build
from stal.data.ava import collate_eval
from stal.data.batch import collate_train
from stal.engine.distributed import DistContext, gather_objects
from stal.engine.evaluate_wsol import evaluate_wsol
from stal.engine.trainer import to_device
from stal.evaluation.frame_map import ava_frame_map
from stal.formats.ava import AvaTable, write_ava_csv
from stal.guidance.attribution import energy_fraction
from stal.guidance.penalty import guidance_score
from stal.losses import class_probabilities
from stal.progress import progress


def shard(dataset, ctx: DistContext | None):
    """This rank's contiguous share of ``dataset`` (all of it for one process)."""
    if ctx is None or not ctx.active:
        return dataset
    n = len(dataset)
    return Subset(dataset, range(ctx.rank * n // ctx.world_size, (ctx.rank + 1) * n // ctx.world_size))


@torch.no_grad()
def predict_detections(model: torch.nn.Module, dataset, *, batch_size: int, loss_func: str,
                       class_ids: list[int]) -> AvaTable:
    """Run the detector on every keyframe's person boxes: one row per (box, evaluated class).

    ``class_ids`` are the label-map ids (1-based); the model's output j scores class j + 1.
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_eval)
    videos, seconds, boxes, actions, scores = [], [], [], [], []
    cols = np.asarray(class_ids) - 1
    device = next(model.parameters()).device
    # A MIL model (weak supervision) pools its boxes into clip rows; here every box is scored.
    score_boxes = getattr(model, "proposal_logits", model)
    for batch in progress(loader, desc="test", unit="batch", leave=False):
        logits = score_boxes(batch["clip"].to(device), batch["rois"].to(device))
        probs = class_probabilities(logits, loss_func=loss_func).float().cpu().numpy()
        n = len(batch["keys"])
        videos.append(np.repeat(np.array([k[0] for k in batch["keys"]], dtype=object), len(cols)))
        seconds.append(np.repeat(np.array([k[1] for k in batch["keys"]], np.int64), len(cols)))
        boxes.append(np.repeat(batch["boxes_norm"].numpy(), len(cols), axis=0))
        actions.append(np.tile(np.asarray(class_ids, np.int64), n))
        scores.append(probs[:, cols].reshape(-1))
    if not videos:
        return AvaTable.empty()
    return AvaTable(video=np.concatenate(videos), timestamp=np.concatenate(seconds),
                    boxes=np.concatenate(boxes).astype(np.float32), action=np.concatenate(actions),
                    extra=np.concatenate(scores).astype(np.float32))


def evaluate_frame_map(model: torch.nn.Module, split: dict, *, batch_size: int,
                       loss_func: str, ctx: DistContext | None = None) -> tuple[dict, AvaTable]:
    """Frame-mAP (AVA semantics) of ``model`` on ``split`` (see builders.build_test_split).

    Collective with ``ctx``: every rank must call it; every rank gets the result.
    """
    class_ids = sorted(split["labelmap"])
    det = predict_detections(model, shard(split["dataset"], ctx), batch_size=batch_size,
                             loss_func=loss_func, class_ids=class_ids)
    if ctx is not None and ctx.active:
        det = AvaTable.concatenate([t for t in gather_objects(det, ctx) if len(t)] or [AvaTable.empty()])
    result = ava_frame_map(split["gt"], det, split["labelmap"], excluded=split["excluded"])
    return result, det


def evaluate_synthetic(model: torch.nn.Module, dataset, *, batch_size: int, loss_func: str,
                       score: str, attribution: bool = True, ctx: DistContext | None = None) -> dict:
    """On held-out synthesized clips: ROI accuracy and the off-target input-gradient energy fraction.

    The fraction ||(1-m) g||^2 / ||g||^2 (g = d score / d clip, m = provenance target mask)
    is averaged over clips: the direct evidence of what the model's decision depends on.
    ``input_grad_rms`` (root mean square of g over all voxels) exposes gradient masking: a
    model that makes itself locally flat can satisfy a gradient penalty and keep using the
    background. With ``attribution`` False only the accuracy is computed (no input gradient).
    Collective with ``ctx`` (each rank evaluates its share; the sums are combined).
    """
    model.eval()
    loader = DataLoader(shard(dataset, ctx), batch_size=batch_size, shuffle=False, collate_fn=collate_train)
    fractions, squares, voxels, correct, total = [], 0.0, 0, 0, 0
    device = next(model.parameters()).device
    for batch in loader:
        batch = to_device(batch, device)
        clip = batch["clip"].requires_grad_(attribution)
        with torch.set_grad_enabled(attribution):
            logits = model(clip, batch["rois"])
        if attribution:
            s = guidance_score(logits, batch["labels"], score=score, loss_func=loss_func)
            (g,) = torch.autograd.grad(s, clip)
            fractions.append(energy_fraction(g, batch["mask"]).cpu())
            squares += float(g.double().pow(2).sum())
            voxels += g.numel()
        if loss_func == "softmax":
            correct += int((logits.argmax(1) == batch["labels"]).sum())
            total += len(batch["labels"])
    if ctx is not None and ctx.active:
        parts = gather_objects((fractions, squares, voxels, correct, total), ctx)
        fractions = [f for part in parts for f in part[0]]
        squares, voxels, correct, total = (sum(part[i] for part in parts) for i in range(1, 5))
    out = {}
    if attribution:
        out = {"off_target_energy": float(torch.cat(fractions).mean()), "input_grad_rms": (squares / max(voxels, 1)) ** 0.5}
    if total:
        out["synth_val_accuracy"] = correct / total
    return out


# Epoch index of the held-out synthesized clips: never reached by training epochs.
HELD_OUT_EPOCH = 1_000_000


def test(cfg: CfgNode, model: torch.nn.Module, *, out_dir: str | None, ctx: DistContext | None = None) -> dict:
    """Frame-mAP on the test split, plus guidance diagnostics on held-out synthesized clips.

    With ``out_dir`` the detections are written there as ``detections.csv`` (AVA format; rank 0).
    Collective with ``ctx``: every rank evaluates its share of the clips.
    """
    if cfg.TEST.DATASET in data_build.IMAGE_DATASETS:  # one-frame clips: CAM localization metrics
        return {k: v for prefix, ds in data_build.build_image_eval_splits(cfg).items()
                for k, v in evaluate_wsol(model, ds, batch_size=cfg.TEST.BATCH_SIZE, prefix=prefix,
                                          cam_curve_interval=cfg.IMAGE.CAM_CURVE_INTERVAL).items()}
    metrics: dict = {}
    split = data_build.build_test_split(cfg)
    result, det = evaluate_frame_map(model, split, batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC,
                                     ctx=ctx)
    if out_dir is not None and (ctx is None or ctx.is_main):
        write_ava_csv(os.path.join(out_dir, "detections.csv"), det, score=True)
    metrics.update(frame_mAP=result["frame_mAP"], per_class_AP=result["per_class_AP"])
    for prefix, val in data_build.build_val_splits(cfg).items():
        res, _ = evaluate_frame_map(model, val, batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC, ctx=ctx)
        metrics.update({f"{prefix}frame_mAP": res["frame_mAP"], f"{prefix}per_class_AP": res["per_class_AP"]})
    if cfg.TRAIN.DATASET == "demo" and cfg.TEST.NUM_ENERGY_CLIPS > 0:
        metrics.update(_held_out_synthetic(cfg, model, ctx))
    else:
        metrics["off_target_energy"] = None
    if split.get("files"):
        metrics["files"] = split["files"]
    return metrics


def _held_out(cfg: CfgNode, *, scene_bias: float | None):
    held_out = data_build.build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.TEST.NUM_ENERGY_CLIPS,
                                                  scene_bias=scene_bias)
    held_out.set_epoch(HELD_OUT_EPOCH)
    return held_out


def _held_out_synthetic(cfg: CfgNode, model: torch.nn.Module, ctx: DistContext | None) -> dict:
    """Diagnostics on clips synthesized from the training bank with an unseen seed.

    ``off_target_energy`` and ``synth_val_accuracy`` use the training distribution (biased
    scenes) and the guidance score; ``synth_unbiased_accuracy`` draws scenes independently of
    the actions, and there ``off_target_energy_unbiased_logit`` / ``input_grad_rms_unbiased_logit``
    take the input gradient of the labels' logits: unlike the task-loss score it does not vanish
    as a model grows confident, and the scenes no longer carry the label, so a flatter or
    better-aimed gradient there is the model's, not its confidence's. All are validation data:
    method choices are made on them, never on the test split.
    """
    kwargs = dict(batch_size=cfg.TEST.BATCH_SIZE, loss_func=cfg.MODEL.LOSS_FUNC, score=cfg.GUIDANCE.SCORE, ctx=ctx)
    out = evaluate_synthetic(model, _held_out(cfg, scene_bias=None), **kwargs)
    # Same seed and sources, scenes now independent of the actions.
    unbiased = evaluate_synthetic(model, _held_out(cfg, scene_bias=0.0), **{**kwargs, "score": "logit"})
    out["synth_unbiased_accuracy"] = unbiased.get("synth_val_accuracy")
    out["off_target_energy_unbiased_logit"] = unbiased["off_target_energy"]
    out["input_grad_rms_unbiased_logit"] = unbiased["input_grad_rms"]
    return out
