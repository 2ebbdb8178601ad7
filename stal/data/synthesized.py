"""The torch dataset over synthesized clips (any synthesizer; the embedded demo is one).

Sample ``i`` of epoch ``e`` is ``transforms(synthesizer(rng))`` with ``rng`` seeded by
``(seed, e, i)``: the same on any worker, rank or resume. Items use the training batch
layout of :mod:`stal.data.batch`. With ``counterfactual`` (GUIDANCE.MODE
counterfactual) items also carry ``clip_cf``: the same sources over another background
clip drawn from the synthesizer's background source with the generator ``(seed, e, i, 1)``,
then the same transforms (the transform draws are replayed), so rois and labels hold for it.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from stal.data.batch import normalize_clip, sample_to_item
from stal.errors import ConfigError
from stal.structures import Sample, clip_as_float
from stal.synthesis.compose import swap_background
from stal.synthesis.paste import Synthesizer
from stal.synthesis.transforms import Transform, apply


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in ``epoch`` (every synthesis draw comes from it)."""
    return np.random.default_rng([seed, epoch, index])


class SynthesisDataset(Dataset):
    """``length`` samples per epoch from ``synthesizer`` followed by ``transforms``."""

    def __init__(self, *, synthesizer: Synthesizer, transforms: Sequence[Transform] = (), length: int,
                 seed: int, mean: Sequence[float], std: Sequence[float], counterfactual: bool = False):
        if counterfactual and getattr(synthesizer, "backgrounds", None) is None:
            raise ConfigError("GUIDANCE.MODE counterfactual re-renders the sources over another background: "
                              f"it needs a paste synthesizer (with a background source), not {type(synthesizer).__name__} "
                              "(SYNTHESIS.MIXER must be none)")
        self.counterfactual = counterfactual
        self.synthesizer, self.transforms = synthesizer, list(transforms)
        self.length, self.seed, self.epoch = length, seed, 0
        self.mean, self.std = list(mean), list(std)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> Sample:
        rng = sample_rng(self.seed, self.epoch, index)
        return apply(self.synthesizer(rng), rng, self.transforms)

    def pair(self, index: int) -> tuple[Sample, Sample]:
        """(sample, its counterfactual): the same sources over another background, same transforms."""
        rng = sample_rng(self.seed, self.epoch, index)
        raw = self.synthesizer(rng)
        s = self.synthesizer
        other = s.backgrounds.clip(np.random.default_rng([self.seed, self.epoch, index, 1]),
                                   num_frames=s.T, height=s.H, width=s.W)
        replay = copy.deepcopy(rng)  # the transforms of the swap must draw what the sample's drew
        return apply(raw, rng, self.transforms), apply(swap_background(raw, other), replay, self.transforms)

    def __getitem__(self, index: int) -> dict:
        if not self.counterfactual:
            s = self.sample(index)
            return sample_to_item(replace(s, clip=clip_as_float(s.clip), background=None), self.mean, self.std)
        s, cf = self.pair(index)
        item = sample_to_item(replace(s, clip=clip_as_float(s.clip), background=None), self.mean, self.std)
        item["clip_cf"] = normalize_clip(cf.clip, self.mean, self.std)
        return item
