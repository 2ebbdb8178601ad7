"""Mixing synthesizers: CutMix (images), BatchMix / cuboid mix (clips), difference masks.

A mixer is ``mixer(rng, first, second) -> Sample`` (:class:`Mixer`): it combines two
samples of equal (T, H, W) and records which voxels came from which, as two labelled
sources with hard provenance: source 1 = ``first`` where it stays visible, source 2 = the
part taken from ``second``. :class:`MixingSynthesizer` turns a sample source and a mixer
into a :class:`~stal.synthesis.paste.Synthesizer` (``synth(rng) -> Sample``).

Labels of the mixed sample: int64 (2,) when both inputs carry one class (``num_classes``
None), else float32 multi-hot (2, C) holding each input's classes (the union over its
sources). A source's share of the clip is ``provenance.alpha[k].mean()`` (CutMix's lambda).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from stal.errors import DataError
from stal.structures import Provenance, Sample
from stal.synthesis.compose import boxes_from_ids


class Mixer(Protocol):
    def __call__(self, rng: np.random.Generator, first: Sample, second: Sample) -> Sample: ...


def clip_labels(sample: Sample, num_classes: int | None) -> np.ndarray:
    """A sample's clip-level label: its single class (int) or the multi-hot union (C,)."""
    labels = np.asarray(sample.labels)
    if num_classes is None:
        flat = np.unique(labels if labels.ndim == 1 else np.flatnonzero(labels.any(0)))
        if flat.size != 1:
            raise DataError(f"mixing needs one class per input without num_classes, got labels {labels.tolist()}")
        return np.int64(flat[0])
    hot = np.zeros(num_classes, np.float32)
    if labels.ndim == 2:
        hot[:] = labels.max(0) if len(labels) else 0
    else:
        hot[labels[labels >= 0]] = 1.0
    return hot


def _two_sources(first: Sample, second: Sample, clip: np.ndarray, taken: np.ndarray,
                 num_classes: int | None, info: dict) -> Sample:
    """The mixed Sample: ``taken`` bool (T, H, W) marks voxels from ``second``."""
    ids = np.where(taken, 2, 1).astype(np.int16)
    alpha = np.stack([~taken, taken]).astype(np.float32)
    labels = np.stack([clip_labels(first, num_classes), clip_labels(second, num_classes)])
    return Sample(clip=clip, boxes=boxes_from_ids(ids, 2), labels=labels, keyframe=first.keyframe,
                  provenance=Provenance(ids=ids, alpha=alpha), background=first.clip, info=info)


def _all_sources(first: Sample, second: Sample, clip: np.ndarray, taken: np.ndarray,
                 num_classes: int | None, info: dict) -> Sample:
    """The mixed Sample keeping every source of both inputs: ``first``'s K1 sources where
    ``taken`` (bool (T, H, W)) is False, then ``second``'s K2 sources where it is True (source
    ids K1 + k). Each keeps its own labels; its visible weight is its alpha inside its side."""
    if first.provenance is None or second.provenance is None:
        raise DataError("mixing with keep_sources needs synthesized inputs (with provenance)")
    k1 = first.provenance.num_sources
    ids2 = second.provenance.ids
    ids = np.where(taken, np.where(ids2 > 0, ids2 + k1, 0), first.provenance.ids).astype(np.int16)
    alpha = np.concatenate([first.provenance.alpha * ~taken, second.provenance.alpha * taken]).astype(np.float32)
    labels = [np.asarray(first.labels), np.asarray(second.labels)]
    if labels[0].ndim != labels[1].ndim:  # one single-label, one multi-hot input: both multi-hot
        labels = [_multi_hot(lab, num_classes) for lab in labels]
    background = None
    if first.background is not None and second.background is not None:
        background = np.where(taken[..., None], second.background, first.background)
    return Sample(clip=clip, boxes=boxes_from_ids(ids, len(alpha)), labels=np.concatenate(labels),
                  keyframe=first.keyframe, provenance=Provenance(ids=ids, alpha=alpha), background=background,
                  info=info)


