#!/usr/bin/env python
"""Where trained models look: input-gradient maps of several runs on the same clips.

    python tools/saliency.py --runs output/seeds/demo_baseline_seed0 output/seeds/demo_guided_seed0 \
        --out docs/saliency_demo.png [--num 4] [--seed 7]

Each run directory must hold the ``config.yaml`` and ``checkpoints/`` that tools/train_net.py
wrote. The clips are synthesized from the first run's demo bank with scenes drawn
independently of the actions (the case a scene shortcut gets wrong), so every model sees the
same pixels. For each clip the PNG has one row: the keyframe with the actors' keyframe boxes
(green), then per run the magnitude of d(sum over the actors of log p(label)) / d(clip),
summed over colour channels and frames, each map scaled to its own 99th percentile. The
printed table gives, per run and clip, the share of that gradient's energy on the actors'
voxels (provenance mask) and inside their per-frame boxes, and each actor's p(true label).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import numpy as np
import torch
from PIL import Image, ImageDraw

from stal.config import load_cfg
from stal.data import build as data_build
from stal.data.batch import collate_train
from stal.engine import builders
from stal.engine.checkpoint import load_model_weights, load_newest
from stal.errors import StalError
from stal.io.atomic import atomic_open
from stal.structures import clip_as_float

SCALE = 3  # upscaling of the 64-pixel demo frames in the picture


def load_run(run_dir: str):
    """(cfg, model in eval mode) of a finished run directory; StalError when incomplete."""

    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise StalError(f"{cfg_path} not found: pass a directory written by tools/train_net.py")
    cfg = load_cfg(cfg_path)
    found = load_newest(os.path.join(run_dir, "checkpoints"))
    if found is None:
        raise StalError(f"no checkpoint in {run_dir}/checkpoints: train the run first")
    model = builders.build_model(cfg)
    load_model_weights(model, found[1], path=found[0])
    return cfg, model.eval()


def saliency(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(|g| summed over channels, (B, T, H, W); p(true label) per ROI, (R,)) for a softmax model."""
    clip = batch["clip"].clone().requires_grad_(True)
    logp = model(clip, batch["rois"]).log_softmax(-1)
    chosen = logp.gather(1, batch["labels"][:, None])[:, 0]
    (g,) = torch.autograd.grad(chosen.sum(), clip)
    return g.abs().sum(1), chosen.detach().exp()


def heat(values: np.ndarray) -> np.ndarray:
    """(H, W) >= 0 -> uint8 RGB (H, W, 3), black -> red -> yellow, scaled to the 99th percentile."""
    v = np.clip(values / max(float(np.percentile(values, 99)), 1e-30), 0.0, 1.0)
    return (np.stack([np.clip(2 * v, 0, 1), np.clip(2 * v - 1, 0, 1), np.zeros_like(v)], -1) * 255).astype(np.uint8)


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized xyxy boxes (K, T, 4), NaN where absent -> bool (T, H, W), their union per frame."""
    out = np.zeros((boxes.shape[1], height, width), bool)
    for k, t in zip(*np.nonzero(~np.isnan(boxes).any(-1))):
        x1, y1, x2, y2 = (boxes[k, t] * [width, height, width, height]).round().astype(int)
        out[t, y1:y2, x1:x2] = True
    return out


def keyframe_with_boxes(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] and normalized xyxy boxes (K, 4) -> uint8 RGB with green box outlines."""
    out = (np.clip(frame, 0, 1) * 255).astype(np.uint8)
    inside = box_masks(boxes[:, None], *frame.shape[:2])[0]
    edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    out[edge] = (0, 255, 0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run directories (config.yaml + checkpoints/)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--num", type=int, default=4, help="clips (rows)")
    p.add_argument("--seed", type=int, default=7, help="synthesis seed of the clips")
    args = p.parse_args(argv)
    try:
        runs = [load_run(r) for r in args.runs]
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    cfg = runs[0][0]
    data = data_build.build_synthesis_dataset(cfg, seed=args.seed, length=args.num, scene_bias=0.0)
    batch = collate_train([data[i] for i in range(args.num)])
    samples = [replace(s, clip=clip_as_float(s.clip)) for s in (data.sample(i) for i in range(args.num))]
    rows = [[keyframe_with_boxes(s.clip[s.keyframe], s.boxes[:, s.keyframe])] for s in samples]
    in_boxes = torch.from_numpy(np.stack([box_masks(s.boxes, *s.clip.shape[1:3]) for s in samples]))
    print("run | clip | energy on actors | energy in their boxes | p(true label) per actor")
    for run_dir, (_, model) in zip(args.runs, runs):
        maps, probs = saliency(model, batch)
        energy = maps.pow(2).double()
        for i in range(args.num):
            rows[i].append(heat(maps[i].sum(0).numpy()))
            on = float((energy[i] * batch["mask"][i]).sum() / energy[i].sum())
            boxed = float((energy[i] * in_boxes[i]).sum() / energy[i].sum())
            mine = [round(float(p), 2) for p in probs[batch["rois"][:, 0] == i]]
            print(f"{os.path.basename(run_dir.rstrip('/'))} | {i} | {on:.3f} | {boxed:.3f} | {mine}")
    sheet = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    image = Image.fromarray(sheet).resize((sheet.shape[1] * SCALE, sheet.shape[0] * SCALE), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    width = rows[0][0].shape[1] * SCALE
    for j, name in enumerate(["keyframe"] + [os.path.basename(r.rstrip("/")) for r in args.runs]):
        draw.text((j * width + 3, 3), name, fill=(255, 255, 255))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_open(args.out, "wb") as f:
        image.save(f, format="PNG")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
