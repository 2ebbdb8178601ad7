"""Torch datasets over synthesized clips, and the batch layout the trainer consumes.

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
from torch.utils.data import Dataset

from stal.data.demo import DemoBank, draw_layout, render_layout, swapped_background
from stal.structures import Sample
from stal.synthesis.compose import composite


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


class DemoSynthesisDataset(Dataset):
    """Training clips synthesized on the fly from the demo bank.

    Sample ``i`` of epoch ``e`` is drawn from a generator seeded by ``(seed, e, i)``, so it is
    the same on any worker or rank and after a resume. Call :meth:`set_epoch` each epoch.
    With ``counterfactual``, items also carry ``clip_cf`` (see the module docstring), drawn
    from a separate generator ``(seed, e, i, 1)`` so that the clips themselves are the same
    as without it.
    """

    def __init__(self, *, bank_path: str, length: int, seed: int, num_frames: int,
                 actors_min: int, actors_max: int, scene_bias: float,
                 mean: Sequence[float], std: Sequence[float], counterfactual: bool = False):
        self.bank = DemoBank(bank_path)
        self.length, self.seed, self.epoch = length, seed, 0
        self.num_frames, self.scene_bias = num_frames, scene_bias
        self.actors = (actors_min, actors_max)
        self.mean, self.std = list(mean), list(std)
        self.counterfactual = counterfactual

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _layout(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        num_actors = int(rng.integers(self.actors[0], self.actors[1] + 1))
        return draw_layout(self.bank, rng, num_frames=self.num_frames, num_actors=num_actors,
                           scene_bias=self.scene_bias)

    def sample(self, index: int) -> Sample:
        return render_layout(self._layout(index))

    def __getitem__(self, index: int) -> dict:
        layout = self._layout(index)
        item = sample_to_item(render_layout(layout), self.mean, self.std)
        if self.counterfactual:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            bg = swapped_background(self.bank, rng, scene_of=layout.labels, num_frames=self.num_frames)
            # Only the pixels: the boxes and provenance are those of the clip above.
            item["clip_cf"] = normalize_clip(composite(bg, layout.placed)[0], self.mean, self.std)
        return item
