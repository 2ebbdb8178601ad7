"""The paste synthesizer: actor tubes from a tube bank over clips from a background source.

A synthesizer is any callable ``synth(rng) -> Sample`` (see :class:`Synthesizer`); the
generator is the only source of randomness, so seeding it with ``(seed, epoch, index)``
makes sample i reproducible anywhere.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from stal.errors import DataError
from stal.structures import AlphaCrop, Provenance, Sample, clip_as_float
from stal.synthesis.compose import Layer, boxes_from_crops, composite_layers
from stal.synthesis.edges import feather_alpha, match_colour
from stal.synthesis.kernels import compose_hard_nearest, compose_soft_nearest
from stal.synthesis.placement import Placement, PlacementSpec, place_actors
from stal.synthesis.tube_bank import LRUCache, Tube

EDGES = ("hard", "feather")
INTERPOLATIONS = ("nearest", "bilinear")


class Synthesizer(Protocol):
    """Anything that makes one :class:`Sample` from a seeded generator."""

    def __call__(self, rng: np.random.Generator) -> Sample: ...


class BackgroundSource(Protocol):
    """Anything that returns a background clip uint8 (T, H, W, 3) drawn with ``rng``.

    A source with scene labels also has ``num_scenes`` and takes ``scene=k`` (a clip of scene
    k; None: any), which :class:`PasteSynthesizer`'s ``scene_bias`` uses.
    """

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
        return _gather_pixels(rgba, _nearest_index(height, h), _nearest_index(width, w))
    # Pillow resamples RGBA through premultiplied RGBa and widens the filter when shrinking.
    out = np.empty((n, height, width, 4), np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[i]), "RGBA").resize((width, height), Image.BILINEAR))
    return out


def _nearest_index(size: int, source_size: int) -> np.ndarray:
    """int64 (size,): the source row (or column) each output row samples, nondecreasing."""
    return ((np.arange(size) + 0.5) * (source_size / size)).astype(np.int64)


def _gather_pixels(rgba: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint8 (n, len(rows), len(cols), 4): ``rgba[:, rows][:, :, cols]``."""
    # One uint32 per RGBA pixel: the column gather moves 4 bytes per element, not 1.
    pixels = np.ascontiguousarray(rgba).view(np.uint32)[..., 0]
    return pixels.take(rows, axis=1).take(cols, axis=2)[..., None].view(np.uint8)


# The clip value of each uint8 colour value, per clip dtype (float32: as composite_layers
# converts; uint8: None, the kernel copies the bytes).
_COLOUR_LUT = {"uint8": None, "float32": np.arange(256, dtype=np.float32) / np.float32(255)}


def _packed(rgba: np.ndarray) -> np.ndarray:
    """uint32 (n, h, w): one item per pixel of uint8 RGBA (n, h, w, 4) (R in the low byte on the
    little-endian machines the compiled path runs on)."""
    return np.ascontiguousarray(rgba, np.uint8).view(np.uint32)[..., 0]


_LITTLE_ENDIAN = sys.byteorder == "little"


def _alpha_boxes(alpha: np.ndarray) -> np.ndarray:
    """int64 (n, 4): per frame of ``alpha`` (n, h, w), the box (y0, y1, x0, x1) of alpha > 0;
    (h, 0, w, 0) for an empty frame, so that unions by min / max ignore it."""
    n, h, w = alpha.shape
    rows, cols = alpha.any(2), alpha.any(1)
    boxes = np.stack([rows.argmax(1), h - rows[:, ::-1].argmax(1), cols.argmax(1), w - cols[:, ::-1].argmax(1)], 1)
    boxes[~rows.any(1)] = (h, 0, w, 0)
    return boxes.astype(np.int64)


def _row_spans(alpha: np.ndarray) -> np.ndarray:
    """int64 (n, h, 2): per frame and row of ``alpha`` (n, h, w), the first and one-past-last
    column with alpha > 0; (w, 0) for an empty row."""
    n, h, w = alpha.shape
    has = alpha != 0
    spans = np.stack([has.argmax(2), w - has[:, :, ::-1].argmax(2)], -1)
    spans[~has.any(2)] = (w, 0)
    return spans.astype(np.int64)


