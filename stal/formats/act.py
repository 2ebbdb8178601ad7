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
(``gttubes['<video>'][<label>][<i>]``) and what was expected.  Tube boxes are kept in
float64 (values as stored).  A tube whose frames run past ``nframes`` is kept, as ACT's
evaluator keeps it (its frames past the end can only be missed), and counted in one warning.

Detections in ACT's own format (``ACT.py``, ``extract_tubelets``: one pickle per video and
start frame, ``<dir>/<video>/<start:05d>.pkl``) and in MOC-Detector's (``inference`` output,
same layout) are read by :func:`read_act_tubelets`, see :class:`ActTubelets`.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
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
        gttubes: ``{video: {label_index: [float64 (n, 5) arrays]}}``, rows
            ``frame (1-based), x1, y1, x2, y2`` in pixels of the original frame.
        source: the file read (for messages).
        tubes_past_end: ``gttubes[...]`` keys of tubes with frames past ``nframes`` (kept).
    """

    labels: list[str]
    train_videos: list[list[str]]
    test_videos: list[list[str]]
    nframes: dict[str, int]
    resolution: dict[str, tuple[int, int]]
    gttubes: dict[str, dict[int, list[np.ndarray]]]
    source: str = ""
    tubes_past_end: list[str] = field(default_factory=list)

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
    past_end: list[str] = []
    gttubes = _parse_gttubes(raw["gttubes"], source, num_labels=len(labels), nframes=nframes, past_end=past_end)
    for video in nframes:
        if video not in resolution:
            raise ActFormatError(f"{source}: resolution has no entry for '{video}' listed in nframes")
    if past_end:
        # ACT's frameAP / videoAP take such tubes as they are (their frames past the end
        # are never detected: false negatives).
        warnings.warn(f"{source}: {len(past_end)} ground-truth tubes have frames past nframes (first: "
                      f"{past_end[0]}); kept as ACT's evaluator keeps them", stacklevel=3)
    return ActAnnotations(labels=labels, train_videos=train, test_videos=test, nframes=nframes,
                          resolution=resolution, gttubes=gttubes, source=source, tubes_past_end=past_end)


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


def _parse_gttubes(value: Any, source: str, *, num_labels: int, nframes: dict[str, int],
                   past_end: list[str]) -> dict[str, dict[int, list[np.ndarray]]]:
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
                _parse_tube(t, f"{where}[{i}]", source, nframes[video], past_end) for i, t in enumerate(tubes)]
    return out


def _parse_tube(tube: Any, where: str, source: str, nframes: int, past_end: list[str]) -> np.ndarray:
    array = np.asarray(tube) if isinstance(tube, (np.ndarray, list, tuple)) else None
    if array is None or array.ndim != 2 or array.shape[1] != 5 or array.shape[0] == 0 \
            or not np.issubdtype(array.dtype, np.number):
        shape = getattr(array, "shape", type(tube).__name__)
        raise ActFormatError(f"{source}: {where} has shape {shape}; expected (n, 5) rows frame, x1, y1, x2, y2")
    array = array.astype(np.float64)  # float32 and integer values exactly; ACT keeps the stored values
    frames = array[:, 0]
    if not np.isfinite(array).all() or frames.min() < 1 or not np.all(frames == np.round(frames)):
        raise ActFormatError(f"{source}: {where}: frame numbers {frames.min():g}..{frames.max():g}; "
                             f"expected finite integers from 1 (nframes {nframes})")
    if frames.max() > nframes:
        past_end.append(f"{where} frames {frames.min():g}..{frames.max():g}, nframes {nframes}")
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


@dataclass
class ActTubelets:
    """The tubelets of K frames that start at one frame of one video (one detection pickle).

    Attributes:
        k: frames per tubelet (K).
        boxes: float64 (N, K, 4) ``x1, y1, x2, y2`` pixels of frames ``start .. start + K - 1``.
        label: int64 (N,) 0-based class; score: float64 (N,): the per-class detections (ACT's
            ``dets``, after its per-class NMS; MOC: every tubelet of its ``{label: array}``).
        all_boxes: float64 (M, K, 4) and all_scores float64 (M, L): ACT's ``dets_all`` (every
            tubelet with one score per class, background left out), which ACT's ``BuildTubes``
            links; None for MOC files, whose per-class tubelets are what MOC links.
    """

    k: int
    boxes: np.ndarray
    label: np.ndarray
    score: np.ndarray
    all_boxes: Any = None
    all_scores: Any = None

    def link_candidates(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (n, K, 4), scores (n,)) of the tubelets the linking sees for ``label``."""
        if self.all_scores is not None:
            return self.all_boxes, self.all_scores[:, label]
        rows = self.label == label
        return self.boxes[rows], self.score[rows]


