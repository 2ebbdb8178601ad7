"""Reading and writing the ACT ground-truth pickles of UCF101-24 and JHMDB-21.

Format (``UCF101v2-GT.pkl`` and ``JHMDB-GT.pkl`` from the ACT detector, Kalogeiton
et al. 2017, also used by YOWO / MOC): a Python 2 pickle of one dict with keys

* ``labels``: list of class names; a label index is a position in this list.
* ``gttubes``: ``{video: {label_index: [tube, ...]}}``, each tube an ndarray
  ``(n, 5)`` of rows ``frame, x1, y1, x2, y2``: ``frame`` 1-based, the box in pixels
  of the original frame (0-based pixel coordinates, the ACT evaluator adds +1 to
  widths when it computes IoU).
* ``nframes``: ``{video: int}``; frames are ``rgb-images/<video>/%05d.jpg``, 1-based.
* ``resolution``: ``{video: (height, width)}``.
* ``train_videos`` / ``test_videos``: one list of video names per split (UCF101-24
  has 1 split, JHMDB-21 has 3), i.e. ``train_videos[split - 1]``.

Video names contain the class folder, e.g. ``Basketball/v_Basketball_g01_c01``.

Bad input raises :class:`ActFormatError` whose message names the file, the key
(``gttubes['<video>'][<label>][<i>]``) and what was expected.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from stal.errors import DataError
from stal.io.atomic import atomic_open
from stal.io.safe_pickle import load_pickle

PathLike = Union[str, "os.PathLike[str]"]

REQUIRED_KEYS: tuple[str, ...] = (
    "labels", "gttubes", "nframes", "resolution", "train_videos", "test_videos",
)


class ActFormatError(DataError):
    """An ACT pickle is malformed; the message names the file, the key and what was expected."""


@dataclass
class ActAnnotations:
    """The contents of one ACT ground-truth pickle, validated.

    Attributes:
        labels: class names; label index ``i`` is ``labels[i]``.
        train_videos: one list of video names per split (``train_videos[split - 1]``).
        test_videos: same, test side.
        nframes: ``{video: number of frames}``; frame numbers run 1..nframes.
        resolution: ``{video: (height, width)}`` in pixels.
        gttubes: ``{video: {label_index: [float32 (n, 5) arrays]}}``, rows
            ``frame (1-based), x1, y1, x2, y2`` in pixels of the original frame.
        source: the file read (for messages).
    """

    labels: list[str]
    train_videos: list[list[str]]
    test_videos: list[list[str]]
    nframes: dict[str, int]
    resolution: dict[str, tuple[int, int]]
    gttubes: dict[str, dict[int, list[np.ndarray]]]
    source: str = ""

    @property
    def num_splits(self) -> int:
        return len(self.train_videos)

    def videos(self, *, split: int, train: bool) -> list[str]:
        """Video names of ``split`` (1-based) on the train or the test side."""
        lists = self.train_videos if train else self.test_videos
        if not 1 <= split <= len(lists):
            raise ActFormatError(
                f"{self.source}: split {split} requested; the file has splits 1..{len(lists)}"
            )
        return list(lists[split - 1])

    def video_label(self, video: str) -> int:
        """The single label index of ``video`` (ACT videos have one action class)."""
        labels = sorted(self.gttubes.get(video, {}))
        if len(labels) != 1:
            raise ActFormatError(
                f"{self.source}: gttubes['{video}'] has labels {labels}; expected exactly one"
            )
        return labels[0]


def read_act_pickle(path: PathLike) -> ActAnnotations:
    """Load and validate an ACT ground-truth pickle (restricted unpickler: containers and numpy
    arrays only, see :mod:`stal.io.safe_pickle`; Python 2 pickles are read as latin1)."""
    path = Path(path)
    if not path.is_file():
        raise ActFormatError(f"{path}: file not found (expected an ACT ground-truth pickle)")
    raw = load_pickle(path, what="an ACT ground-truth pickle", error=ActFormatError)
    return parse_act_dict(raw, source=str(path))


def parse_act_dict(raw: Any, *, source: str) -> ActAnnotations:
    """Validate an already unpickled ACT dict; ``source`` names it in messages."""
    if not isinstance(raw, dict):
        raise ActFormatError(f"{source}: top level is {type(raw).__name__}; expected a dict with keys {list(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ActFormatError(f"{source}: missing keys {missing}; expected {list(REQUIRED_KEYS)}")
    labels = _parse_labels(raw["labels"], source)
    nframes = _parse_nframes(raw["nframes"], source)
    resolution = _parse_resolution(raw["resolution"], source)
    train = _parse_splits(raw["train_videos"], "train_videos", source, nframes)
    test = _parse_splits(raw["test_videos"], "test_videos", source, nframes)
    if len(train) != len(test):
        raise ActFormatError(f"{source}: {len(train)} train splits but {len(test)} test splits")
    gttubes = _parse_gttubes(raw["gttubes"], source, num_labels=len(labels), nframes=nframes)
    for video in nframes:
        if video not in resolution:
            raise ActFormatError(f"{source}: resolution has no entry for '{video}' listed in nframes")
    return ActAnnotations(labels=labels, train_videos=train, test_videos=test, nframes=nframes,
                          resolution=resolution, gttubes=gttubes, source=source)


def _parse_labels(value: Any, source: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ActFormatError(f"{source}: 'labels' is {type(value).__name__}; expected a list of class names")
    return list(value)


def _parse_nframes(value: Any, source: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ActFormatError(f"{source}: 'nframes' is {type(value).__name__}; expected {{video: int}}")
    out = {}
    for video, n in value.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ActFormatError(f"{source}: nframes['{video}'] = {n!r}; expected a positive integer")
        out[str(video)] = int(n)
    return out


def _parse_resolution(value: Any, source: str) -> dict[str, tuple[int, int]]:
    if not isinstance(value, dict):
        raise ActFormatError(f"{source}: 'resolution' is {type(value).__name__}; expected {{video: (h, w)}}")
    out = {}
    for video, hw in value.items():
        ok = isinstance(hw, (tuple, list)) and len(hw) == 2 and all(
            isinstance(v, (int, np.integer)) and v > 0 for v in hw)
        if not ok:
            raise ActFormatError(f"{source}: resolution['{video}'] = {hw!r}; expected (height, width) positive ints")
        out[str(video)] = (int(hw[0]), int(hw[1]))
    return out


def _parse_splits(value: Any, key: str, source: str, nframes: dict[str, int]) -> list[list[str]]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ActFormatError(f"{source}: '{key}' is {type(value).__name__}; expected a list of per-split video lists")
    if all(isinstance(v, str) for v in value):
        # Some re-exports flatten the single UCF101-24 split; read it as split 1.
        value = [value]
    splits = []
    for i, videos in enumerate(value):
        if not isinstance(videos, (list, tuple)) or not all(isinstance(v, str) for v in videos):
            raise ActFormatError(f"{source}: {key}[{i}] is {type(videos).__name__}; expected a list of video names")
        unknown = [v for v in videos if v not in nframes]
        if unknown:
            raise ActFormatError(f"{source}: {key}[{i}] names '{unknown[0]}' which nframes does not list")
        splits.append(list(videos))
    return splits


def _parse_gttubes(value: Any, source: str, *, num_labels: int, nframes: dict[str, int]) -> dict[str, dict[int, list[np.ndarray]]]:
    if not isinstance(value, dict):
        raise ActFormatError(f"{source}: 'gttubes' is {type(value).__name__}; expected {{video: {{label: [tubes]}}}}")
    out: dict[str, dict[int, list[np.ndarray]]] = {}
    for video, per_label in value.items():
        if video not in nframes:
            raise ActFormatError(f"{source}: gttubes has '{video}' which nframes does not list")
        if not isinstance(per_label, dict):
            raise ActFormatError(f"{source}: gttubes['{video}'] is {type(per_label).__name__}; expected {{label_index: [tubes]}}")
        out[video] = {}
        for label, tubes in per_label.items():
            where = f"gttubes['{video}'][{label!r}]"
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels:
                raise ActFormatError(f"{source}: {where}: label index out of range; expected 0..{num_labels - 1}")
            if not isinstance(tubes, (list, tuple)):
                raise ActFormatError(f"{source}: {where} is {type(tubes).__name__}; expected a list of (n, 5) arrays")
            out[video][int(label)] = [
                _parse_tube(t, f"{where}[{i}]", source, nframes[video]) for i, t in enumerate(tubes)]
    return out


def _parse_tube(tube: Any, where: str, source: str, nframes: int) -> np.ndarray:
    array = np.asarray(tube) if isinstance(tube, (np.ndarray, list, tuple)) else None
    if array is None or array.ndim != 2 or array.shape[1] != 5 or array.shape[0] == 0 \
            or not np.issubdtype(array.dtype, np.number):
        shape = getattr(array, "shape", type(tube).__name__)
        raise ActFormatError(f"{source}: {where} has shape {shape}; expected (n, 5) rows frame, x1, y1, x2, y2")
    array = array.astype(np.float32)
    frames = array[:, 0]
    if frames.min() < 1 or frames.max() > nframes or not np.all(frames == np.round(frames)):
        raise ActFormatError(f"{source}: {where}: frame numbers {frames.min():g}..{frames.max():g}; expected integers 1..{nframes}")
    if np.any(array[:, 3] < array[:, 1]) or np.any(array[:, 4] < array[:, 2]):
        raise ActFormatError(f"{source}: {where}: a box has x2 < x1 or y2 < y1")
    return array


def write_act_pickle(path: PathLike, annotations: ActAnnotations) -> None:
    """Write ``annotations`` as an ACT pickle (protocol 2, as the originals), atomically."""
    data = {
        "labels": list(annotations.labels),
        "gttubes": {v: {k: [np.asarray(t) for t in ts] for k, ts in d.items()}
                    for v, d in annotations.gttubes.items()},
        "nframes": dict(annotations.nframes),
        "resolution": dict(annotations.resolution),
        "train_videos": [list(s) for s in annotations.train_videos],
        "test_videos": [list(s) for s in annotations.test_videos],
    }
    with atomic_open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
