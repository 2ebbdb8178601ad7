"""Background bank: clips read from video files, frame folders or still plates.

On-disk format (version 1, see docs/synthesis.md)::

    <root>/index.json
        {"format": "stal.background_bank", "version": 1,
         "backgrounds": [{"kind": "video",  "path": "...mp4", "start": 0, "stop": 120},
                         {"kind": "frames", "path": "dir/", "start": 0, "stop": 40},
                         {"kind": "image",  "path": "plates/000000.png"}, ...],
         "done": ["<input key>", ...]}

``path`` is relative to the bank root unless absolute; [start, stop) is a frame range
(0-based, decoded order). Frames are read when a clip is drawn; nothing is decoded up front.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stal.errors import DataError
from stal.io.images import list_frames, read_image
from stal.io.video import read_video_frames

FORMAT = "stal.background_bank"
VERSION = 1
KINDS = ("video", "frames", "image")


@dataclass(frozen=True)
class CameraMotion:
    """Slow synthetic camera motion applied to the whole background clip.

    prob: chance that a clip moves at all. pan: largest shift of the crop window over the
    clip, as a fraction of the window size. zoom: largest relative change of the window
    size over the clip (0.2: the last frame's window is 0.8x..1.2x the first's).
    """

    prob: float = 0.0
    pan: float = 0.1
    zoom: float = 0.1


def read_bank_index(path: str) -> dict:
    """Parse and check a background bank ``index.json``; DataError naming the file."""
    if not os.path.isfile(path):
        raise DataError(f"background bank index not found: {path} (build one with data_prep/build_background_bank.py)")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a valid JSON background bank index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{path}: expected a JSON object with \"format\": \"{FORMAT}\", \"version\": {VERSION}")
    for i, entry in enumerate(index.get("backgrounds", [])):
        if entry.get("kind") not in KINDS or "path" not in entry:
            raise DataError(f"{path}: background {i} needs \"kind\" in {KINDS} and a \"path\"")
        if entry["kind"] != "image" and not (0 <= entry.get("start", -1) < entry.get("stop", -1)):
            raise DataError(f"{path}: background {i} ({entry['path']}) needs 0 <= start < stop")
    index.setdefault("backgrounds", [])
    index.setdefault("done", [])
    return index


def crop_windows(rng: np.random.Generator, *, num_frames: int, source_hw: tuple[int, int], out_hw: tuple[int, int],
                 min_scale: float, motion: CameraMotion) -> np.ndarray:
    """float64 (T, 4) crop windows (x0, y0, x1, y1) in source pixels, one per frame.

    The window has the output's aspect ratio and ``min_scale``..1 of the largest such window;
    with camera motion the last frame's window is panned / zoomed relative to the first's,
    linearly in between, and every window stays inside the source frame.
    """
    Hs, Ws = source_hw
    H, W = out_hw
    full_w = min(Ws, Hs * W / H)
    size0 = full_w * rng.uniform(min_scale, 1.0)
    size1 = size0
    moving = rng.uniform() < motion.prob
    if moving:
        size1 = float(np.clip(size0 * (1.0 + rng.uniform(-motion.zoom, motion.zoom)), 1.0, full_w))
    w0, w1 = size0, size1
    h0, h1 = w0 * H / W, w1 * H / W
    x0, y0 = rng.uniform(0, Ws - w0), rng.uniform(0, Hs - h0)
    x1, y1 = x0, y0
    if moving:
        x1 = float(np.clip(x0 + rng.uniform(-motion.pan, motion.pan) * w0, 0, Ws - w1))
        y1 = float(np.clip(y0 + rng.uniform(-motion.pan, motion.pan) * h0, 0, Hs - h1))
    s = np.linspace(0.0, 1.0, num_frames)[:, None] if num_frames > 1 else np.zeros((1, 1))
    start = np.array([x0, y0, x0 + w0, y0 + h0])
    end = np.array([x1, y1, x1 + w1, y1 + h1])
    return start + s * (end - start)


def resize_windows(frames: np.ndarray, windows: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """uint8 (T, H, W, 3): frame t's ``windows[t]`` resampled bilinearly to ``out_hw``.

    ``frames`` may hold one frame (a still plate), used for every window.
    """
    H, W = out_hw
    out = np.empty((len(windows), H, W, 3), np.uint8)
    last = None
    for t, box in enumerate(windows):
        src = frames[min(t, len(frames) - 1)]
        key = (min(t, len(frames) - 1), tuple(box))
        if key == last:
            out[t] = out[t - 1]
            continue
        out[t] = np.asarray(Image.fromarray(src).resize((W, H), Image.BILINEAR, box=tuple(float(v) for v in box)))
        last = key
    return out


class BackgroundBank:
    """Draws background clips uint8 (T, H, W, 3) from a bank directory (module docstring).

    Each draw picks an entry, a start frame, a crop window (``min_scale``..1 of the largest
    window with the output aspect) and, with ``motion``, a slow pan/zoom of that window.
    Still plates are repeated over time. Decoded still plates are cached (LRU).
    """

    def __init__(self, root: str, *, min_scale: float = 0.8, motion: CameraMotion = CameraMotion(),
                 backend: str = "auto", cache_size: int = 16):
        self.root = root
        self.index_path = os.path.join(root, "index.json")
        self.entries = read_bank_index(self.index_path)["backgrounds"]
        if not self.entries:
            raise DataError(f"{self.index_path}: the bank has no backgrounds")
        self.min_scale, self.motion, self.backend = min_scale, motion, backend
        self._plates: OrderedDict[int, np.ndarray] = OrderedDict()
        self._listings: dict[str, list[str]] = {}
        self.cache_size = cache_size

    def __len__(self) -> int:
        return len(self.entries)

    def path(self, i: int) -> str:
        p = self.entries[i]["path"]
        return p if os.path.isabs(p) else os.path.join(self.root, p)

    def frames(self, i: int, start: int, num_frames: int) -> np.ndarray:
        """uint8 (num_frames or 1, H_s, W_s, 3) source frames of entry ``i`` from ``start``."""
        entry, path = self.entries[i], self.path(i)
        if entry["kind"] == "image":
            if i not in self._plates:
                self._plates[i] = read_image(path)[None]
                if len(self._plates) > self.cache_size:
                    self._plates.popitem(last=False)
            return self._plates[i]
        # Ranges shorter than the clip hold their last frame (documented in docs/synthesis.md).
        idx = np.minimum(np.arange(start, start + num_frames), entry["stop"] - 1)
        if entry["kind"] == "video":
            return read_video_frames(path, idx, backend=self.backend)
        if path not in self._listings:  # a folder's listing is read once, not per clip
            self._listings[path] = list_frames(path)
        files = self._listings[path]
        if entry["stop"] > len(files):
            raise DataError(f"{self.index_path}: {path} has {len(files)} frames, the index says stop={entry['stop']}")
        return np.stack([read_image(files[j]) for j in idx])

    def clip(self, rng: np.random.Generator, *, num_frames: int, height: int, width: int) -> np.ndarray:
        i = int(rng.integers(0, len(self.entries)))
        entry = self.entries[i]
        start = 0
        if entry["kind"] != "image":
            start = int(rng.integers(entry["start"], max(entry["start"] + 1, entry["stop"] - num_frames + 1)))
        frames = self.frames(i, start, num_frames)
        windows = crop_windows(rng, num_frames=num_frames, source_hw=frames.shape[1:3], out_hw=(height, width),
                               min_scale=self.min_scale, motion=self.motion)
        return resize_windows(frames, windows, (height, width))
