"""Actor tube bank: a directory with an index file and one compressed array file per tube.

On-disk format (version 1, see docs/synthesis.md)::

    <root>/index.json
        {"format": "stal.tube_bank", "version": 1,
         "classes": ["wave", ...],      # label names; tube labels are 0-based indices into it
         "tubes": [{"file": "tubes/000000.npz", "frames": T, "height": h, "width": w,
                    "labels": [2], "actor_height": 26, "source": {...}}, ...],
         "done": ["<input key>", ...]}  # inputs a builder has finished (resume)
    <root>/tubes/<name>.npz
        rgb   uint8 (T, h, w, 3)
        alpha uint8 (T, h, w)          # 0 = transparent, 255 = opaque
        boxes float32 (T, 4)           # per-frame box of alpha > 0, normalized to the tube
                                       # canvas (x1, y1, x2, y2), NaN where the frame is empty

Only the index is read up front; tube arrays are loaded on first use and kept in a small
LRU cache, so a bank of thousands of tubes does not sit in memory.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from stal.errors import DataError
from stal.io.atomic import atomic_write_bytes

FORMAT = "stal.tube_bank"
VERSION = 1


@dataclass
class Tube:
    """One actor tube in memory.

    rgba: uint8 (T, h, w, 4). boxes: float32 (T, 4) normalized to the canvas, NaN when empty.
    labels: 0-based class indices (one for single-label banks, any number for AVA-style).
    actor_height: pixels, the tallest per-frame box (placement scales by it, not the canvas).
    """

    rgba: np.ndarray
    boxes: np.ndarray
    labels: list[int]
    actor_height: int
    path: str
    source: dict = field(default_factory=dict)


def alpha_boxes(alpha: np.ndarray) -> np.ndarray:
    """float32 (T, 4): per-frame normalized box of ``alpha > 0`` in (T, h, w); NaN where empty."""
    T, h, w = alpha.shape
    rows, cols = alpha.any(2), alpha.any(1)
    boxes = np.full((T, 4), np.nan, np.float32)
    has = rows.any(1)
    found = np.stack([cols.argmax(1) / w, rows.argmax(1) / h, (w - cols[:, ::-1].argmax(1)) / w,
                      (h - rows[:, ::-1].argmax(1)) / h], -1)
    boxes[has] = found[has]
    return boxes


def validate_tube(rgb: np.ndarray, alpha: np.ndarray, where: str) -> None:
    """Raise DataError (naming ``where``) unless rgb (T, h, w, 3) and alpha (T, h, w) uint8 agree."""
    if rgb.dtype != np.uint8 or alpha.dtype != np.uint8:
        raise DataError(f"{where}: expected uint8 rgb and alpha, got {rgb.dtype} and {alpha.dtype}")
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise DataError(f"{where}: expected rgb of shape (T, h, w, 3), got {rgb.shape}")
    if alpha.shape != rgb.shape[:3]:
        raise DataError(f"{where}: mask and frame size mismatch: alpha {alpha.shape}, "
                        f"frames {rgb.shape[:3]} (expected equal (T, h, w))")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0 or rgb.shape[2] == 0 or not alpha.any():
        raise DataError(f"{where}: empty tube (no frame has a pixel with alpha > 0)")


class LRUCache:
    """Values computed per key, kept for the ``size`` most recently used keys (the tube
    arrays of a bank; per-tube statistics in :class:`stal.synthesis.paste.PasteSynthesizer`).
    Iterates over the kept keys, least recently used first."""

    def __init__(self, size: int):
        self.size, self._items = size, OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def get(self, key, compute):
        """The value of ``key``, from ``compute()`` when it is not kept."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = compute()
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


class TubeBank:
    """Read-only, lazily loaded view of a tube bank directory (see the module docstring)."""

    def __init__(self, root: str, *, cache_size: int = 64):
        self.root = root
        self.index_path = os.path.join(root, "index.json")
        index = read_index(self.index_path)
        self.classes: list[str] = list(index["classes"])
        self.entries: list[dict] = list(index["tubes"])
        if not self.entries:
            raise DataError(f"{self.index_path}: the bank has no tubes")
        self._cache = LRUCache(cache_size)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Tube:
        return self._cache.get(i, lambda: self._load(i))

    def _load(self, i: int) -> Tube:
        entry = self.entries[i]
        path = os.path.join(self.root, entry["file"])
        if not os.path.isfile(path):
            raise DataError(f"{self.index_path}: tube {i} points at {path}, which does not exist")
        try:
            with np.load(path) as data:
                rgb, alpha = data["rgb"], data["alpha"]
                boxes = data["boxes"] if "boxes" in data.files else alpha_boxes(alpha > 0)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a truncated .npz: BadZipFile
            raise DataError(f"{path}: cannot read tube arrays rgb/alpha ({type(exc).__name__}: {exc}); the file is "
                            f"truncated or not a tube written by data_prep/build_tube_bank.py") from None
        validate_tube(rgb, alpha, path)
        if list(rgb.shape[:3]) != [entry["frames"], entry["height"], entry["width"]]:
            raise DataError(f"{path}: arrays have (T, h, w) = {tuple(rgb.shape[:3])}, "
                            f"{self.index_path} says {(entry['frames'], entry['height'], entry['width'])}")
        rgba = np.concatenate([rgb, alpha[..., None]], -1)
        return Tube(rgba=rgba, boxes=boxes.astype(np.float32), labels=[int(x) for x in entry["labels"]],
                    actor_height=int(entry.get("actor_height", entry["height"])), path=path,
                    source=dict(entry.get("source", {})))


