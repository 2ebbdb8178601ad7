"""Where, when and how large each actor appears in a synthesized clip.

Every random choice is drawn from the generator the caller passes in, which the datasets
seed with ``(seed, epoch, index)``: sample i is the same on any worker, rank or resume.
Positions are integer pixels per frame (sub-pixel paste would resample the actor and break
the "alpha-1 voxel equals the tube pixel" exactness); drift is linear and rounded per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stal.errors import DataError

TRAJECTORIES = ("static", "linear")
OCCLUSIONS = ("random", "depth")


@dataclass(frozen=True)
class PlacementSpec:
    """The placement policy (all fractions are of the clip's height / width).

    actors_min, actors_max: number of actors per clip (inclusive).
    scale_min, scale_max: actor height (the tube's tallest per-frame box) as a fraction of
        the clip height, drawn uniformly.
    trajectory: "static" or "linear" (constant-velocity drift of up to ``max_drift``).
    partial_prob: probability that an actor enters or leaves mid-clip (visible for a random
        run of at least ``min_visible`` frames); tubes shorter than the clip are always partial.
    keep_inside: the actor's canvas stays inside the frame in every frame (else up to half
        of it may leave the frame).
    flip_prob: probability of mirroring an actor horizontally.
    occlusion: "random" (draw order = order drawn) or "depth" (lower feet are in front).
    strict_length: a tube longer than the clip is an error instead of a random crop.
    x_range: (first, last) fraction of the clip width the canvas is placed in: its columns
        stay within ``[floor(first * W), floor(last * W))`` (up to half the canvas outside
        without ``keep_inside``); (0, 1) is the whole frame (the same draws as without it).
    """

    actors_min: int = 1
    actors_max: int = 3
    scale_min: float = 0.3
    scale_max: float = 0.6
    trajectory: str = "static"
    max_drift: float = 0.2
    partial_prob: float = 0.0
    min_visible: int = 1
    keep_inside: bool = True
    flip_prob: float = 0.5
    occlusion: str = "random"
    strict_length: bool = False
    x_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if not 1 <= self.actors_min <= self.actors_max:
            raise ValueError(f"need 1 <= actors_min <= actors_max, got {self.actors_min}, {self.actors_max}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        if self.trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory {self.trajectory!r}: expected one of {TRAJECTORIES}")
        if self.occlusion not in OCCLUSIONS:
            raise ValueError(f"occlusion {self.occlusion!r}: expected one of {OCCLUSIONS}")
        if not 0.0 <= self.x_range[0] < self.x_range[1] <= 1.0:
            raise ValueError(f"need 0 <= x_range[0] < x_range[1] <= 1, got {tuple(self.x_range)}")


@dataclass
class Placement:
    """One actor's placement in a (T, H, W) clip.

    tube: index into the tube bank. height, width: pixel size of the scaled canvas.
    frames: int64 (T,) tube frame shown in each clip frame, -1 where absent.
    top, left: int64 (T,) canvas position per frame. flip: mirrored horizontally.
    """

    tube: int
    height: int
    width: int
    frames: np.ndarray
    top: np.ndarray
    left: np.ndarray
    flip: bool


def scaled_size(*, canvas: tuple[int, int], actor_height: int, fraction: float, clip_height: int) -> tuple[int, int]:
    """Canvas (h, w) scaled so that the actor is ``fraction`` of the clip height (at least 1 px)."""
    factor = fraction * clip_height / max(actor_height, 1)
    return max(1, int(round(canvas[0] * factor))), max(1, int(round(canvas[1] * factor)))


def _visible_run(rng: np.random.Generator, spec: PlacementSpec, T: int, n: int, path: str) -> tuple[int, int, int]:
    """(first clip frame, number of visible frames, first tube frame) of one actor."""
    if n > T and spec.strict_length:
        raise DataError(f"{path}: tube has {n} frames, longer than the {T}-frame clip "
                        f"(strict_length is set; unset it to crop a random window)")
    length = min(n, T)
    if length == T and T > 1 and rng.uniform() < spec.partial_prob:
        length = int(rng.integers(min(max(spec.min_visible, 1), T - 1), T))
    start = int(rng.integers(0, T - length + 1))
    first = int(rng.integers(0, n - length + 1))
    return start, length, first


def column_range(spec: PlacementSpec, width: int) -> tuple[int, int]:
    """[x0, x1): the columns of a ``width``-pixel frame that ``spec.x_range`` places canvases in."""
    return int(spec.x_range[0] * width), int(spec.x_range[1] * width)  # floor: (0.5, 1) is [W // 2, W)


def _positions(rng: np.random.Generator, spec: PlacementSpec, T: int, H: int, W: int,
               h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame integer (top, left) of an (h, w) canvas, static or drifting linearly, inside
    the columns of ``spec.x_range``."""
    slack_y, slack_x = (0, 0) if spec.keep_inside else (h // 2, w // 2)
    c0, c1 = column_range(spec, W)
    lo_y, hi_y = -slack_y, H - h + slack_y
    lo_x, hi_x = c0 - slack_x, c1 - w + slack_x
    y0, x0 = rng.uniform(lo_y, hi_y), rng.uniform(lo_x, hi_x)
    y1, x1 = y0, x0
    if spec.trajectory == "linear":
        y1 = float(np.clip(y0 + rng.uniform(-1, 1) * spec.max_drift * H, lo_y, hi_y))
        x1 = float(np.clip(x0 + rng.uniform(-1, 1) * spec.max_drift * W, lo_x, hi_x))
    if spec.trajectory == "static":  # the same integers as the ramp below with zero slope, without it
        return np.full(T, np.rint(y0), np.int64), np.full(T, np.rint(x0), np.int64)
    s = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    return np.rint(y0 + s * (y1 - y0)).astype(np.int64), np.rint(x0 + s * (x1 - x0)).astype(np.int64)


def place_actors(rng: np.random.Generator, spec: PlacementSpec, *, tubes: list[tuple[int, int, int, int, str]],
                 num_frames: int, height: int, width: int) -> list[Placement]:
    """Draw the placements of one clip, bottom layer first.

    tubes: per bank tube ``(frames, canvas h, canvas w, actor_height, path)`` (the index
    metadata, so no tube array is loaded to place it).
    """
    T, H, W = num_frames, height, width
    count = int(rng.integers(spec.actors_min, spec.actors_max + 1))
    out = []
    for tube in rng.integers(0, len(tubes), size=count):
        n, ch, cw, actor_h, path = tubes[int(tube)]
        h, w = scaled_size(canvas=(ch, cw), actor_height=actor_h,
                           fraction=rng.uniform(spec.scale_min, spec.scale_max), clip_height=H)
        c0, c1 = column_range(spec, W)
        if spec.keep_inside and (h > H or w > c1 - c0):
            raise DataError(f"{path}: actor canvas scaled to {h}x{w} is larger than the {H}x{c1 - c0} "
                            f"frame region (lower SYNTHESIS.SCALE_MAX or crop the tube)")
        start, length, first = _visible_run(rng, spec, T, n, path)
        frames = np.full(T, -1, np.int64)
        frames[start:start + length] = np.arange(first, first + length)
        top, left = _positions(rng, spec, T, H, W, h, w)
        out.append(Placement(int(tube), h, w, frames, top, left, bool(rng.uniform() < spec.flip_prob)))
    if spec.occlusion == "depth":  # feet lower in the frame are closer to the camera: drawn last
        out.sort(key=lambda p: int(p.top[p.frames >= 0].max()) + p.height)
    return out
