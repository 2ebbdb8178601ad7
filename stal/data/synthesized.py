"""Torch datasets over synthesized clips: any synthesizer (:class:`SynthesisDataset`) and the
embedded demo's layouts (:class:`DemoSynthesisDataset`).

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
from stal.demo.video import DemoBank, draw_layout, render_layout, swapped_background
from stal.errors import ConfigError
from stal.structures import Sample, clip_as_float
from stal.synthesis.compose import composite, swap_background
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
