"""The embedded demo's procedural actors and scenes as synthesis sources.

:class:`ProceduralActors` is a tube source (the interface of
:class:`stal.synthesis.tube_bank.TubeBank`) and :class:`DemoScenes` a background source with
scene labels (the interface of :class:`stal.synthesis.paste.BackgroundSource`, plus
``scene=``): the real :class:`stal.synthesis.paste.PasteSynthesizer` pastes the one over the
other, exactly as it pastes a tube bank over a background bank. Nothing is stored: item i
of either is rendered from its own generator ``(seed, stream, class or scene, i)`` when it is
first read (about 1 ms per 16-frame actor), so a source of thousands of actors costs nothing
up front and every process renders the same pixels.

Streams keep the demo's parts apart (docs/efficacy.md, E3): actors 1 are the training
actors, 2 the test split's, 3 the validation split's; scenes 7 are the training scenes, 12
and 13 the test and validation scenes. The same actor rendered with more frames is the same
actor longer: :func:`stal.demo.render.render_actor` draws every appearance and motion
parameter before its first frame, so frames 0..15 of a 40-frame rendering are the 16-frame
tube (the "seen actors" validation split relies on it).

``demo_inputs`` feeds ``data_prep/build_tube_bank.py --demo`` (the same actors, on disk).
"""

from __future__ import annotations

import numpy as np

from stal.demo.render import ACTIONS, SCENES, TUBE_H, TUBE_W, render_actor, render_scene
from stal.synthesis.tube_bank import LRUCache, Tube, alpha_boxes
from stal.synthesis.tube_sources import Inputs

TRAIN_ACTORS, TEST_ACTORS, VAL_ACTORS = 1, 2, 3  # actor streams
TRAIN_SCENES, TEST_SCENES, VAL_SCENES = 7, 12, 13  # scene streams


def actor_rgba(*, seed: int, stream: int, action: int, index: int, num_frames: int,
               pose_randomness: float) -> np.ndarray:
    """uint8 (num_frames, TUBE_H, TUBE_W, 4): actor ``index`` of class ``action`` in ``stream``."""
    rng = np.random.default_rng([seed, stream, action, index])
    rgba = render_actor(ACTIONS[action], num_frames, rng, pose_randomness)
    return (rgba * 255).round().astype(np.uint8)


class ProceduralActors:
    """``per_class`` stick-figure actors of each demo action; tube i is class ``i // per_class``.

    entries: the tube-bank index entries (canvas TUBE_H x TUBE_W; ``actor_height`` is the
    canvas height, so SYNTHESIS.SCALE_* sizes the canvas: the figure's own height changes
    from frame to frame as it jumps or waves, and placing by it would need every tube rendered).
    """

    def __init__(self, *, seed: int, stream: int, per_class: int, num_frames: int,
                 pose_randomness: float = 1.0, cache_size: int = 512):
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.seed, self.stream, self.per_class = seed, stream, per_class
        self.num_frames, self.pose_randomness = num_frames, pose_randomness
        self.classes = list(ACTIONS)
        self.root = ""
        self.entries = [{"file": f"<demo actor {seed}/{stream}/{c}/{i}>", "frames": num_frames,
                         "height": TUBE_H, "width": TUBE_W, "labels": [c], "actor_height": TUBE_H}
                        for c in range(len(ACTIONS)) for i in range(per_class)]
        self._cache = LRUCache(cache_size)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Tube:
        return self._cache.get(i, lambda: self._render(i))

    def _render(self, i: int) -> Tube:
        c, j = divmod(int(i), self.per_class)
        rgba = actor_rgba(seed=self.seed, stream=self.stream, action=c, index=j, num_frames=self.num_frames,
                          pose_randomness=self.pose_randomness)
        return Tube(rgba=rgba, boxes=alpha_boxes(rgba[..., 3] > 0), labels=[c], actor_height=TUBE_H,
                    path=self.entries[i]["file"])


class DemoScenes:
    """``per_scene`` background clips of each demo scene, uint8 (num_frames, size, size, 3) each.

    ``clip(rng, ..., scene=k)`` draws a clip of scene k (None: any scene, uniformly) and a
    random window of ``num_frames`` frames.
    """

    num_scenes = len(SCENES)

    def __init__(self, *, seed: int, stream: int, per_scene: int, num_frames: int, size: int,
                 cache_size: int = 256):
        if per_scene < 1:
            raise ValueError(f"per_scene must be >= 1, got {per_scene}")
        self.seed, self.stream, self.per_scene = seed, stream, per_scene
        self.num_frames, self.size = num_frames, size
        self._cache = LRUCache(cache_size)

    def clip(self, rng: np.random.Generator, *, num_frames: int, height: int, width: int,
             scene: int | None = None) -> np.ndarray:
        if (height, width) != (self.size, self.size) or num_frames > self.num_frames:
            raise ValueError(f"demo scenes are {self.num_frames}x{self.size}x{self.size}, "
                             f"need >= {num_frames}x{height}x{width}")
        s = int(rng.integers(0, self.num_scenes)) if scene is None else int(scene)
        i = int(rng.integers(0, self.per_scene))
        t0 = int(rng.integers(0, self.num_frames - num_frames + 1))
        return self._cache.get((s, i), lambda: self._render(s, i))[t0:t0 + num_frames]

    def _render(self, scene: int, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, scene, i])
        clip = render_scene(SCENES[scene], self.num_frames, self.size, self.size, rng)
        return (clip * 255).round().astype(np.uint8)


def demo_inputs(*, per_class: int, num_frames: int, seed: int, pose_randomness: float = 1.0) -> Inputs:
    """The demo's training actors, ``per_class`` of each action (one input per class): tube i of
    class c is :class:`ProceduralActors`' tube ``c * per_class + i`` of stream TRAIN_ACTORS."""
    for c, action in enumerate(ACTIONS):
        def tubes(c=c, action=action):
            for i in range(per_class):
                rgba = actor_rgba(seed=seed, stream=TRAIN_ACTORS, action=c, index=i, num_frames=num_frames,
                                  pose_randomness=pose_randomness)
                yield {"rgb": np.ascontiguousarray(rgba[..., :3]), "alpha": np.ascontiguousarray(rgba[..., 3]),
                       "labels": [c], "source": {"input": "demo", "kind": "demo", "action": action, "seed": seed, "i": i}}
        yield f"demo:{seed}:{action}", tubes()
