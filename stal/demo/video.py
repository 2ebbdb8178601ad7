"""The embedded video demo's evaluation splits, written in AVA format from ``DEMO.SEED``.

Training clips are not stored: ``TRAIN.DATASET demo`` is the production synthesis path (the
:class:`stal.synthesis.paste.PasteSynthesizer`, its placement, compiled kernels and
provenance) over the demo's procedural sources (:mod:`stal.demo.banks`), with scene k going
with action k with probability SYNTHESIS.SCENE_BIAS. The evaluation splits are rendered by
the same synthesizer, with scenes drawn independently of the actions (scene bias 0), and
written on first use (seconds, no download) under ``<root>/v2_seed<S>_s<SIZE>_p<POSE>_n<TUBES>_a<ACTORS>/``:

- ``test/``: new actors (their own stream) on new scenes: the reported ``frame_mAP``;
- ``val/``: generated like ``test/`` from other streams: ``val_frame_mAP``, the split every
  setting is chosen on;
- ``val_seen/``: like ``val/`` but its actors are the training source's own actors (rendered
  longer): ``val_seen_frame_mAP``; its gap to ``val_frame_mAP`` measures how much a model
  memorized actors instead of learning the motion.

Each split holds ``frames/<video>/<video>_%06d.jpg`` (1-based file numbers, frame index i is
file i+1), ``annotations/demo_<split>_gt.csv``, ``demo_<split>_person_boxes.csv`` (the true
boxes jittered by about 1% of the frame, with a score, like a person detector's output) and
``demo_labelmap.pbtxt``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stal.demo.banks import (TEST_ACTORS, TEST_SCENES, TRAIN_ACTORS, VAL_ACTORS, VAL_SCENES, DemoScenes,
                             ProceduralActors)
from stal.demo.render import ACTIONS
from stal.formats.ava import AvaTable, write_ava_csv, write_labelmap
from stal.progress import progress
from stal.synthesis.paste import PasteSynthesizer
from stal.synthesis.placement import PlacementSpec

FIRST_SECOND = 902  # AVA convention: annotated keyframes start at second 902 of a video
VIDEO_START = 900  # second of the first extracted frame (AVA: 900)
# Actor canvas height as a fraction of the frame in the evaluation splits; the demo configs
# train with the same SYNTHESIS.SCALE_MIN / MAX.
SPLIT_SCALE = (0.4, 0.5)
# Actors per class that the test / validation splits draw from (new actors: a video's
# actors are hardly ever drawn twice).
NEW_ACTORS_PER_CLASS = 4096
# split -> (actor stream, scene stream, stream of the placement draws)
SPLITS = {"test": (TEST_ACTORS, TEST_SCENES, 2), "val": (VAL_ACTORS, VAL_SCENES, 3),
          "val_seen": (TRAIN_ACTORS, VAL_SCENES, 4)}


@dataclass
class DemoSplit:
    """Where one AVA-format evaluation split of the demo lives."""

    root: str
    name: str

    @property
    def frames(self) -> str:
        return os.path.join(self.root, self.name, "frames")

    @property
    def annotations(self) -> str:
        return os.path.join(self.root, self.name, "annotations")

    @property
    def gt_csv(self) -> str:
        return os.path.join(self.annotations, f"demo_{self.name}_gt.csv")

    @property
    def person_boxes_csv(self) -> str:
        return os.path.join(self.annotations, f"demo_{self.name}_person_boxes.csv")

    @property
    def labelmap(self) -> str:
        return os.path.join(self.annotations, "demo_labelmap.pbtxt")


@dataclass
class DemoPaths:
    """Where one generated demo dataset lives: its splits and completion marker."""

    root: str

    def split(self, name: str) -> DemoSplit:
        if name not in SPLITS:
            raise ValueError(f"demo split {name!r}: expected one of {tuple(SPLITS)}")
        return DemoSplit(self.root, name)

    @property
    def test(self) -> DemoSplit:
        return self.split("test")

    @property
    def complete_marker(self) -> str:
        return os.path.join(self.root, "COMPLETE")


def demo_paths(root: str, *, seed: int, size: int, pose_randomness: float, tubes_per_class: int,
               max_actors: int) -> DemoPaths:
    """Each setting that changes the written splits gets its own directory (no stale data)."""
    return DemoPaths(os.path.join(root, f"v2_seed{seed}_s{size}_p{pose_randomness:g}_n{tubes_per_class}_a{max_actors}"))


def split_synthesizer(name: str, *, seed: int, size: int, num_frames: int, max_actors: int,
                      pose_randomness: float, tubes_per_class: int) -> PasteSynthesizer:
    """The synthesizer of split ``name``: 1..max_actors static actors over any scene (bias 0)."""
    actors, scenes, _ = SPLITS[name]
    per_class = tubes_per_class if actors == TRAIN_ACTORS else NEW_ACTORS_PER_CLASS
    spec = PlacementSpec(actors_min=1, actors_max=max_actors, scale_min=SPLIT_SCALE[0], scale_max=SPLIT_SCALE[1],
                         trajectory="static", keep_inside=True, flip_prob=0.5)
    return PasteSynthesizer(
        tubes=ProceduralActors(seed=seed, stream=actors, per_class=per_class, num_frames=num_frames,
                               pose_randomness=pose_randomness, cache_size=8),
        backgrounds=DemoScenes(seed=seed, stream=scenes, per_scene=NEW_ACTORS_PER_CLASS, num_frames=num_frames,
                               size=size, cache_size=1),
        placement=spec, num_frames=num_frames, height=size, width=size, num_classes=len(ACTIONS),
        clip_dtype="uint8", scene_bias=0.0)


def _write_frames(directory: str, video: str, clip: np.ndarray) -> None:
    """Write ``clip`` uint8 (T, H, W, 3) as AVA-style JPEGs ``<video>_%06d.jpg`` (1-based)."""
    os.makedirs(directory, exist_ok=True)
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(os.path.join(directory, f"{video}_{t + 1:06d}.jpg"), quality=95)


def generate_split(split: DemoSplit, *, seed: int, size: int, num_videos: int, keyframes: int, fps: int,
                   max_actors: int, pose_randomness: float, tubes_per_class: int) -> None:
    """Write one AVA-format split (frames, ground truth, person boxes, label map)."""
    last_second = FIRST_SECOND + keyframes - 1
    num_frames = (last_second - VIDEO_START + 1) * fps  # room for a centred clip at the end
    synth = split_synthesizer(split.name, seed=seed, size=size, num_frames=num_frames, max_actors=max_actors,
                              pose_randomness=pose_randomness, tubes_per_class=tubes_per_class)
    rng = np.random.default_rng([seed, SPLITS[split.name][2]])
    gt_rows, det_rows = [], []
    for v in progress(range(num_videos), desc=f"demo {split.name} split", unit="video", leave=False):
        video = f"demo{v:04d}"
        sample = synth(rng)
        _write_frames(os.path.join(split.frames, video), video, sample.clip)
        for k, action in enumerate(sample.labels):
            for second in range(FIRST_SECOND, last_second + 1):
                box = sample.boxes[k, (second - VIDEO_START) * fps]
                if np.isnan(box).any():  # hidden behind the other actor in that frame
                    continue
                gt_rows.append((video, second, box, int(action) + 1, k))
                noisy = np.clip(box + rng.normal(0.0, 0.01, size=4), 0.0, 1.0)
                det_rows.append((video, second, noisy, -1, rng.uniform(0.9, 1.0)))
    os.makedirs(split.annotations, exist_ok=True)
    write_ava_csv(split.gt_csv, _table(gt_rows), score=False)
    write_ava_csv(split.person_boxes_csv, _table(det_rows), score=True)
    write_labelmap(split.labelmap, {i + 1: name for i, name in enumerate(ACTIONS)})


def _table(rows: list) -> AvaTable:
    """Rows (video, second, box (4,), action, extra) as an :class:`AvaTable`."""
    return AvaTable(
        video=np.array([r[0] for r in rows], dtype=object),
        timestamp=np.array([r[1] for r in rows], np.int64),
        boxes=np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
        action=np.array([r[3] for r in rows], np.int64),
        extra=np.array([r[4] for r in rows], np.float32),
    )


def ensure_demo_data(*, root: str, seed: int, size: int, tubes_per_class: int, test_videos: int,
                     test_keyframes: int, fps: int, max_actors: int, pose_randomness: float = 1.0) -> DemoPaths:
    """Write the demo's evaluation splits for ``seed`` under ``root`` unless a complete copy is there."""
    paths = demo_paths(root, seed=seed, size=size, pose_randomness=pose_randomness,
                       tubes_per_class=tubes_per_class, max_actors=max_actors)
    if os.path.exists(paths.complete_marker):
        return paths
    # Generate into a private directory and rename it into place: concurrent runs (seed
    # sweeps) never see a half-written dataset, and the first finished copy wins.
    os.makedirs(root, exist_ok=True)
    tmp = DemoPaths(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        for name in SPLITS:
            generate_split(tmp.split(name), seed=seed, size=size, num_videos=test_videos, keyframes=test_keyframes,
                           fps=fps, max_actors=max_actors, pose_randomness=pose_randomness,
                           tubes_per_class=tubes_per_class)
        with open(tmp.complete_marker, "w") as f:
            f.write("ok\n")
        os.rename(tmp.root, paths.root)
    except OSError:
        if not os.path.exists(paths.complete_marker):
            raise
    finally:
        shutil.rmtree(tmp.root, ignore_errors=True)
    return paths
