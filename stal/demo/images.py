"""Embedded image demo for WSOL: procedural objects over crops of real photos, no download.

Class k is defined by the object's *shape* (disc, square, triangle, cross, ...); its colour,
size, position and rotation are random. Backgrounds are crops of the photos that ship with
scikit-image (``skimage.data``), one photo per "scene". In training, class k's objects sit
on scene k (``scene_bias`` 1.0: a perfect shortcut); in the validation and test splits the
scene is drawn independently of the class, so a model that reads the scene fails there and
its CAM lights up the background instead of the object. The partner-scene benchmark
(``held_out_val``, :class:`stal.data.images.PartnerScenePairs`) keeps the same test split and
draws its validation split like the test split, over a third set of crops.

Files: ``ensure_image_demo`` writes ``<root>/image_demo_v<version>_seed<S>_<size>px_<K>c_...npz``
atomically (temporary file + ``os.replace``) on first use and reuses it afterwards:
``train_scenes`` uint8 (K, N, H, W, 3), the training crops, and, for ``val`` (new objects over
the training crops; with ``held_out_val`` over a third, disjoint crop draw, like the test split)
and ``test`` (over held-out crops, drawn after the training crops), ``<split>_images`` uint8
(N, H, W, 3), ``<split>_boxes`` int64 (N, 4) ``x0, y0, x1, y1`` pixels with inclusive corners
(the wsolevaluation convention), ``<split>_labels`` int64 (N,), ``<split>_scenes`` int64 (N,)
(the photo index of each image; the held-out crops themselves are not stored). Training
images are rendered on the fly (:func:`render_object`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stal.errors import DataError
from stal.io.atomic import atomic_open

SCENE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
# Order matters: the first K are the classes. disc/cross/bar/ring were learned in 150 steps by
# resnet50_tiny at 64 px (val accuracy 0.69, no scene bias); disc/square/triangle/cross were not (0.38).
SHAPES = ("disc", "cross", "bar", "ring", "square", "triangle")
# In the file name: bump when the rendering changes, so stale files are not reused.
FORMAT_VERSION = 2
MAX_CLASSES = min(len(SCENE_PHOTOS), len(SHAPES))


def scene_crops(rng: np.random.Generator, photo: np.ndarray, *, count: int, size: int) -> np.ndarray:
    """uint8 (count, size, size, 3): random square crops (side 30-100 % of the short side), resized."""
    h, w = photo.shape[:2]
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side, :3])
        out[i] = np.asarray(crop.resize((size, size), Image.BILINEAR))
    return out


def shape_mask(shape: str, *, size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """bool (size, size): ``shape`` centred at pixel (cx, cy), half-extent ``radius`` px, rotated by ``angle`` rad."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius  # object frame, unit half-extent
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / radius
    r = np.hypot(u, v)
    if shape == "disc":
        return r <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == "triangle":  # apex up, base at v = 0.6
        return (v <= 0.6) & (v >= -1.0 + 2.6 * np.abs(u) / 1.5)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@dataclass(frozen=True)
class ObjectDraw:
    """One procedural object: class, colour (3,) in [0, 255], mask bool (H, W)."""

    label: int
    colour: np.ndarray
    mask: np.ndarray


def draw_object(rng: np.random.Generator, *, label: int, size: int,
                within: tuple[int, int, int, int] | None = None) -> ObjectDraw:
    """A random object of class ``label`` (shape SHAPES[label]), 30-50 % of the image wide, fully inside;
    ``within`` ``(y0, y1, x0, x1)`` (half-open pixels): centre uniform in that rectangle instead, the
    object may then extend past it and is clipped at the image border (a CutMix partner's object)."""
    radius = size * rng.uniform(0.15, 0.25)
    if within is None:
        cx, cy = rng.uniform(radius, size - radius, size=2)
    else:
        y0, y1, x0, x1 = within
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    mask = shape_mask(SHAPES[label], size=size, cx=cx, cy=cy, radius=radius, angle=rng.uniform(-0.4, 0.4))
    colour = rng.uniform(0, 255, size=3)
    colour[int(rng.integers(0, 3))] = rng.choice([20.0, 235.0])  # saturated: visible on most photos
    return ObjectDraw(label=label, colour=colour.astype(np.float32), mask=mask)


