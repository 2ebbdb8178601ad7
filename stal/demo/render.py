"""Procedural actors and scenes of the embedded demo.

Actors are stick figures whose action class is defined by motion alone: every actor's
colour, size and build are drawn independently of its class, so only how the limbs move
over time tells "wave" from "jump", "walk" or "spin". Scenes are textured background clips
of four easily recognised types; the demo's training synthesis pairs scene k with action k
most of the time (the bias a detector can shortcut through), its test split does not.
"""

from __future__ import annotations

import numpy as np

ACTIONS = ("wave", "jump", "walk", "spin")
SCENES = ("grass", "water", "brick", "sand")
# Actor canvas (pixels): every tube is rendered into a (TUBE_H, TUBE_W) RGBA canvas.
TUBE_H, TUBE_W = 28, 24


def _segment_distance(px: np.ndarray, py: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Distance of pixel centres (px, py: (h, w)) to segments ``seg`` (S, 4) x0,y0,x1,y1 -> (S, h, w)."""
    x0, y0, x1, y1 = (seg[:, i, None, None] for i in range(4))
    dx, dy = x1 - x0, y1 - y0
    length2 = np.maximum(dx * dx + dy * dy, 1e-6)
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def _limb(origin: tuple[float, float], angle: float, length: float) -> tuple[float, float, float, float]:
    """Segment from ``origin`` at ``angle`` (radians, 0 = down, positive = towards +x)."""
    ox, oy = origin
    return ox, oy, ox + length * np.sin(angle), oy + length * np.cos(angle)


def _pose(action: str, phase: float, scale: float, rest: np.ndarray, direction: int,
          amplitude: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Segments (S, 4) in canvas pixels and the head centre for one frame.

    ``rest`` (4,) are the actor's resting limb angles (left arm, right arm, left leg, right
    leg; radians, 0 = down), drawn from one distribution for every class so that a single
    frame says little about the action; ``phase`` in [0, 1) is the position in the cycle.
    """
    s = scale
    cx, hip_y = TUBE_W / 2, 17.0
    lift = 0.0
    arm_l, arm_r, leg_l, leg_r = rest
    osc = np.sin(2 * np.pi * phase)
    if action == "wave":  # one arm swings back and forth
        if direction > 0:
            arm_l = arm_l + amplitude * osc
        else:
            arm_r = arm_r - amplitude * osc
    elif action == "jump":  # the whole body bobs, limbs keep their pose
        lift = 5.0 * s * abs(osc)
    elif action == "walk":  # legs and arms swing in antiphase
        leg_l, leg_r = leg_l + 0.6 * osc, leg_r - 0.6 * osc
        arm_l, arm_r = arm_l - 0.5 * osc, arm_r + 0.5 * osc
    elif action == "spin":  # both arms turn around the shoulder, a full turn per cycle
        theta = 2 * np.pi * phase * direction
        arm_l, arm_r = arm_l + theta, arm_r + theta
    hip = (cx, hip_y - lift)
    neck = (cx, hip_y - lift - 8.0 * s)
    segs = [
        (*hip, *neck),
        _limb(neck, arm_l, 6.5 * s), _limb(neck, arm_r, 6.5 * s),
        _limb(hip, leg_l, 8.5 * s), _limb(hip, leg_r, 8.5 * s),
    ]
    head = (cx, neck[1] - 2.6 * s)
    return np.asarray(segs, np.float32), head


def render_actor(action: str, num_frames: int, rng: np.random.Generator,
                 pose_randomness: float = 1.0) -> np.ndarray:
    """One actor tube, float32 (T, TUBE_H, TUBE_W, 4) RGBA in [0, 1] with soft edges.

    Colour, size, limb thickness, period, phase and resting pose are random and independent
    of ``action``. ``pose_randomness`` in [0, 1] scales how far the resting arm angles spread
    from a canonical pose (1: anywhere around the shoulder, so one frame says little about
    the action and only motion does; 0: every actor starts from the same pose).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown demo action {action!r}; expected one of {ACTIONS}")
    scale = rng.uniform(0.8, 1.05)
    radius = rng.uniform(0.9, 1.4)
    period = rng.uniform(6.0, 10.0)
    phase0 = rng.uniform()
    direction = int(rng.choice([-1, 1]))
    amplitude = rng.uniform(1.2, 1.6)
    # Arms anywhere around the shoulder, legs apart by a random amount: the same for all classes.
    spread = pose_randomness * np.pi
    rest = np.array([0.5 + rng.uniform(-spread, spread), -0.5 + rng.uniform(-spread, spread),
                     rng.uniform(0.0, 0.5), -rng.uniform(0.0, 0.5)])
    colour = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    py, px = np.mgrid[0:TUBE_H, 0:TUBE_W].astype(np.float32) + 0.5
    out = np.zeros((num_frames, TUBE_H, TUBE_W, 4), np.float32)
    for t in range(num_frames):
        segs, (hx, hy) = _pose(action, (phase0 + t / period) % 1.0, scale, rest, direction, amplitude)
        dist = _segment_distance(px, py, segs).min(0)
        head = np.hypot(px - hx, py - hy) - 2.2 * scale
        # Coverage of a pixel by a shape of the given distance field, 1-pixel soft edge.
        alpha = np.clip(radius + 0.5 - dist, 0.0, 1.0)
        alpha = np.maximum(alpha, np.clip(0.5 - head, 0.0, 1.0))
        out[t, ..., 3] = alpha
        out[t, ..., :3] = colour
    return out


def render_scene(scene: str, num_frames: int, height: int, width: int,
                 rng: np.random.Generator) -> np.ndarray:
    """One background clip, float32 (T, H, W, 3) in [0, 1], with mild temporal change."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    jitter = rng.uniform(-0.06, 0.06, size=3).astype(np.float32)
    if scene == "grass":
        base = np.array([0.25, 0.55, 0.2], np.float32)
        texture = rng.normal(0.0, 0.08, size=(height, width, 1)).astype(np.float32)
        frame = base + jitter + texture * np.array([0.6, 1.0, 0.5], np.float32)
    elif scene == "water":
        base = np.array([0.15, 0.35, 0.7], np.float32)
        freq, shift = rng.uniform(0.3, 0.6), rng.uniform(0, 2 * np.pi)
        frame = None  # waves move: computed per frame below
    elif scene == "brick":
        base = np.array([0.65, 0.3, 0.2], np.float32)
        bh, bw = rng.integers(6, 9), rng.integers(12, 17)
        offset = ((yy // bh) % 2) * (bw // 2)
        mortar = ((yy % bh) < 1) | (((xx + offset) % bw) < 1)
        frame = np.where(mortar[..., None], np.float32(0.8), base + jitter)
        frame = frame + rng.normal(0, 0.03, size=(height, width, 1)).astype(np.float32)
    elif scene == "sand":
        base = np.array([0.85, 0.75, 0.5], np.float32)
        blobs = sum(np.sin(xx * rng.uniform(0.05, 0.2) + rng.uniform(0, 6))
                    * np.cos(yy * rng.uniform(0.05, 0.2) + rng.uniform(0, 6)) for _ in range(3))
        frame = base + jitter + 0.04 * blobs[..., None].astype(np.float32)
    else:
        raise ValueError(f"unknown demo scene {scene!r}; expected one of {SCENES}")
    clip = np.empty((num_frames, height, width, 3), np.float32)
    for t in range(num_frames):
        if scene == "water":
            wave = 0.08 * np.sin(yy * freq + shift + 0.5 * t)
            clip[t] = base + jitter + wave[..., None] * np.array([0.5, 0.7, 1.0], np.float32)
        else:
            clip[t] = frame * (1.0 + 0.02 * np.sin(0.7 * t))
    return np.clip(clip, 0.0, 1.0)
