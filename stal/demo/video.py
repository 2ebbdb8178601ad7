"""The embedded demo: generated banks, an on-the-fly biased training set, an AVA-format test split.

Everything is generated from ``DEMO.SEED`` on first use (a few seconds, no download) under
``<root>/seed<SEED>_s<SIZE>/``:

- ``train_bank.npz``: actor tubes (uint8 (N, 16, 28, 24, 4) RGBA) with action labels and
  background clips (uint8 (M, 16, S, S, 3)) with scene types.
- ``test/``: an AVA-format dataset with scenes drawn independently of the actions:
  ``frames/<video>/<video>_%06d.jpg`` (1-based file numbers, frame index i is file i+1),
  ``annotations/demo_test_gt.csv``, ``demo_person_boxes.csv`` (ground-truth boxes jittered,
  with a score, like a person detector's output), ``demo_labelmap.pbtxt``.

Training clips are synthesized per sample from the bank: 1-2 actors over a background whose
scene goes with the first actor's action with probability ``scene_bias``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stal.formats.ava import AvaTable, write_ava_csv, write_labelmap
from stal.demo.render import ACTIONS, SCENES, TUBE_H, TUBE_W, render_actor, render_scene
from stal.io.atomic import atomic_open
from stal.progress import progress
from stal.structures import Sample
from stal.synthesis.compose import PlacedTube, composite, tube_boxes

BANK_FRAMES = 16  # frames per bank tube / background clip
FIRST_SECOND = 902  # AVA convention: annotated keyframes start at second 902 of a video
VIDEO_START = 900  # second of the first extracted frame (AVA: 900)


@dataclass
class DemoPaths:
    """Where one generated demo dataset lives."""

    root: str

    @property
    def bank(self) -> str:
        return os.path.join(self.root, "train_bank.npz")

    @property
    def frames(self) -> str:
        return os.path.join(self.root, "test", "frames")

    @property
    def annotations(self) -> str:
        return os.path.join(self.root, "test", "annotations")

    @property
    def gt_csv(self) -> str:
        return os.path.join(self.annotations, "demo_test_gt.csv")

    @property
    def person_boxes_csv(self) -> str:
        return os.path.join(self.annotations, "demo_person_boxes.csv")

    @property
    def labelmap(self) -> str:
        return os.path.join(self.annotations, "demo_labelmap.pbtxt")

    @property
    def complete_marker(self) -> str:
        return os.path.join(self.root, "COMPLETE")


def demo_paths(root: str, seed: int, size: int, pose_randomness: float = 1.0) -> DemoPaths:
    """Each (seed, size, pose randomness) gets its own directory, so configs never share stale data."""
    return DemoPaths(os.path.join(root, f"seed{seed}_s{size}_p{pose_randomness:g}"))


def _no_overlap_position(rng: np.random.Generator, size: int, taken: list[tuple[int, int]],
                         tries: int = 30) -> tuple[int, int]:
    """A (top, left) for a tube canvas whose rectangle avoids the ``taken`` canvases if possible."""
    for _ in range(tries):
        top, left = int(rng.integers(0, size - TUBE_H + 1)), int(rng.integers(0, size - TUBE_W + 1))
        if all(abs(top - t) >= TUBE_H or abs(left - l) >= TUBE_W for t, l in taken):
            return top, left
    return top, left


def generate_bank(path: str, *, seed: int, size: int, tubes_per_class: int,
                  backgrounds_per_scene: int, pose_randomness: float) -> None:
    """Write the training bank (actor tubes and background clips) to ``path`` (npz)."""
    rng = np.random.default_rng([seed, 1])
    labels = np.repeat(np.arange(len(ACTIONS)), tubes_per_class)
    tubes = np.stack([render_actor(ACTIONS[c], BANK_FRAMES, rng, pose_randomness) for c in labels])
    scenes = np.repeat(np.arange(len(SCENES)), backgrounds_per_scene)
    backgrounds = np.stack([render_scene(SCENES[s], BANK_FRAMES, size, size, rng) for s in scenes])
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, tubes=(tubes * 255).round().astype(np.uint8), tube_labels=labels,
                            backgrounds=(backgrounds * 255).round().astype(np.uint8), scenes=scenes)


class DemoBank:
    """The training bank in memory: tubes float32 (N, 16, 28, 24, 4), backgrounds (M, 16, S, S, 3)."""

    def __init__(self, path: str):
        with np.load(path) as data:
            self.tubes = data["tubes"].astype(np.float32) / 255.0
            self.tube_labels = data["tube_labels"].astype(np.int64)
            self.backgrounds = data["backgrounds"].astype(np.float32) / 255.0
            self.scenes = data["scenes"].astype(np.int64)
        self.by_scene = [np.flatnonzero(self.scenes == s) for s in range(len(SCENES))]


@dataclass
class DemoLayout:
    """The random choices behind one training clip, before compositing.

    background: float32 (T, H, W, 3) in [0, 1], the clip's background window.
    placed: the actor tubes, in paste order (later on top).
    labels: int64 (K,) action of each tube (0-based).
    """

    background: np.ndarray
    placed: list[PlacedTube]
    labels: np.ndarray


def draw_layout(bank: DemoBank, rng: np.random.Generator, *, num_frames: int,
                num_actors: int, scene_bias: float) -> DemoLayout:
    """Draw tubes, scene, background window and placement for one clip (see synthesize_sample)."""
    size = bank.backgrounds.shape[2]
    tube_ids = rng.integers(0, len(bank.tubes), size=num_actors)
    labels = bank.tube_labels[tube_ids]
    scene = int(labels[0]) if rng.uniform() < scene_bias else int(rng.integers(0, len(SCENES)))
    bg = bank.backgrounds[rng.choice(bank.by_scene[scene])]
    start = int(rng.integers(0, BANK_FRAMES - num_frames + 1))
    placed: list[PlacedTube] = []
    for tid in tube_ids:
        t0 = int(rng.integers(0, BANK_FRAMES - num_frames + 1))
        rgba = bank.tubes[tid, t0:t0 + num_frames]
        if rng.uniform() < 0.5:
            rgba = rgba[:, :, ::-1]
        top, left = _no_overlap_position(rng, size, [(p.top, p.left) for p in placed])
        placed.append(PlacedTube(np.ascontiguousarray(rgba), top, left))
    return DemoLayout(background=bg[start:start + num_frames], placed=placed, labels=labels)


def render_layout(layout: DemoLayout, background: np.ndarray | None = None) -> Sample:
    """Composite the layout's tubes over its background (or over ``background``, same shape)."""
    bg = layout.background if background is None else background
    _, H, W, _ = bg.shape
    clip, prov = composite(bg, layout.placed)
    boxes = np.stack([tube_boxes(p, H, W) for p in layout.placed])
    return Sample(clip=clip, boxes=boxes, labels=layout.labels, keyframe=len(bg) // 2, provenance=prov)


def swapped_background(bank: DemoBank, rng: np.random.Generator, *, scene_of: np.ndarray,
                       num_frames: int) -> np.ndarray:
    """A background window (T, H, W, 3) whose scene differs from the one the layout's first
    actor's action goes with: the counterfactual rendering that breaks the scene bias.

    scene_of: the layout's labels (scene k goes with action k).
    """
    scene = int(rng.choice([s for s in range(len(SCENES)) if s != int(scene_of[0])]))
    bg = bank.backgrounds[rng.choice(bank.by_scene[scene])]
    start = int(rng.integers(0, BANK_FRAMES - num_frames + 1))
    return bg[start:start + num_frames]


def synthesize_sample(bank: DemoBank, rng: np.random.Generator, *, num_frames: int,
                      num_actors: int, scene_bias: float) -> Sample:
    """One training clip: ``num_actors`` tubes pasted on a background; keyframe = T // 2.

    With probability ``scene_bias`` the background's scene is the one paired with the first
    actor's action (scene k <-> action k); otherwise it is drawn uniformly.
    """
    return render_layout(draw_layout(bank, rng, num_frames=num_frames, num_actors=num_actors,
                                     scene_bias=scene_bias))


def _write_frames(directory: str, video: str, clip: np.ndarray) -> None:
    """Write ``clip`` (T, H, W, 3) in [0, 1] as AVA-style JPEGs ``<video>_%06d.jpg`` (1-based)."""
    os.makedirs(directory, exist_ok=True)
    for t, frame in enumerate((clip * 255).round().astype(np.uint8)):
        Image.fromarray(frame).save(os.path.join(directory, f"{video}_{t + 1:06d}.jpg"), quality=95)


def _test_video(rng: np.random.Generator, *, size: int, num_frames: int,
                max_actors: int, pose_randomness: float) -> tuple[np.ndarray, list[PlacedTube], np.ndarray]:
    """One test video: a uniformly drawn scene, 1..max_actors actors with uniform actions."""
    scene = SCENES[int(rng.integers(0, len(SCENES)))]
    num_actors = int(rng.integers(1, max_actors + 1))
    actions = rng.integers(0, len(ACTIONS), size=num_actors)
    placed: list[PlacedTube] = []
    for a in actions:
        rgba = render_actor(ACTIONS[a], num_frames, rng, pose_randomness)
        top, left = _no_overlap_position(rng, size, [(p.top, p.left) for p in placed])
        placed.append(PlacedTube(rgba, top, left))
    clip, _ = composite(render_scene(scene, num_frames, size, size, rng), placed)
    return clip, placed, actions


def generate_test_split(paths: DemoPaths, *, seed: int, size: int, num_videos: int,
                        keyframes: int, fps: int, max_actors: int, pose_randomness: float) -> None:
    """Write the AVA-format test split (frames, ground truth, person boxes, label map)."""
    rng = np.random.default_rng([seed, 2])
    last_second = FIRST_SECOND + keyframes - 1
    num_frames = (last_second - VIDEO_START + 1) * fps  # room for a centred clip at the end
    gt_rows, det_rows = [], []
    for v in progress(range(num_videos), desc="demo test split", unit="video", leave=False):
        video = f"demo{v:04d}"
        clip, placed, actions = _test_video(rng, size=size, num_frames=num_frames, max_actors=max_actors,
                                             pose_randomness=pose_randomness)
        _write_frames(os.path.join(paths.frames, video), video, clip)
        for k, (tube, action) in enumerate(zip(placed, actions)):
            boxes = tube_boxes(tube, size, size)
            for second in range(FIRST_SECOND, last_second + 1):
                box = boxes[(second - VIDEO_START) * fps]
                if np.isnan(box).any():
                    continue
                gt_rows.append((video, second, box, int(action) + 1, k))
                # A person detector's box: the true box, jittered by about 1% of the frame.
                noisy = np.clip(box + rng.normal(0.0, 0.01, size=4), 0.0, 1.0)
                det_rows.append((video, second, noisy, -1, rng.uniform(0.9, 1.0)))
    os.makedirs(paths.annotations, exist_ok=True)
    write_ava_csv(paths.gt_csv, _table(gt_rows), score=False)
    write_ava_csv(paths.person_boxes_csv, _table(det_rows), score=True)
    write_labelmap(paths.labelmap, {i + 1: name for i, name in enumerate(ACTIONS)})


def _table(rows: list) -> AvaTable:
    """Rows (video, second, box (4,), action, extra) as an :class:`AvaTable`."""
    return AvaTable(
        video=np.array([r[0] for r in rows], dtype=object),
        timestamp=np.array([r[1] for r in rows], np.int64),
        boxes=np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
        action=np.array([r[3] for r in rows], np.int64),
        extra=np.array([r[4] for r in rows], np.float32),
    )


def ensure_demo_data(*, root: str, seed: int, size: int, tubes_per_class: int,
                     backgrounds_per_scene: int, test_videos: int, test_keyframes: int,
                     fps: int, max_actors: int, pose_randomness: float = 1.0) -> DemoPaths:
    """Generate the demo data for ``seed`` under ``root`` unless a complete copy is there."""
    paths = demo_paths(root, seed, size, pose_randomness)
    if os.path.exists(paths.complete_marker):
        return paths
    # Generate into a private directory and rename it into place: concurrent runs (seed
    # sweeps) never see a half-written dataset, and the first finished copy wins.
    os.makedirs(root, exist_ok=True)
    tmp = DemoPaths(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    try:
        generate_bank(tmp.bank, seed=seed, size=size, tubes_per_class=tubes_per_class,
                      backgrounds_per_scene=backgrounds_per_scene, pose_randomness=pose_randomness)
        generate_test_split(tmp, seed=seed, size=size, num_videos=test_videos,
                            keyframes=test_keyframes, fps=fps, max_actors=max_actors,
                            pose_randomness=pose_randomness)
        with open(tmp.complete_marker, "w") as f:
            f.write("ok\n")
        os.rename(tmp.root, paths.root)
    except OSError:
        if not os.path.exists(paths.complete_marker):
            raise
    finally:
        shutil.rmtree(tmp.root, ignore_errors=True)
    return paths