def render_object(background: np.ndarray, obj: ObjectDraw) -> np.ndarray:
    """uint8 (H, W, 3): ``obj`` painted opaquely over ``background`` uint8 (H, W, 3)."""
    out = background.copy()
    out[obj.mask] = obj.colour.astype(np.uint8)
    return out


def mask_box(mask: np.ndarray) -> np.ndarray:
    """int64 (4,) ``x0, y0, x1, y1`` inclusive pixel corners of a non-empty bool (H, W) mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.int64)


def _photos(num_classes: int) -> list[np.ndarray]:
    try:
        import skimage.data
    except ImportError:
        raise DataError("the image demo needs scikit-image's bundled photos: pip install scikit-image") from None
    return [getattr(skimage.data, name)() for name in SCENE_PHOTOS[:num_classes]]


def _render_split(rng: np.random.Generator, scenes: np.ndarray, *, count: int, size: int) -> dict:
    """Images with independent scene and class (the unbiased splits)."""
    k = scenes.shape[0]
    images, boxes, labels, scene_ids = [], [], [], []
    for _ in range(count):
        label, scene = int(rng.integers(0, k)), int(rng.integers(0, k))
        obj = draw_object(rng, label=label, size=size)
        images.append(render_object(scenes[scene, int(rng.integers(0, scenes.shape[1]))], obj))
        boxes.append(mask_box(obj.mask))
        labels.append(label)
        scene_ids.append(scene)
    return {"images": np.stack(images), "boxes": np.stack(boxes), "labels": np.array(labels, np.int64),
            "scenes": np.array(scene_ids, np.int64)}


def generate_image_demo(*, seed: int, size: int, num_classes: int, scenes_per_class: int,
                        val_images: int, test_images: int, held_out_val: bool = False) -> dict:
    """All arrays of the demo file (see the module docstring), deterministic in ``seed``.

    ``held_out_val``: the val split is drawn like the test split (over its own crops, drawn after
    the training and test crops, so those are the same arrays as without it).
    """
    if not 2 <= num_classes <= MAX_CLASSES:
        raise DataError(f"the image demo has 2..{MAX_CLASSES} classes, got {num_classes}")
    photos = _photos(num_classes)
    rng = np.random.default_rng([seed, 1])
    train = np.stack([scene_crops(rng, p, count=scenes_per_class, size=size) for p in photos])
    test = np.stack([scene_crops(rng, p, count=scenes_per_class, size=size) for p in photos])
    out = {"train_scenes": train, "test_scenes": test}
    val = train
    if held_out_val:  # not stored: only the rendered val images are
        val = np.stack([scene_crops(rng, p, count=scenes_per_class, size=size) for p in photos])
    for split, scenes, count, stream in (("val", val, val_images, 2), ("test", test, test_images, 3)):
        out.update({f"{split}_{k}": v for k, v in
                    _render_split(np.random.default_rng([seed, stream]), scenes, count=count, size=size).items()})
    return out


def ensure_image_demo(*, root: str, seed: int, size: int, num_classes: int, scenes_per_class: int = 32,
                      val_images: int = 200, test_images: int = 400, held_out_val: bool = False) -> str:
    """Path of the demo file for these settings, generating it atomically on first use."""
    name = (f"image_demo_v{FORMAT_VERSION}_seed{seed}_{size}px_{num_classes}c_{scenes_per_class}s_"
            f"{val_images}v_{test_images}t{'_heldoutval' if held_out_val else ''}.npz")
    path = os.path.join(root, name)
    if os.path.isfile(path):
        return path
    arrays = generate_image_demo(seed=seed, size=size, num_classes=num_classes, scenes_per_class=scenes_per_class,
                                 val_images=val_images, test_images=test_images, held_out_val=held_out_val)
    os.makedirs(root, exist_ok=True)
    with atomic_open(path, "wb") as f:  # readers never see a partial file; concurrent writers write the same bytes
        np.savez(f, **arrays)
    return path


def load_image_demo(path: str) -> dict:
    """The arrays of a demo file, as a dict (loaded into memory: a few MB)."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image demo file ({exc}); delete it to regenerate") from None
