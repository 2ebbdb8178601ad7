"""Image training as one-frame clips: CutMix with provenance, image sources, evaluation sets.

Training items follow the batch layout of :mod:`stal.data.batch` with T = 1 and **two
ROI rows per image**, one per CutMix source (row 0: the image kept, row 1: the pasted
rectangle). Both rows are the whole image (``boxes`` (2, 4) = ``0, 0, W, H`` input pixels):
the classifier sees the whole mixed image, as in CutMix, and the rows only differ by their
label and their provenance mask. ``labels`` float32 (2, C): row k is ``2 lam_k onehot(y_k)``
with lam_k source k's share of the pixels, so the mean of the per-row soft cross-entropies
is exactly CutMix's ``lam CE(y_1) + (1 - lam) CE(y_2)``. ``source_masks`` (2, 1, H, W):
- PROVENANCE "region": source k's pixels (the CutMix rectangle or its complement), the
  paper's form: each label's input gradient is suppressed outside its own source;
- PROVENANCE "object": that region times the source's object mask, where the source knows
  it (the image demo); the scene around the object then counts as non-target too.
An unmixed image (probability 1 - mix_prob) has two identical rows with lam = 1/2.
With ``counterfactual``, ``clip_cf`` is the same mix of the same objects rendered over
backgrounds of other scenes (only sources with :meth:`rerender`, i.e. the image demo).

The partner-scene benchmark (:class:`PartnerScenePairs`, issue 18) replaces the two
independent draws and the CutMix rectangle: the rectangle never covers the target's object
and the partner's photo goes with the *target's* class, so the only label cue outside the
target object lies in the other source -- the regime of the paper's CutMix WSOL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stal.demo.images import ObjectDraw, draw_object, load_image_demo, mask_box, render_object
from stal.data.batch import normalize_clip
from stal.errors import ConfigError, DataError
from stal.io.images import IMAGE_EXTENSIONS, read_image
from stal.structures import Provenance, Sample
from stal.synthesis.mixing import CutMix


@dataclass(frozen=True)
class SourceImage:
    """One drawn image: uint8 (H, W, 3), 0-based ``label``, ``object_mask`` bool (H, W) or None,
    ``redraw``: (rng) -> the same object over a background of another scene (None: unknown)."""

    image: np.ndarray
    label: int
    object_mask: np.ndarray | None = None
    redraw: Callable[[np.random.Generator], np.ndarray] | None = None


class ImageSource(Protocol):
    num_classes: int

    def draw(self, rng: np.random.Generator) -> SourceImage: ...


class DemoImageSource:
    """Training images of the image demo: class uniform, scene = class with probability
    ``scene_bias`` (else uniform), a fresh procedural object each draw."""

    def __init__(self, *, scenes: np.ndarray, scene_bias: float):
        self.scenes, self.scene_bias = scenes, scene_bias  # uint8 (K, N, H, W, 3)
        self.num_classes, self.size = scenes.shape[0], scenes.shape[2]

    def _background(self, rng: np.random.Generator, scene: int) -> np.ndarray:
        return self.scenes[scene, int(rng.integers(0, self.scenes.shape[1]))]

    def draw(self, rng: np.random.Generator) -> SourceImage:
        label = int(rng.integers(0, self.num_classes))
        scene = label if rng.uniform() < self.scene_bias else int(rng.integers(0, self.num_classes))
        return self.render(rng, label=label, scene=scene)

    def render(self, rng: np.random.Generator, *, label: int, scene: int,
               within: tuple[int, int, int, int] | None = None) -> SourceImage:
        """A fresh object of class ``label`` over a crop of photo ``scene`` (``within``: see
        :func:`stal.demo.images.draw_object`)."""
        obj = draw_object(rng, label=label, size=self.size, within=within)
        return SourceImage(image=render_object(self._background(rng, scene), obj), label=label,
                           object_mask=obj.mask, redraw=lambda r: self._other_scene(r, obj, scene))

    def _other_scene(self, rng: np.random.Generator, obj: ObjectDraw, scene: int) -> np.ndarray:
        other = (scene + int(rng.integers(1, self.num_classes))) % self.num_classes
        return render_object(self._background(rng, other), obj)


class FileImageSource:
    """Images from files (CUB, an image folder), drawn uniformly, resized to ``size`` and
    flipped horizontally with probability ``hflip_prob``. No object masks: PROVENANCE region."""

    def __init__(self, *, paths: Sequence[str], labels: Sequence[int], num_classes: int, size: int,
                 hflip_prob: float = 0.5):
        if len(paths) == 0:
            raise DataError("no training images")
        bad = [(p, y) for p, y in zip(paths, labels) if not 0 <= y < num_classes]
        if bad:
            raise DataError(f"{bad[0][0]}: class id {bad[0][1]} outside the label set 0..{num_classes - 1}")
        self.paths, self.labels, self.num_classes = list(paths), list(labels), num_classes
        self.size, self.hflip_prob = size, hflip_prob

    def draw(self, rng: np.random.Generator) -> SourceImage:
        i = int(rng.integers(0, len(self.paths)))
        image = read_image(self.paths[i], size=self.size)
        if rng.uniform() < self.hflip_prob:
            image = np.ascontiguousarray(image[:, ::-1])
        return SourceImage(image=image, label=self.labels[i])


def rect_beside(rng: np.random.Generator, box: np.ndarray, *, size: int, area_min: float,
                area_max: float) -> tuple[int, int, int, int] | None:
    """A rectangle ``(y0, y1, x0, x1)`` (half-open pixels) of ``area_min..area_max`` of the
    ``size`` x ``size`` image that does not meet ``box`` (``x0, y0, x1, y1``, inclusive corners).

    A rectangle disjoint from a box lies wholly left of, right of, above or below it, so it is
    drawn inside one of those four strips, chosen uniformly among those with room for the drawn
    area (height uniform over what the strip allows, width rounded up: never below the area;
    at most one row or column above it). None when no strip has room.
    """
    bx0, by0, bx1, by1 = (int(v) for v in box)
    area = rng.uniform(area_min, area_max) * size * size
    strips = [(0, size, 0, bx0), (0, size, bx1 + 1, size), (0, by0, 0, size), (by1 + 1, size, 0, size)]
    fits = [s for s in strips if (s[1] - s[0]) * (s[3] - s[2]) >= area]
    if not fits:
        return None
    sy0, sy1, sx0, sx1 = fits[int(rng.integers(0, len(fits)))]
    sh, sw = sy1 - sy0, sx1 - sx0
    h = int(rng.integers(int(np.ceil(area / sw)), sh + 1))
    w = int(np.ceil(area / h))  # <= sw, since area / h <= area / ceil(area / sw) <= sw
    y0, x0 = sy0 + int(rng.integers(0, sh - h + 1)), sx0 + int(rng.integers(0, sw - w + 1))
    return y0, y0 + h, x0, x0 + w


class PartnerScenePairs:
    """(target, partner, rectangle) draws of the partner-scene CutMix benchmark (issue 18).

    The target is ``source``'s draw (the image demo with ``scene_bias`` 0: a uniform class on a
    uniformly drawn photo); the CutMix rectangle covers ``area_min..area_max`` of the image
    beside the target's object box (:func:`rect_beside`; the target is redrawn when no side has
    room, which moves targets towards the borders for large areas). The partner is an object of
    a uniform class, centred in the rectangle, on the photo of the **target's** class with
    probability ``partner_bias`` (rho), else on a uniform photo. Neither source carries a scene
    bias of its own; the only label cue outside the target object is the partner's pixels.
    Call: ``pairs(rng) -> (target, partner, [0, 1, y0, y1, x0, x1])`` (CutMix's ``cuboid_tyx``).
    """

    def __init__(self, *, source: DemoImageSource, partner_bias: float, area_min: float, area_max: float,
                 max_tries: int = 100):
        if not 0.0 <= partner_bias <= 1.0:
            raise ConfigError(f"the partner scene bias must be in [0, 1], got {partner_bias}")
        self.source, self.partner_bias, self.max_tries = source, partner_bias, max_tries
        self.area_min, self.area_max, self.num_classes = area_min, area_max, source.num_classes

    def __call__(self, rng: np.random.Generator) -> tuple[SourceImage, SourceImage, list[int]]:
        for _ in range(self.max_tries):
            target = self.source.draw(rng)
            rect = rect_beside(rng, mask_box(target.object_mask), size=self.source.size,
                               area_min=self.area_min, area_max=self.area_max)
            if rect is not None:
                break
        else:
            raise DataError(f"no CutMix rectangle of {self.area_min:g}..{self.area_max:g} of the image fits beside "
                            f"the target object in {self.max_tries} draws; lower SYNTHESIS.MIX_AREA_MAX")
        k = self.num_classes
        scene = target.label if rng.uniform() < self.partner_bias else int(rng.integers(0, k))
        partner = self.source.render(rng, label=int(rng.integers(0, k)), scene=scene, within=rect)
        return target, partner, [0, 1, *rect]


def _mixed_in_rect(first: SourceImage, second: SourceImage, tyx: list[int]) -> Sample:
    """``second`` pasted into ``first`` over ``tyx``, as the CutMix mixer's one-frame Sample
    (``clip`` uint8 (1, H, W, 3), region provenance: alpha (2, 1, H, W), ``info["cuboid_tyx"]``)."""
    clip = _paste_rect(first.image[None], second.image[None], tyx)
    t0, t1, y0, y1, x0, x1 = tyx
    taken = np.zeros(clip.shape[:3], bool)
    taken[t0:t1, y0:y1, x0:x1] = True
    provenance = Provenance(ids=np.where(taken, 2, 1).astype(np.int16),
                            alpha=np.stack([~taken, taken]).astype(np.float32))
    return Sample(clip=clip, boxes=np.zeros((2, 1, 4), np.float32), labels=np.array([first.label, second.label]),
                  keyframe=0, provenance=provenance, info={"cuboid_tyx": list(tyx)})


def _as_sample(src: SourceImage) -> Sample:
    """A one-frame Sample (clip uint8 (1, H, W, 3)) for the mixer; boxes are not used by CutMix."""
    clip = src.image[None]
    return Sample(clip=clip, boxes=np.zeros((1, 1, 4), np.float32), labels=np.array([src.label]), keyframe=0)


def _paste_rect(first: np.ndarray, second: np.ndarray, tyx: list[int]) -> np.ndarray:
    t0, t1, y0, y1, x0, x1 = tyx
    out = first.copy()
    out[t0:t1, y0:y1, x0:x1] = second[t0:t1, y0:y1, x0:x1]
    return out


class CutMixImageDataset(Dataset):
    """Training items of CutMix over ``source`` (layout: module docstring).

    Item ``i`` of epoch ``e`` draws from ``default_rng([seed, e, i])`` (and ``[seed, e, i, 1]``
    for the counterfactual backgrounds, so the items are the same with or without them).
    ``pairs`` (e.g. :class:`PartnerScenePairs`): ``pairs(rng) -> (first, second, cuboid_tyx)``
    replaces the two independent ``source`` draws and CutMix's own rectangle.
    """

    def __init__(self, *, source: ImageSource, length: int, seed: int, mix_prob: float, area_min: float,
                 area_max: float, provenance: str, counterfactual: bool, mean: Sequence[float],
                 std: Sequence[float],
                 pairs: Callable[[np.random.Generator], tuple[SourceImage, SourceImage, list[int]]] | None = None):
        if provenance not in ("region", "object"):
            raise ConfigError(f"image provenance must be 'region' or 'object', got {provenance!r}")
        self.source, self.length, self.seed, self.epoch = source, length, seed, 0
        self.mix_prob, self.mixer = mix_prob, CutMix(area_min=area_min, area_max=area_max)
        self.provenance, self.counterfactual, self.pairs = provenance, counterfactual, pairs
        self.mean, self.std = list(mean), list(std)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def mixed(self, index: int) -> tuple[Sample, list[SourceImage]]:
        """(the mixed one-frame Sample with region provenance, its two sources)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.pairs is None:
            first, second = self.source.draw(rng), self.source.draw(rng)
            mix = lambda a, b: self.mixer(rng, _as_sample(a), _as_sample(b))  # noqa: E731
        else:
            first, second, tyx = self.pairs(rng)
            mix = lambda a, b: _mixed_in_rect(a, b, tyx)  # noqa: E731
        if rng.uniform() >= self.mix_prob:  # unmixed: the mixer still runs, so the draws stay aligned
            return mix(first, first), [first, first]
        return mix(first, second), [first, second]

    def __getitem__(self, index: int) -> dict:
        sample, sources = self.mixed(index)
        _, H, W, _ = sample.clip.shape
        region = sample.provenance.alpha  # (2, 1, H, W)
        lam = region.reshape(2, -1).mean(1) if sources[0] is not sources[1] else np.array([0.5, 0.5])
        if sources[0] is sources[1]:
            region = np.ones_like(region)
        masks = region.copy()
        if self.provenance == "object":
            for k, src in enumerate(sources):
                if src.object_mask is None:
                    raise ConfigError("IMAGE.PROVENANCE object needs sources with object masks (the image demo)")
                masks[k] *= src.object_mask[None]
        labels = np.zeros((2, self.source.num_classes), np.float32)
        for k, src in enumerate(sources):
            labels[k, src.label] += 2.0 * lam[k]
        item = {"clip": normalize_clip(sample.clip.astype(np.float32) / 255.0, self.mean, self.std),
                "boxes": torch.tensor([[0.0, 0.0, W, H]] * 2), "labels": torch.from_numpy(labels),
                "mask": torch.from_numpy(masks.max(0)), "source_masks": torch.from_numpy(masks)}
        if self.counterfactual:
            item["clip_cf"] = self._counterfactual(index, sample, sources)
        return item

    def _counterfactual(self, index: int, sample: Sample, sources: list[SourceImage]) -> torch.Tensor:
        if any(src.redraw is None for src in sources):
            raise ConfigError("GUIDANCE.MODE counterfactual needs sources that can be re-rendered over another "
                              "background (the image demo); CUB and image folders cannot")
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        first = sources[0].redraw(rng)[None]
        clip = first if sources[0] is sources[1] else _paste_rect(first, sources[1].redraw(rng)[None],
                                                                   sample.info["cuboid_tyx"])
        return normalize_clip(clip.astype(np.float32) / 255.0, self.mean, self.std)


class WsolEvalDataset(Dataset):
    """Evaluation images: ``clip`` (3, 1, S, S) normalized, ``label`` int, ``gt_boxes`` int64
    (G, 4) ``x0, y0, x1, y1`` inclusive pixels of the network input (G may be 0: classification only)."""

    def __init__(self, *, images: Callable[[int], np.ndarray], labels: Sequence[int],
                 boxes: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]):
        self.images, self.labels, self.boxes = images, list(labels), list(boxes)
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images(index).astype(np.float32)[None] / 255.0
        return {"clip": normalize_clip(image, self.mean, self.std), "label": self.labels[index],
                "gt_boxes": np.asarray(self.boxes[index], np.int64).reshape(-1, 4)}


