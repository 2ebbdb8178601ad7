"""Weak supervision: synthesized clips with clip-level labels, for MIL detectors (stal.models.mil).

The paper's weakly supervised UCF101-24 setting: each training clip has one label and no
box labels; the boxes are person proposals whose scores the detector pools into one row per
clip. Synthesized clips (tubes over backgrounds, optionally BatchMixed with
``keep_sources``) know every pasted actor, so the proposals are the actors' keyframe boxes
and the guidance target is the voxels of the actors that carry the clip's label.

Item layout (stacked by :func:`stal.data.batch.collate_train`, so the batch is the
training layout with one label row per clip):

* ``clip`` float32 (3, T, H, W), normalized.
* ``boxes`` float32 (P, 4): proposals, input pixels x1, y1, x2, y2 at the keyframe, one per
  source visible there (any label); P may be 0 (the MIL model then scores the whole frame).
* ``labels``: the clip label, int64 (1,) (single-label) or float32 (1, C) multi-hot.
* ``mask`` float32 (T, H, W) and ``source_masks`` float32 (1, T, H, W): the summed visible
  weight (clipped to 1) of the sources carrying the clip label, so per-source guidance takes
  clip row b against ``source_masks[b]``.

The clip label (:func:`clip_label`): single-label, the class whose sources have the most
visible weight in the whole clip (ties: the lower class), so a BatchMix cuboid that covers
most of one clip's actor hands the clip to the other clip's action; multi-label, every class
of a visible source.

Region provenance (:func:`region_weak_item`, the partner-scene benchmark ``TRAIN.DATASET
demo_weak``): the clip label is the *first* input's actor's class (source 0), the proposals
are every actor's keyframe box, and the target is the BatchMix region (inside or outside the
cuboid ``info["cuboid_tyx"]``, every voxel of it, background included) of each actor carrying
that label: the first clip's half, or the whole frame when the partner's actor has the same class.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from stal.data.batch import normalize_clip
from stal.data.synthesized import SynthesisDataset, sample_rng
from stal.errors import DataError
from stal.structures import Sample, clip_as_float
from stal.synthesis.mixing import cuboid_mask
from stal.synthesis.transforms import apply


def clip_label(sample: Sample, *, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(label, carriers): the clip label (int64 scalar, or float32 (C,) multi-hot when the
    sample's labels are (K, C)) and bool (K,), the sources carrying it.

    DataError when no labelled source is visible anywhere in the clip (nothing to label).
    """
    weight = sample.provenance.source_totals()  # (K,) visible weight of each source
    visible = weight > 0
    labels = np.asarray(sample.labels)
    if not visible.any():
        raise DataError("no labelled source is visible in the clip")
    if labels.ndim == 2:
        carriers = visible & (labels > 0).any(1)
        return (labels[carriers].max(0) > 0).astype(np.float32), carriers
    per_class = np.bincount(labels[visible], weights=weight[visible], minlength=num_classes)
    label = np.int64(per_class.argmax())
    return label, visible & (labels == label)


