"""The paste synthesizer: actor tubes from a tube bank over clips from a background source.

A synthesizer is any callable ``synth(rng) -> Sample`` (see :class:`Synthesizer`); the
generator is the only source of randomness, so seeding it with ``(seed, epoch, index)``
makes sample i reproducible anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from stal.errors import DataError
from stal.structures import Sample, clip_as_float
from stal.synthesis.compose import Layer, boxes_from_ids, composite_layers, layer_footprint
from stal.synthesis.edges import feather_alpha, match_colour
from stal.synthesis.placement import Placement, PlacementSpec, place_actors
from stal.synthesis.tube_bank import Tube

EDGES = ("hard", "feather")
INTERPOLATIONS = ("nearest", "bilinear")


class Synthesizer(Protocol):
    """Anything that makes one :class:`Sample` from a seeded generator."""

    def __call__(self, rng: np.random.Generator) -> Sample: ...


class BackgroundSource(Protocol):
    """Anything that returns a background clip uint8 (T, H, W, 3) drawn with ``rng``."""

    def clip(self, rng: np.random.Generator, *, num_frames: int, height: int, width: int) -> np.ndarray: ...


class TubeSource(Protocol):
    """A tube bank: ``len``, ``bank[i] -> Tube`` and per-tube metadata in ``entries``."""

    entries: list[dict]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Tube: ...


@dataclass
class ArrayBackgrounds:
    """Background clips held in memory: uint8 (M, T_b, H, W, 3); a random clip and start frame.

    The clips must already have the synthesis size (benchmarks and tests; banks of real
    footage go through :class:`stal.synthesis.backgrounds.BackgroundBank`).
    """

    clips: np.ndarray

    def clip(self, rng: np.random.Generator, *, num_frames: int, height: int, width: int) -> np.ndarray:
        M, Tb, Hb, Wb, _ = self.clips.shape
        if (Hb, Wb) != (height, width) or Tb < num_frames:
            raise ValueError(f"background clips are {Tb}x{Hb}x{Wb}, need >= {num_frames}x{height}x{width}")
        i, t0 = int(rng.integers(0, M)), int(rng.integers(0, Tb - num_frames + 1))
        return self.clips[i, t0:t0 + num_frames]


def resize_rgba(rgba: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """uint8 (n, h, w, 4) -> uint8 (n, height, width, 4).

    "nearest" copies source pixels (exact colours); "bilinear" resamples premultiplied colour
    (Pillow, antialiased when shrinking) so transparent pixels do not bleed their colour in.
    """
    n, h, w, _ = rgba.shape
    if (h, w) == (height, width):
        return rgba
    if interpolation == "nearest":
        ys = ((np.arange(height) + 0.5) * (h / height)).astype(np.int64)
        xs = ((np.arange(width) + 0.5) * (w / width)).astype(np.int64)
        # One uint32 per RGBA pixel: the column gather moves 4 bytes per element, not 1.
        pixels = np.ascontiguousarray(rgba).view(np.uint32)[..., 0]
        return pixels.take(ys, axis=1).take(xs, axis=2)[..., None].view(np.uint8)
    # Pillow resamples RGBA through premultiplied RGBa and widens the filter when shrinking.
    out = np.empty((n, height, width, 4), np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[i]), "RGBA").resize((width, height), Image.BILINEAR))
    return out


class PasteSynthesizer:
    """Actor tubes pasted over a background clip; ``synth(rng) -> Sample``.

    The Sample: ``clip`` (T, H, W, 3) uint8 or float32 (``clip_dtype``), ``background``
    (the clip before pasting, same dtype), ``boxes`` float32 (K, T, 4) normalized xyxy from
    the provenance ids (NaN where a source owns no voxel), ``labels`` int64 (K,) (first label
    of each tube) or float32 multi-hot (K, C) when ``multi_label``, keyframe T // 2, and the
    provenance. Source k is layer k (later layers on top).
    """

    def __init__(self, *, tubes: TubeSource, backgrounds: BackgroundSource, placement: PlacementSpec,
                 num_frames: int, height: int, width: int, num_classes: int, multi_label: bool = False,
                 edge: str = "hard", feather_radius: int = 2, colour_match: float = 0.0,
                 interpolation: str = "nearest", clip_dtype: str = "float32"):
        if edge not in EDGES:
            raise ValueError(f"edge {edge!r}: expected one of {EDGES}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r}: expected one of {INTERPOLATIONS}")
        if clip_dtype not in ("uint8", "float32"):
            raise ValueError(f"clip_dtype {clip_dtype!r}: expected 'uint8' or 'float32'")
        self.tubes, self.backgrounds, self.placement = tubes, backgrounds, placement
        self.T, self.H, self.W = num_frames, height, width
        self.num_classes, self.multi_label = num_classes, multi_label
        self.edge, self.feather_radius, self.colour_match = edge, feather_radius, colour_match
        self.interpolation, self.clip_dtype = interpolation, clip_dtype
        classes = getattr(tubes, "classes", None)
        if classes is not None and len(classes) > num_classes:
            raise DataError(f"{getattr(tubes, 'root', 'tube bank')}: {len(classes)} classes {list(classes)}, "
                            f"but the model predicts {num_classes} (MODEL.NUM_CLASSES)")
        self._soft: dict[int, bool] = {}
        root = getattr(tubes, "root", "")
        self._meta = [(e["frames"], e["height"], e["width"], e.get("actor_height", e["height"]),
                       f"{root}/{e['file']}" if root else e["file"]) for e in tubes.entries]

    def __call__(self, rng: np.random.Generator) -> Sample:
        background = np.ascontiguousarray(self.backgrounds.clip(rng, num_frames=self.T, height=self.H, width=self.W))
        placements = place_actors(rng, self.placement, tubes=self._meta, num_frames=self.T,
                                  height=self.H, width=self.W)
        layers = [self._layer(p, background) for p in placements]
        if self.clip_dtype == "float32":
            background = clip_as_float(background)
        clip, prov = composite_layers(background, layers)
        regions = [layer_footprint(layer, self.H, self.W) for layer in layers]
        boxes = boxes_from_ids(prov.ids, len(layers), regions)
        labels = self._labels([self.tubes[p.tube].labels for p in placements])
        info = {"tubes": [self._meta[p.tube][4] for p in placements]}
        return Sample(clip=clip, boxes=boxes, labels=labels, keyframe=self.T // 2, provenance=prov,
                      background=background, info=info)

    def _layer(self, p: Placement, background: np.ndarray) -> Layer:
        """The placed tube as a Layer: only the used frames are scaled, flipped and edge-treated."""
        tube = self.tubes[p.tube]
        used = p.frames[p.frames >= 0]
        first = int(used.min())
        last = int(used.max()) + 1
        rgba = resize_rgba(tube.rgba[first:last], p.height, p.width, self.interpolation)
        if p.flip:
            rgba = rgba[:, :, ::-1]
        if self.edge == "feather":
            rgba = feather_alpha(rgba, self.feather_radius)
        # Nearest resizing and flips keep a hard (0/255) mask hard; the soft pass is then skipped.
        soft = self.edge == "feather" or self.interpolation == "bilinear" or self._soft_alpha(p.tube, tube)
        frames = np.where(p.frames >= 0, p.frames - first, -1)
        if self.colour_match > 0:
            t = int(np.flatnonzero(p.frames >= 0)[0])
            y0, x0 = max(int(p.top[t]), 0), max(int(p.left[t]), 0)
            ref = background[t, y0:y0 + p.height, x0:x0 + p.width]
            rgba = match_colour(rgba, ref, self.colour_match)
        return Layer(rgba=rgba, frames=frames, top=p.top, left=p.left, soft=soft)

    def _soft_alpha(self, index: int, tube: Tube) -> bool:
        if index not in self._soft:
            a = tube.rgba[..., 3]
            self._soft[index] = bool(((a != 0) & (a != 255)).any())
        return self._soft[index]

    def _labels(self, labels: list[list[int]]) -> np.ndarray:
        if not self.multi_label:
            return np.array([lab[0] for lab in labels], np.int64)
        hot = np.zeros((len(labels), self.num_classes), np.float32)
        for k, lab in enumerate(labels):
            hot[k, lab] = 1.0
        return hot