def demo_eval_dataset(path: str, *, split: str, mean: Sequence[float], std: Sequence[float]) -> WsolEvalDataset:
    """The demo's ``val`` or ``test`` split (scene independent of the class)."""
    data = load_image_demo(path)
    images = data[f"{split}_images"]
    return WsolEvalDataset(images=lambda i: images[i], labels=data[f"{split}_labels"].tolist(),
                           boxes=list(data[f"{split}_boxes"]), mean=mean, std=std)


def read_image_folder(root: str, *, classes: Sequence[str] | None = None) -> tuple[list[str], list[str], list[int]]:
    """(class names, image paths, 0-based labels) of ``root/<class>/<image>``, sorted.

    ``classes``: the label set (the training split's); a folder outside it is an error.
    """
    if not os.path.isdir(root):
        raise DataError(f"{root}: image folder not found (expected {root}/<class_name>/<image>.jpg)")
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    classes = list(found if classes is None else classes)
    unknown = [d for d in found if d not in classes]
    if unknown:
        raise DataError(f"{os.path.join(root, unknown[0])}: class folder outside the label set {classes}")
    paths, labels = [], []
    for d in found:
        for name in sorted(os.listdir(os.path.join(root, d))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(root, d, name))
                labels.append(classes.index(d))
    if not paths:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    return classes, paths, labels