def _multi_hot(labels: np.ndarray, num_classes: int | None) -> np.ndarray:
    """(K,) class indices -> float32 (K, C) multi-hot; (K, C) unchanged."""
    if labels.ndim == 2:
        return labels.astype(np.float32)
    if num_classes is None:
        raise DataError("mixing single-label and multi-hot sources needs num_classes")
    hot = np.zeros((len(labels), num_classes), np.float32)
    hot[np.arange(len(labels)), labels] = 1.0
    return hot


def _check_pair(first: Sample, second: Sample) -> None:
    if first.clip.shape != second.clip.shape or first.clip.dtype != second.clip.dtype:
        raise DataError(f"mixing needs clips of equal shape and dtype, got {first.clip.shape} {first.clip.dtype} "
                        f"and {second.clip.shape} {second.clip.dtype}")


@dataclass(frozen=True)
class CuboidMix:
    """BatchMix: a spatio-temporal cuboid of ``second`` pasted into ``first``.

    The cuboid covers ``area_min..area_max`` of the frame (square root of it along each
    side, centre uniform, clipped to the frame as in CutMix) and ``duration_min..duration_max``
    of the frames (a contiguous run). With durations 1.0 it is CutMix (every frame, T = 1
    for images).

    ``keep_sources`` False: two sources, ``first`` outside the cuboid and ``second`` inside it
    (labels: each input's clip label, see :func:`clip_labels`). True (weak supervision over
    synthesized inputs): every pasted actor of both inputs stays a source of its own, cut to
    its side of the cuboid, with its own labels and boxes (:func:`_all_sources`).
    """

    area_min: float = 0.1
    area_max: float = 0.5
    duration_min: float = 0.5
    duration_max: float = 1.0
    num_classes: int | None = None
    keep_sources: bool = False

    def __call__(self, rng: np.random.Generator, first: Sample, second: Sample) -> Sample:
        _check_pair(first, second)
        T, H, W = first.clip.shape[:3]
        side = np.sqrt(rng.uniform(self.area_min, self.area_max))
        h, w = max(1, int(round(H * side))), max(1, int(round(W * side)))
        cy, cx = int(rng.integers(0, H)), int(rng.integers(0, W))
        y0, y1 = max(cy - h // 2, 0), min(cy - h // 2 + h, H)
        x0, x1 = max(cx - w // 2, 0), min(cx - w // 2 + w, W)
        length = max(1, int(round(T * rng.uniform(self.duration_min, self.duration_max))))
        t0 = int(rng.integers(0, T - length + 1))
        clip = first.clip.copy()
        clip[t0:t0 + length, y0:y1, x0:x1] = second.clip[t0:t0 + length, y0:y1, x0:x1]
        taken = np.zeros((T, H, W), bool)
        taken[t0:t0 + length, y0:y1, x0:x1] = True
        info = {"cuboid_tyx": [t0, t0 + length, y0, y1, x0, x1], "first": first.info, "second": second.info}
        mix = _all_sources if self.keep_sources else _two_sources
        return mix(first, second, clip, taken, self.num_classes, info)


def CutMix(*, area_min: float = 0.1, area_max: float = 0.5, num_classes: int | None = None) -> CuboidMix:
    """CutMix for images (T = 1) or clips: the rectangle spans every frame."""
    return CuboidMix(area_min=area_min, area_max=area_max, duration_min=1.0, duration_max=1.0,
                     num_classes=num_classes)


@dataclass(frozen=True)
class DifferenceMask:
    """Provenance from an (original, edited) pair: voxels where they differ are the edit.

    ``first`` is the original, ``second`` the edited version; a voxel belongs to the edit
    (source 2, ``second``'s labels) when some channel differs by more than ``threshold``
    (in the clip's units: 0..1 for float clips, 0..255 for uint8). The clip is ``second``'s.
    """

    threshold: float = 0.0
    num_classes: int | None = None

    def __call__(self, rng: np.random.Generator, first: Sample, second: Sample) -> Sample:
        _check_pair(first, second)
        diff = np.abs(first.clip.astype(np.float32) - second.clip.astype(np.float32)).max(-1)
        taken = diff > self.threshold
        return _two_sources(first, second, second.clip.copy(), taken, self.num_classes,
                            {"difference_threshold": self.threshold})


def cuboid_mask(shape: tuple[int, int, int], cuboid_tyx: list[int]) -> np.ndarray:
    """bool (T, H, W): True inside the cuboid ``[t0, t1, y0, y1, x0, x1]`` (``info["cuboid_tyx"]``
    of a BatchMix sample: frames t0..t1-1, rows y0..y1-1, columns x0..x1-1, from the second input)."""
    t0, t1, y0, y1, x0, x1 = cuboid_tyx
    taken = np.zeros(shape, bool)
    taken[t0:t1, y0:y1, x0:x1] = True
    return taken


class SceneSynthesizer(Protocol):
    """A synthesizer whose scene can be paired with a given class (:class:`stal.synthesis.paste.PasteSynthesizer`)."""

    def __call__(self, rng: np.random.Generator, *, scene_class: int | None = None) -> Sample: ...


class HalfFramePartnerMix:
    """``synth(rng) -> Sample``: the partner-scene BatchMix pair of weak STAL (issue 18).

    halves[s] and partners[s] (s = 0 left, 1 right) render a one-actor clip whose actor stays
    inside half s of the frame (columns ``[0, W // 2)`` / ``[W // 2, W)``): ``halves`` over a
    scene independent of the actor, ``partners`` over the scene of ``scene_class`` with their
    own scene bias (rho) else any scene. A draw: the side s of the first clip (uniform), the
    first clip from ``halves[s]``, its actor's class y (the label), the partner clip from
    ``partners[1 - s]`` with ``scene_class=y``; the partner's half is pasted into the first
    clip in every frame (a half-frame BatchMix cuboid, ``info["cuboid_tyx"]``). So the pasted
    half's scene goes with the first clip's label with probability rho + (1 - rho) / scenes,
    while the first clip's own scene is uniform.

    The Sample keeps both actors as sources (:func:`_all_sources`): source 0 the first clip's
    actor, source 1 the partner's; labels int64 (2,) (``num_classes`` None) as drawn.
    """

    def __init__(self, *, halves: tuple[SceneSynthesizer, SceneSynthesizer],
                 partners: tuple[SceneSynthesizer, SceneSynthesizer], num_classes: int | None = None):
        self.halves, self.partners, self.num_classes = tuple(halves), tuple(partners), num_classes

    def __call__(self, rng: np.random.Generator) -> Sample:
        side = int(rng.integers(0, 2))
        first = self.halves[side](rng)
        label = int(np.asarray(first.labels)[0])
        second = self.partners[1 - side](rng, scene_class=label)
        _check_pair(first, second)
        T, H, W = first.clip.shape[:3]
        cuboid = [0, T, 0, H, W // 2, W] if side == 0 else [0, T, 0, H, 0, W // 2]
        taken = cuboid_mask((T, H, W), cuboid)
        clip = np.where(taken[..., None], second.clip, first.clip)
        info = {"cuboid_tyx": cuboid, "first_side": side, "partner_scene_paired_with": label,
                "first": first.info, "second": second.info}
        return _all_sources(first, second, clip, taken, self.num_classes, info)


class MixingSynthesizer:
    """``synth(rng) -> Sample``: draw two samples from ``source`` and mix them."""

    def __init__(self, *, source: Callable[[np.random.Generator], Sample], mixer: Mixer):
        self.source, self.mixer = source, mixer

    def __call__(self, rng: np.random.Generator) -> Sample:
        first = self.source(rng)
        second = self.source(rng)
        return self.mixer(rng, first, second)


def mix_batch(rng: np.random.Generator, samples: list[Sample], mixer: Mixer) -> list[Sample]:
    """BatchMix within a batch: sample i is mixed with sample perm[i] (a random derangement-free
    permutation; i may meet itself only in a batch of one)."""
    perm = rng.permutation(len(samples))
    return [mixer(rng, samples[i], samples[int(j)]) for i, j in enumerate(perm)]
