"""The embedded demo's procedural actors and scenes as synthesis sources (in memory).

``demo_inputs`` feeds ``data_prep/build_tube_bank.py --demo``; ``demo_tubes`` and
``demo_backgrounds`` are the default tube and background sources of TRAIN.DATASET synthesis
when no bank is configured.
"""

from __future__ import annotations

import numpy as np

from stal.demo.render import ACTIONS, SCENES, render_actor, render_scene
from stal.synthesis.paste import ArrayBackgrounds
from stal.synthesis.tube_bank import MemoryTubeBank
from stal.synthesis.tube_sources import Inputs


def demo_inputs(*, per_class: int, num_frames: int, seed: int, pose_randomness: float = 1.0) -> Inputs:
    """The demo's procedural stick-figure actors, ``per_class`` of each action (one input per class)."""
    for c, action in enumerate(ACTIONS):
        def tubes(c=c, action=action):
            rng = np.random.default_rng([seed, c])
            for i in range(per_class):
                rgba = (render_actor(action, num_frames, rng, pose_randomness) * 255).round().astype(np.uint8)
                yield {"rgb": np.ascontiguousarray(rgba[..., :3]), "alpha": np.ascontiguousarray(rgba[..., 3]),
                       "labels": [c], "source": {"input": "demo", "kind": "demo", "action": action, "seed": seed, "i": i}}
        yield f"demo:{seed}:{action}", tubes()


def demo_tubes(*, seed: int, per_class: int, num_frames: int, pose_randomness: float = 1.0) -> MemoryTubeBank:
    """The demo's procedural actors as an in-memory tube bank (labels = demo action indices)."""
    rgbas, labels = [], []
    for _, tubes in demo_inputs(per_class=per_class, num_frames=num_frames, seed=seed, pose_randomness=pose_randomness):
        for t in tubes:
            rgbas.append(np.concatenate([t["rgb"], t["alpha"][..., None]], -1))
            labels.append(t["labels"])
    return MemoryTubeBank(rgbas, labels, classes=list(ACTIONS))


def demo_backgrounds(*, seed: int, per_scene: int, num_frames: int, size: int) -> ArrayBackgrounds:
    """The demo's procedural scenes as in-memory background clips uint8 (M, T, S, S, 3)."""
    rng = np.random.default_rng([seed, 7])
    clips = [render_scene(scene, num_frames, size, size, rng) for scene in SCENES for _ in range(per_scene)]
    return ArrayBackgrounds((np.stack(clips) * 255).round().astype(np.uint8))