def read_index(path: str) -> dict:
    """Parse and check a tube bank ``index.json``; DataError naming the file when malformed."""
    if not os.path.isfile(path):
        raise DataError(f"tube bank index not found: {path} (build one with data_prep/build_tube_bank.py)")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a valid JSON tube bank index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: expected a JSON object with \"format\": \"{FORMAT}\"")
    if index.get("version") != VERSION:
        raise DataError(f"{path}: unsupported tube bank version {index.get('version')!r} (expected {VERSION})")
    for i, entry in enumerate(index.get("tubes", [])):
        missing = {"file", "frames", "height", "width", "labels"} - set(entry)
        if missing:
            raise DataError(f"{path}: tube {i} lacks the keys {sorted(missing)}")
    index.setdefault("tubes", [])
    index.setdefault("classes", [])
    index.setdefault("done", [])
    return index


class TubeBankWriter:
    """Append tubes to a bank directory; resumable: finished inputs are recorded in the index.

    Tube files are written atomically; the index is rewritten atomically after each finished
    input, so an interrupted build resumes at the first unfinished input (tubes written for
    it before the interruption are overwritten, not duplicated).
    """

    def __init__(self, root: str, *, classes: list[str]):
        self.root = root
        self.index_path = os.path.join(root, "index.json")
        os.makedirs(os.path.join(root, "tubes"), exist_ok=True)
        if os.path.isfile(self.index_path):
            self.index = read_index(self.index_path)
            if self.index["classes"] != list(classes):
                raise DataError(f"{self.index_path}: existing bank has classes {self.index['classes']}, "
                                f"this build uses {list(classes)}; use a new --out directory")
        else:
            self.index = {"format": FORMAT, "version": VERSION, "classes": list(classes), "tubes": [], "done": []}
        self._pending: list[dict] = []

    def is_done(self, key: str) -> bool:
        return key in self.index["done"]

    def add(self, *, rgb: np.ndarray, alpha: np.ndarray, labels: list[int], source: dict) -> None:
        """Queue one tube (rgb uint8 (T, h, w, 3), alpha uint8 (T, h, w)) of the current input."""
        where = f"tube from {source.get('input', '?')}"
        validate_tube(rgb, alpha, where)
        if not labels:
            raise DataError(f"{where}: a tube needs at least one label")
        for label in labels:
            if not 0 <= label < len(self.index["classes"]):
                raise DataError(f"{where}: label {label} outside the bank's {len(self.index['classes'])} classes")
        name = f"tubes/{len(self.index['tubes']) + len(self._pending):07d}.npz"
        boxes = alpha_boxes(alpha > 0)
        buf = io.BytesIO()
        np.savez_compressed(buf, rgb=rgb, alpha=alpha, boxes=boxes)
        atomic_write_bytes(os.path.join(self.root, name), buf.getvalue())
        heights = (boxes[:, 3] - boxes[:, 1]) * rgb.shape[1]
        self._pending.append({"file": name, "frames": int(rgb.shape[0]), "height": int(rgb.shape[1]),
                              "width": int(rgb.shape[2]), "labels": [int(x) for x in labels],
                              "actor_height": int(round(float(np.nanmax(heights)))), "source": source})

    def finish_input(self, key: str) -> None:
        """Commit the queued tubes of input ``key`` and mark it done (atomic index rewrite)."""
        self.index["tubes"].extend(self._pending)
        self._pending = []
        if key not in self.index["done"]:
            self.index["done"].append(key)
        text = json.dumps(self.index, indent=1, sort_keys=True)
        atomic_write_bytes(self.index_path, text.encode("utf-8"))


class MemoryTubeBank:
    """Tubes held in memory with the same interface as :class:`TubeBank` (tests, benchmarks).

    rgbas: uint8 (T, h, w, 4) per tube; labels: 0-based class indices per tube.
    """

    def __init__(self, rgbas: list[np.ndarray], labels: list[list[int]], *, classes: list[str]):
        self.classes = list(classes)
        self.tubes: list[Tube] = []
        self.entries: list[dict] = []
        for i, (rgba, lab) in enumerate(zip(rgbas, labels)):
            where = f"<memory tube {i}>"
            validate_tube(rgba[..., :3], rgba[..., 3], where)
            boxes = alpha_boxes(rgba[..., 3] > 0)
            height = int(round(float(np.nanmax((boxes[:, 3] - boxes[:, 1]) * rgba.shape[1]))))
            self.tubes.append(Tube(rgba=rgba, boxes=boxes, labels=list(lab), actor_height=height, path=where))
            self.entries.append({"file": where, "frames": rgba.shape[0], "height": rgba.shape[1],
                                 "width": rgba.shape[2], "labels": list(lab), "actor_height": height})

    def __len__(self) -> int:
        return len(self.tubes)

    def __getitem__(self, i: int) -> Tube:
        return self.tubes[i]