# Tubes whose alpha statistics a synthesizer keeps (per loader worker; the row spans are a
# few tens of kB per tube: unbounded, a bank of 100k tubes would hold gigabytes).
TUBE_STATS_CACHE = 4096

# Clip frames per crop of a source's visible weight (the compiled path): fewer frames give
# tighter crops (less to zero and to read back), more crops cost more Python calls.
CROP_FRAMES = 4


class PasteSynthesizer:
    """Actor tubes pasted over a background clip; ``synth(rng) -> Sample``.

    The Sample: ``clip`` (T, H, W, 3) uint8 or float32 (``clip_dtype``), ``background``
    (the clip before pasting, same dtype), ``boxes`` float32 (K, T, 4) normalized xyxy from
    the provenance ids (NaN where a source owns no voxel), ``labels`` int64 (K,) (first label
    of each tube) or float32 multi-hot (K, C) when ``multi_label``, keyframe T // 2, and the
    provenance. Source k is layer k (later layers on top).

    scene_bias: with a scene-labelled background source (``num_scenes``), the probability
    that the background's scene is the one numbered like the bottom actor's class (scene k
    goes with class k), else a clip of any scene: the scene bias of real tube collections,
    which the embedded demo builds in. The actors are then placed before the background is
    drawn. Ignored for sources without scene labels. ``synth(rng, scene_class=c)`` pairs the
    scene with class c instead of the bottom actor's (a partner clip whose scene goes with
    another clip's label: :class:`stal.synthesis.mixing.HalfFramePartnerMix`).
    """

    def __init__(self, *, tubes: TubeSource, backgrounds: BackgroundSource, placement: PlacementSpec,
                 num_frames: int, height: int, width: int, num_classes: int, multi_label: bool = False,
                 edge: str = "hard", feather_radius: int = 2, colour_match: float = 0.0,
                 interpolation: str = "nearest", clip_dtype: str = "float32", scene_bias: float = 0.0):
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
        if not 0.0 <= scene_bias <= 1.0:
            raise ValueError(f"scene_bias must be in [0, 1], got {scene_bias}")
        self.scene_bias = scene_bias
        classes = getattr(tubes, "classes", None)
        if classes is not None and len(classes) > num_classes:
            raise DataError(f"{getattr(tubes, 'root', 'tube bank')}: {len(classes)} classes {list(classes)}, "
                            f"but the model predicts {num_classes} (MODEL.NUM_CLASSES)")
        self._soft = LRUCache(TUBE_STATS_CACHE)  # per tube: whether its alpha has values in (0, 255)
        self._boxes = LRUCache(TUBE_STATS_CACHE)  # per tube: _alpha_boxes, _row_spans
        root = getattr(tubes, "root", "")
        self._meta = [(e["frames"], e["height"], e["width"], e.get("actor_height", e["height"]),
                       f"{root}/{e['file']}" if root else e["file"]) for e in tubes.entries]

    def __call__(self, rng: np.random.Generator, *, scene_class: int | None = None) -> Sample:
        if getattr(self.backgrounds, "num_scenes", 0):
            placements = self._place(rng)
            background = self._scene_background(rng, placements, scene_class)
        else:
            background = self._background(rng)
            placements = self._place(rng)
        # Colour matching compares the uint8 tube with the uint8 background (same value range),
        # whatever the clip dtype: keep the raw background for the layers.
        raw = background
        if self.clip_dtype == "float32":
            background = clip_as_float(background)
        made = self._compose_compiled(background=background, placements=placements)
        if made is None:
            clip, prov = composite_layers(background, [self._layer(p, raw) for p in placements])
            boxes = boxes_from_crops(prov.crops, prov.shape)
        else:
            clip, prov, boxes = made
        labels = self._labels([self.tubes[p.tube].labels for p in placements])
        info = {"tubes": [self._meta[p.tube][4] for p in placements]}
        return Sample(clip=clip, boxes=boxes, labels=labels, keyframe=self.T // 2, provenance=prov,
                      background=background, info=info)

    def _place(self, rng: np.random.Generator) -> list[Placement]:
        return place_actors(rng, self.placement, tubes=self._meta, num_frames=self.T, height=self.H, width=self.W)

    def _background(self, rng: np.random.Generator, **scene) -> np.ndarray:
        return np.ascontiguousarray(self.backgrounds.clip(rng, num_frames=self.T, height=self.H, width=self.W, **scene))

    def _scene_background(self, rng: np.random.Generator, placements: list[Placement],
                          scene_class: int | None = None) -> np.ndarray:
        """A clip of the scene of ``scene_class`` (None: the bottom actor's class) with probability
        ``scene_bias``, else of any scene."""
        label = self.tubes.entries[placements[0].tube]["labels"][0] if scene_class is None else int(scene_class)
        biased = rng.uniform() < self.scene_bias  # drawn always: the generator's stream is the same for any bias
        scene = label if biased and label < self.backgrounds.num_scenes else None
        return self._background(rng, scene=scene)

    def _compose_compiled(self, *, background: np.ndarray,
                          placements: list[Placement]) -> tuple[np.ndarray, Provenance, np.ndarray] | None:
        """(clip, provenance, boxes) with nearest resizing, no edge treatment and no colour
        match (the loader default) from a compiled kernel; None for other settings, which go
        through :meth:`_layer` and :func:`composite_layers`.

        One kernel call for all actors, frame by frame (see :mod:`stal.synthesis.kernels`).
        The provenance has a crop per CROP_FRAMES frames of a source; its dense ids are built
        only when read. The Sample is the numpy path's bit for bit (tested).
        """
        if (self.interpolation != "nearest" or self.edge != "hard" or self.colour_match != 0 or not _LITTLE_ENDIAN
                or not placements):
            return None
        tubes = [self.tubes[p.tube] for p in placements]
        # Soft alpha needs the blend, bottom layer first; hard alpha is pasted top layer
        # first, skipping what is covered (faster; the same result for {0, 255} alpha).
        soft = any(self._soft_alpha(p.tube, tube) for p, tube in zip(placements, tubes))
        kernel = compose_soft_nearest if soft else compose_hard_nearest
        spans = [self._spans(p.tube, tube) for p, tube in zip(placements, tubes)]
        clip = np.empty_like(background)
        values, cuboids, boxes = kernel(
            clip, background, tuple(_packed(tube.rgba) for tube in tubes), tuple(s[0] for s in spans),
            tuple(s[1] for s in spans), np.stack([p.frames for p in placements]),
            np.stack([p.top for p in placements]), np.stack([p.left for p in placements]),
            np.array([(p.height, p.width) for p in placements], np.int64),
            np.array([p.flip for p in placements], np.bool_), _COLOUR_LUT[clip.dtype.name], CROP_FRAMES)
        crops: list[list[AlphaCrop]] = [[] for _ in placements]
        for k, t0, t1, y0, y1, x0, x1, off in cuboids.tolist():
            size = (t1 - t0) * (y1 - y0) * (x1 - x0)
            cube = values[off:off + size].reshape(t1 - t0, y1 - y0, x1 - x0)
            crops[k].append(AlphaCrop(values=cube, start=t0, top=y0, left=x0))
        return clip, Provenance.from_crops(crops, shape=(self.T, self.H, self.W), exclusive=not soft), boxes

    def _spans(self, index: int, tube: Tube) -> tuple[np.ndarray, np.ndarray]:
        """(``_alpha_boxes``, ``_row_spans``) of a tube's alpha."""
        return self._boxes.get(index, lambda: (_alpha_boxes(tube.rgba[..., 3]), _row_spans(tube.rgba[..., 3])))

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
        return self._soft.get(index, lambda: bool(((tube.rgba[..., 3] != 0) & (tube.rgba[..., 3] != 255)).any()))

    def _labels(self, labels: list[list[int]]) -> np.ndarray:
        if not self.multi_label:
            return np.array([lab[0] for lab in labels], np.int64)
        hot = np.zeros((len(labels), self.num_classes), np.float32)
        for k, lab in enumerate(labels):
            hot[k, lab] = 1.0
        return hot
