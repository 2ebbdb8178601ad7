"""The batch layout the trainer consumes, and the helpers that build it from a Sample.

Batch layout (training): ``clip`` float32 (B, 3, T, H, W) normalized; ``rois`` float32
(R, 5) rows ``(batch_index, x1, y1, x2, y2)`` in input pixels at the keyframe; ``labels``
int64 (R,); ``mask`` float32 (B, T, H, W) in [0, 1], the union of the labelled sources'
visible weight (the guidance target region); ``source_masks`` float32 (R, T, H, W), for
each ROI row (same order as ``rois`` / ``labels``) the visible weight of that ROI's own
source (``Provenance.alpha[k]``, read with ``sources_alpha``; zero in frames where the source
is absent).
With counterfactual renderings (GUIDANCE.MODE counterfactual), ``clip_cf`` float32
(B, 3, T, H, W): the same actors at the same places over a background of another scene,
so ``rois`` and ``labels`` hold for it too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stal.structures import Sample


def normalize_clip(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(T, H, W, 3) in [0, 1] -> float32 tensor (3, T, H, W), per-channel (x - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float()
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    return (x - m) / s


def sample_to_item(sample: Sample, mean: Sequence[float], std: Sequence[float]) -> dict:
    """A :class:`Sample` as the tensors of one training item (see the module docstring)."""
    T, H, W, _ = sample.clip.shape
    key = sample.boxes[:, sample.keyframe]
    visible = ~np.isnan(key).any(1)
    scale = np.array([W, H, W, H], np.float32)
    return {
        "clip": normalize_clip(sample.clip, mean, std),
        "boxes": torch.from_numpy(key[visible] * scale),
        "labels": torch.from_numpy(np.asarray(sample.labels)[visible]),
        "mask": torch.from_numpy(sample.provenance.target_mask()),
        # Only the sources visible at the keyframe have a ROI: keep their alphas, in ROI order
        # (from the crops: the dense alpha of every source would cost more than the item).
        "source_masks": torch.from_numpy(sample.provenance.sources_alpha(np.flatnonzero(visible))),
    }


def batch_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-clip boxes (K_b, 4) -> ROI rows (R, 5) ``(batch_index, x1, y1, x2, y2)``, float32."""
    rois = [torch.cat([torch.full((len(b), 1), float(i)), b.float()], 1) for i, b in enumerate(boxes)]
    return torch.cat(rois) if rois else torch.zeros(0, 5)


def collate_train(items: list[dict]) -> dict:
    """Stack items into the training batch layout (ROIs get their batch index prepended)."""
    batch = {
        "clip": torch.stack([it["clip"] for it in items]),
        "rois": batch_rois([it["boxes"] for it in items]),
        "labels": torch.cat([it["labels"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
    }
    if all("source_masks" in it for it in items):
        batch["source_masks"] = torch.cat([it["source_masks"] for it in items])
    if all("clip_cf" in it for it in items):
        batch["clip_cf"] = torch.stack([it["clip_cf"] for it in items])
    return batch