def weak_item(sample: Sample, *, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> dict:
    """One training item of the weak layout (module docstring) from a synthesized Sample."""
    T, H, W, _ = sample.clip.shape
    label, carriers = clip_label(sample, num_classes=num_classes)
    key = sample.boxes[:, sample.keyframe]
    proposals = key[~np.isnan(key).any(1)] * np.array([W, H, W, H], np.float32)
    mask = np.clip(sample.provenance.sources_alpha(np.flatnonzero(carriers)).sum(0), 0.0, 1.0).astype(np.float32)
    return {"clip": normalize_clip(clip_as_float(sample.clip), mean, std),
            "boxes": torch.from_numpy(np.ascontiguousarray(proposals, np.float32)),
            "labels": torch.from_numpy(np.asarray(label)[None]),
            "mask": torch.from_numpy(mask), "source_masks": torch.from_numpy(mask[None])}


def region_weak_item(sample: Sample, *, mean: Sequence[float], std: Sequence[float]) -> dict:
    """One training item of the weak layout with region provenance from a BatchMix sample whose
    sources each lie wholly on one side of its cuboid (:class:`stal.synthesis.mixing.HalfFramePartnerMix`).

    labels int64 (1,): the class of source 0 (the first input's actor). boxes (P, 4): every
    source visible at the keyframe, input pixels x1, y1, x2, y2. mask (T, H, W) and
    source_masks (1, T, H, W): 1 over the cuboid side (inside = from the second input) of each
    source with that label, 0 elsewhere. Needs single-label sources and no transforms after
    the mix (the cuboid is read from ``info``).
    """
    T, H, W, _ = sample.clip.shape
    labels = np.asarray(sample.labels)
    if labels.ndim != 1 or "cuboid_tyx" not in sample.info:
        raise DataError("region provenance needs single-label sources and a BatchMix cuboid (info['cuboid_tyx'])")
    taken = cuboid_mask((T, H, W), sample.info["cuboid_tyx"])
    carriers = np.flatnonzero(labels == labels[0])
    inside = (sample.provenance.sources_alpha(carriers) * taken).sum((1, 2, 3)) > 0  # per carrier: its side
    mask = np.zeros((T, H, W), np.float32)
    mask[taken] = float(inside.any())
    mask[~taken] = float((~inside).any())
    key = sample.boxes[:, sample.keyframe]
    proposals = key[~np.isnan(key).any(1)] * np.array([W, H, W, H], np.float32)
    return {"clip": normalize_clip(clip_as_float(sample.clip), mean, std),
            "boxes": torch.from_numpy(np.ascontiguousarray(proposals, np.float32)),
            "labels": torch.from_numpy(labels[:1].astype(np.int64)),
            "mask": torch.from_numpy(mask), "source_masks": torch.from_numpy(mask[None])}


class WeakSynthesisDataset(SynthesisDataset):
    """``length`` weakly labelled items per epoch from ``synthesizer`` followed by ``transforms``.

    Item ``i`` of epoch ``e`` draws from the generator ``(seed, e, i)`` (the same anywhere, as
    :class:`stal.data.synthesized.SynthesisDataset`, whose epoch and length bookkeeping it
    shares); a draw in which no labelled source is visible (a BatchMix cuboid or a crop removed
    every actor) is followed by a new draw from the same generator, up to ``max_draws`` in all.
    """

    def __init__(self, *, synthesizer: Callable[[np.random.Generator], Sample],
                 transforms: Sequence[Callable] = (), length: int, seed: int, num_classes: int,
                 mean: Sequence[float], std: Sequence[float], max_draws: int = 8):
        super().__init__(synthesizer=synthesizer, transforms=transforms, length=length, seed=seed,
                         mean=mean, std=std)
        self.num_classes, self.max_draws = num_classes, max_draws

    def sample(self, index: int) -> Sample:
        """The transformed Sample of item ``index`` (with at least one visible labelled source)."""
        rng = sample_rng(self.seed, self.epoch, index)
        for _ in range(self.max_draws):
            s = apply(self.synthesizer(rng), rng, self.transforms)
            if s.provenance.source_totals().any():  # weights are >= 0
                return s
        raise DataError(f"{self.max_draws} synthesized clips in a row without a visible actor (item {index}, "
                        f"epoch {self.epoch}): check the tube bank and SYNTHESIS.MIX_AREA_MAX / CROP_SCALE_MIN")

    def __getitem__(self, index: int) -> dict:
        return weak_item(self.sample(index), num_classes=self.num_classes, mean=self.mean, std=self.std)


class RegionWeakDataset(WeakSynthesisDataset):
    """:class:`WeakSynthesisDataset` whose items are :func:`region_weak_item`: the label of the
    first input's actor, the target its BatchMix region (``TRAIN.DATASET demo_weak``)."""

    def __getitem__(self, index: int) -> dict:
        return region_weak_item(self.sample(index), mean=self.mean, std=self.std)