def read_act_tubelets(path: PathLike, *, num_labels: int) -> ActTubelets:
    """One detection pickle of ACT (``(dets, dets_all)``: ``dets`` rows ``label, score,
    (x1, y1, x2, y2) x K``; ``dets_all`` rows ``(x1, y1, x2, y2) x K, background score,
    one score per class``) or of MOC-Detector (``{label + 1: rows (x1, y1, x2, y2) x K, score}``)."""
    raw = load_pickle(path, what="an ACT / MOC tubelet detection pickle", error=ActFormatError)
    if isinstance(raw, dict):
        return _moc_tubelets(raw, str(path), num_labels)
    if not (isinstance(raw, (tuple, list)) and len(raw) == 2 and all(isinstance(a, np.ndarray) for a in raw)):
        raise ActFormatError(f"{path}: expected ACT's (dets, dets_all) pair of arrays or MOC's "
                             f"{{label: array}}, got {type(raw).__name__}")
    dets, dets_all = (np.asarray(a, np.float64) for a in raw)
    k = (dets.shape[-1] - 2) // 4 if dets.ndim == 2 else 0
    if dets.ndim != 2 or k < 1 or dets.shape[1] != 2 + 4 * k:
        raise ActFormatError(f"{path}: dets has shape {dets.shape}; expected (N, 2 + 4K) rows label, score, boxes")
    if dets_all.ndim != 2 or dets_all.shape[1] != 4 * k + 1 + num_labels:
        raise ActFormatError(f"{path}: dets_all has shape {dets_all.shape}; expected (M, {4 * k + 1 + num_labels}) "
                             f"= 4K boxes, background and {num_labels} class scores (K = {k} from dets)")
    label = dets[:, 0]
    if len(label) and (label.min() < 0 or label.max() >= num_labels or np.any(label != np.round(label))):
        raise ActFormatError(f"{path}: dets column 1 (label) has {label.min():g}..{label.max():g}; "
                             f"expected class indices 0..{num_labels - 1}")
    _check_finite(path, dets, dets_all)
    return ActTubelets(k, dets[:, 2:].reshape(-1, k, 4), label.astype(np.int64), dets[:, 1],
                       dets_all[:, :4 * k].reshape(-1, k, 4), dets_all[:, 4 * k + 1:])


def _moc_tubelets(raw: dict, source: str, num_labels: int) -> ActTubelets:
    boxes, labels, scores, k = [], [], [], None
    for key, rows in raw.items():
        rows = np.asarray(rows, np.float64) if isinstance(rows, np.ndarray) else None
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 1 <= key <= num_labels:
            raise ActFormatError(f"{source}: key {key!r}: expected MOC's 1-based class keys 1..{num_labels}")
        k = k or ((rows.shape[-1] - 1) // 4 if rows is not None and rows.ndim == 2 else 0)
        if rows is None or rows.ndim != 2 or k < 1 or rows.shape[1] != 4 * k + 1:
            raise ActFormatError(f"{source}: [{key}] has shape {getattr(rows, 'shape', None)}; "
                                 f"expected (N, 4K + 1) rows boxes, score with one K for the file")
        boxes.append(rows[:, :4 * k].reshape(-1, k, 4))
        labels.append(np.full(len(rows), int(key) - 1, np.int64))
        scores.append(rows[:, -1])
    if k is None:
        raise ActFormatError(f"{source}: an empty dict; expected MOC's {{label: (N, 4K + 1) array}}")
    out = ActTubelets(k, np.concatenate(boxes), np.concatenate(labels), np.concatenate(scores))
    _check_finite(source, out.boxes, out.score)
    return out


def _check_finite(source, *arrays: np.ndarray) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise ActFormatError(f"{source}: non-finite box or score; expected finite numbers")


def act_tubelet_path(root: PathLike, video: str, start: int) -> str:
    """``root/video/%05d.pkl`` (ACT's UCF101 / JHMDB and MOC's name; %06d, ACT's UCFSports, if only it exists)."""
    path = os.path.join(root, video, f"{start:05d}.pkl")
    six = os.path.join(root, video, f"{start:06d}.pkl")
    return six if not os.path.isfile(path) and os.path.isfile(six) else path


def read_video_tubelets(root: PathLike, video: str, nframes: int, *, num_labels: int) -> dict[int, ActTubelets]:
    """{start frame: tubelets} of one video: files for starts 1 .. nframes - K + 1, all required
    (ACT stops on a missing file; here an :class:`ActFormatError` names it)."""
    first = act_tubelet_path(root, video, 1)
    if not os.path.isfile(first):
        raise ActFormatError(f"{first}: missing (expected ACT / MOC detections <dir>/<video>/<start frame>.pkl)")
    out = {1: read_act_tubelets(first, num_labels=num_labels)}
    k = out[1].k
    for start in range(2, nframes - k + 2):
        path = act_tubelet_path(root, video, start)
        if not os.path.isfile(path):
            raise ActFormatError(f"{path}: missing (video {video!r} has {nframes} frames, tubelets of K = {k}: "
                                 f"expected start frames 1..{nframes - k + 1})")
        out[start] = read_act_tubelets(path, num_labels=num_labels)
        if out[start].k != k:
            raise ActFormatError(f"{path}: tubelets of K = {out[start].k}; {first} has K = {k}")
    return out


def read_yowo_testlist(path: PathLike, *, nframes: dict[str, int]) -> set[tuple[str, int]]:
    """{(video, frame)} of YOWO's ``testlist.txt``: one annotated frame a line, a path whose last
    three parts are ``<class>/<video>/<frame>.<ext>`` (``Basketball/v_Basketball_g01_c01/00009.txt``;
    a leading ``labels/`` or ``rgb-images/`` is allowed), as YOWO's ``datasets/clip.py``
    ``load_data_detection`` splits it. Every video must be in the ground truth (``nframes``)."""
    frames: set[tuple[str, int]] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.replace("\\", "/").split("/")
            stem = parts[-1].split(".")[0]
            video = "/".join(parts[-3:-1])
            if len(parts) < 3 or not stem.isdigit() or int(stem) < 1:
                raise DataError(f"{path}:{lineno}: expected <class>/<video>/<frame number>.<ext>, got {line!r}")
            if video not in nframes:
                raise DataError(f"{path}:{lineno}: video {video!r} is not in the ground truth")
            frames.add((video, int(stem)))
    if not frames:
        raise DataError(f"{path}: no frames listed (expected YOWO's testlist.txt, one frame a line)")
    return frames
