"""Synthesis of training clips with per-voxel provenance (see docs/synthesis.md).

- :mod:`~stal.synthesis.compose`: layered alpha compositing (``composite_layers``, the
  reference of the compiled kernels), boxes from provenance, the counterfactual background swap.
- :mod:`~stal.synthesis.tube_bank`, :mod:`~stal.synthesis.backgrounds`: the on-disk banks.
- :mod:`~stal.synthesis.placement`: where, when and how large actors appear.
- :mod:`~stal.synthesis.paste`, :mod:`~stal.synthesis.mixing`: synthesizers
  (``synth(rng) -> Sample``) and mixers (``mixer(rng, first, second) -> Sample``).
- :mod:`~stal.synthesis.transforms`: provenance-aligned geometric transforms.
- :mod:`~stal.synthesis.extraction`, :mod:`~stal.synthesis.tube_sources`: bank building.
"""

from stal.synthesis.compose import Layer, boxes_from_crops, boxes_from_ids, composite_layers
from stal.synthesis.mixing import CuboidMix, CutMix, DifferenceMask, Mixer, MixingSynthesizer, mix_batch
from stal.synthesis.paste import ArrayBackgrounds, PasteSynthesizer, Synthesizer
from stal.synthesis.placement import PlacementSpec

BatchMix = CuboidMix  # the paper's name for the cuboid mix of clips

__all__ = ["ArrayBackgrounds", "BatchMix", "CuboidMix", "CutMix", "DifferenceMask", "Layer", "Mixer",
           "MixingSynthesizer", "PasteSynthesizer", "PlacementSpec", "Synthesizer",
           "boxes_from_crops", "boxes_from_ids", "composite_layers", "mix_batch"]
