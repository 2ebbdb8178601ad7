"""CUB-200-2011 (weakly supervised object localization) as one-frame clips.

Files under the dataset root (the official release, as wsolevaluation reads it), all
space separated, one image per line, 1-based ids:

* ``images.txt``: ``image_id path`` (path relative to ``images/``, e.g.
  ``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``)
* ``image_class_labels.txt``: ``image_id class_id``
* ``bounding_boxes.txt``: ``image_id x y width height`` in pixels, (0, 0) the top-left corner
* ``train_test_split.txt``: ``image_id is_training`` (1 train, 0 test)
* ``classes.txt``: ``class_id name``

An image is a clip with T = 1 (DESIGN.md: images are never a separate code path); its box is
normalized as ``x / W, y / H, (x + w) / W, (y + h) / H`` with W, H the image size. The box
the WSOL metrics score against (``gt_boxes``) is rounded as wsolevaluation does: its
``metadata/CUB/*/localization.txt`` holds ``x, y, x + w, y + h`` with x + w, y + h taken as
*inclusive* corners, and ``evaluation.py`` ``resize_bbox`` scales each with ``int(v * S / W)``
in float64 (so y = 62.0 stays 62, where a float32 product can give 61.999996).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stal.data.batch import normalize_clip
from stal.errors import DataError
from stal.evaluation.wsol import resize_box
from stal.io.images import read_image_and_size

CUB_FILES = ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "train_test_split.txt", "classes.txt")


@dataclass(frozen=True)
class CubImage:
    """One image: ``path`` relative to ``images/``, ``label`` 0-based, ``box`` (x, y, w, h) pixels."""

    image_id: int
    path: str
    label: int
    box: tuple[float, float, float, float]
    is_train: bool


def _read_columns(path: str, num_fields: int, *, last_joins: bool = False) -> dict[int, list[str]]:
    """``{id: other fields}`` of a CUB text file; bad lines raise DataError ``<file>:<line>: ...``."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found (a CUB-200-2011 root holds {', '.join(CUB_FILES)})")
    out: dict[int, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=num_fields - 1) if last_joins else line.split()
            if len(fields) != num_fields or not fields[0].isdigit():
                raise DataError(f"{path}:{lineno}: expected {num_fields} space-separated fields starting "
                                f"with an integer id, got {line.strip()!r}")
            if int(fields[0]) in out:
                raise DataError(f"{path}:{lineno}: duplicate id {fields[0]}")
            out[int(fields[0])] = [s.strip() for s in fields[1:]]
    return out


def read_cub(root: str) -> tuple[list[str], list[CubImage]]:
    """(class names in class-id order, images in id order) of a CUB root, cross-checked."""
    j = lambda name: os.path.join(root, name)  # noqa: E731
    classes = _read_columns(j("classes.txt"), 2, last_joins=True)
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise DataError(f"{j('classes.txt')}: class ids must run 1..{len(classes)}")
    images = _read_columns(j("images.txt"), 2, last_joins=True)
    labels = _read_columns(j("image_class_labels.txt"), 2)
    boxes = _read_columns(j("bounding_boxes.txt"), 5)
    split = _read_columns(j("train_test_split.txt"), 2)
    out = []
    for image_id, (rel,) in sorted(images.items()):
        for name, table in (("image_class_labels.txt", labels), ("bounding_boxes.txt", boxes),
                            ("train_test_split.txt", split)):
            if image_id not in table:
                raise DataError(f"{j(name)}: no line for image id {image_id} ({rel})")
        out.append(_cub_image(root, image_id, rel, labels[image_id], boxes[image_id], split[image_id], len(classes)))
    return [classes[i][0] for i in sorted(classes)], out


def _cub_image(root: str, image_id: int, rel: str, label: list[str], box: list[str], split: list[str],
               num_classes: int) -> CubImage:
    try:
        class_id, xywh, is_train = int(label[0]), tuple(float(v) for v in box), int(split[0])
    except ValueError:
        raise DataError(f"{root}: image id {image_id}: class, box and split must be numbers, got "
                        f"{label}, {box}, {split}") from None
    if not 1 <= class_id <= num_classes:
        raise DataError(f"{os.path.join(root, 'image_class_labels.txt')}: image id {image_id} has class "
                        f"{class_id}; classes.txt has 1..{num_classes}")
    if xywh[2] <= 0 or xywh[3] <= 0 or min(xywh[:2]) < 0 or is_train not in (0, 1):
        raise DataError(f"{root}: image id {image_id}: box {xywh} needs x, y >= 0 and w, h > 0, split 0 or 1")
    return CubImage(image_id, rel, class_id - 1, xywh, bool(is_train))


def normalized_box(box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """float32 (4,) normalized x1, y1, x2, y2 of an (x, y, w, h) pixel box, clipped to [0, 1]."""
    x, y, w, h = box
    return np.clip(np.array([x / width, y / height, (x + w) / width, (y + h) / height], np.float32), 0.0, 1.0)


def wsol_gt_box(box: tuple[float, float, float, float], width: int, height: int, size: int) -> np.ndarray:
    """int64 (1, 4) ``x0, y0, x1, y1`` inclusive corners at the input size ``size`` x ``size`` of an
    (x, y, w, h) pixel box, rounded as wsolevaluation's ``resize_bbox`` (module docstring)."""
    x, y, w, h = map(float, box)
    corners = resize_box((x, y, x + w, y + h), image_size=(width, height), resize_size=(size, size))
    return np.array([corners], np.int64)


class CubDataset(Dataset):
    """CUB images as one-frame clips with their box and class.

    Items: ``clip`` float32 (3, 1, S, S) normalized (the image resized to S x S),
    ``boxes`` float32 (1, 4) input pixels, ``boxes_norm`` (1, 4), ``labels`` int64 (1,),
    ``key`` (image path, 0), ``mask`` (1, S, S) and ``source_masks`` (1, 1, S, S): the box;
    ``gt_boxes`` int64 (1, 4): the box the WSOL metrics use (:func:`wsol_gt_box`).
    """

    def __init__(self, *, root: str, train: bool, crop_size: int, mean: Sequence[float], std: Sequence[float]):
        self.root, self.size, self.mean, self.std = root, crop_size, list(mean), list(std)
        self.classes, images = read_cub(root)
        self.images = [im for im in images if im.is_train == train]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        im = self.images[index]
        path = os.path.join(self.root, "images", im.path)
        rgb, (width, height) = read_image_and_size(path, size=self.size)
        box = normalized_box(im.box, width, height)
        mask = torch.zeros(1, 1, self.size, self.size)
        x1, y1, x2, y2 = np.round(box * self.size).astype(int)
        mask[0, :, y1:y2, x1:x2] = 1.0
        return {
            "clip": normalize_clip(np.asarray(rgb, np.float32)[None] / 255.0, self.mean, self.std),
            "boxes": torch.from_numpy(box[None] * self.size),
            "boxes_norm": torch.from_numpy(box[None]),
            "labels": torch.tensor([im.label], dtype=torch.int64),
            "key": (im.path, 0),
            "mask": mask[0],
            "source_masks": mask,
            "gt_boxes": wsol_gt_box(im.box, width, height, self.size),
        }
