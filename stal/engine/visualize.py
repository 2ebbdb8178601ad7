"""Pictures of predictions: the annotated video and the per-action score timeline.

Boxes are normalized ``x1, y1, x2, y2``; a keyframe's boxes and top actions are drawn on every
frame from that keyframe until the next one. Drawing uses PIL only (no plotting dependency).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from stal.formats.ava import AvaTable
from stal.io.atomic import atomic_open
from stal.io.video import write_video

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230)]


def _people(det: AvaTable, second: int) -> list[tuple[np.ndarray, list[tuple[int, float]]]]:
    """[(box, [(action, score), ...] best first)] of one keyframe."""
    keep = det.timestamp == second
    people: dict[tuple, list] = {}
    for box, action, score in zip(det.boxes[keep], det.action[keep], det.extra[keep]):
        people.setdefault(tuple(np.round(box, 6)), []).append((int(action), float(score)))
    return [(np.array(b), sorted(a, key=lambda x: -x[1])) for b, a in people.items()]


def annotate_frame(frame: np.ndarray, people, names: dict[int, str], *, top_k: int = 2) -> np.ndarray:
    """uint8 (H, W, 3) copy of ``frame`` with each person's box and top ``top_k`` actions."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    H, W = frame.shape[:2]
    for i, (box, actions) in enumerate(people):
        colour = _COLOURS[i % len(_COLOURS)]
        x1, y1, x2, y2 = box * [W, H, W, H]
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=max(1, W // 160))
        for line, (action, score) in enumerate(actions[:top_k]):
            draw.text((x1 + 2, y1 + 2 + 11 * line), f"{names.get(action, action)} {score:.2f}", fill=colour)
    return np.asarray(img)


def write_annotated_video(path: str, frames: np.ndarray, fps: float, det: AvaTable, names: dict[int, str]) -> None:
    """Encode ``frames`` (N, H, W, 3) with the predictions drawn (MPEG-4 Part 2, atomically)."""
    seconds = sorted(set(det.timestamp.tolist()))
    people = {s: _people(det, s) for s in seconds}

    def annotated():
        for i, frame in enumerate(frames):
            current = [s for s in seconds if s * fps <= i]
            yield annotate_frame(frame, people[current[-1]], names) if current else frame

    write_video(path, annotated(), fps=fps, codec="mpeg4", options={"qscale": "3"}, container_format="mp4")


def draw_timeline(path: str, det: AvaTable, names: dict[int, str], *, width: int = 640, row: int = 36) -> None:
    """PNG: for each action, the highest score over the people at each keyframe, over time."""
    actions = sorted(names)
    seconds = sorted(set(det.timestamp.tolist())) or [0]
    img = Image.new("RGB", (width, row * len(actions) + 32), "white")
    draw = ImageDraw.Draw(img)
    left, span = 90, max(1, seconds[-1] - seconds[0])
    for r, action in enumerate(actions):
        top = 10 + r * row
        draw.text((4, top + row // 3), str(names[action])[:14], fill="black")
        draw.rectangle([left, top, width - 10, top + row - 6], outline=(200, 200, 200))
        points = []
        for s in seconds:
            scores = det.extra[(det.timestamp == s) & (det.action == action)]
            value = float(scores.max()) if len(scores) else 0.0
            x = left + (width - 10 - left) * (s - seconds[0]) / span
            points.append((x, top + (row - 6) * (1 - value)))
        draw.line(points if len(points) > 1 else points * 2, fill=_COLOURS[r % len(_COLOURS)], width=2)
    bottom = 10 + len(actions) * row
    for s in seconds:  # the keyframe times, in seconds
        draw.text((left + (width - 10 - left) * (s - seconds[0]) / span - 3, bottom), str(s), fill="black")
    draw.text((4, bottom), "time (s)", fill="black")
    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")


def write_keyframe_png(path: str, frames: np.ndarray, fps: float, det: AvaTable, names: dict[int, str], *,
                       second: int, min_size: int = 256) -> None:
    """PNG of the keyframe at ``second`` with its predictions, enlarged (nearest) to >= ``min_size``."""
    frame = frames[min(len(frames) - 1, int(round(second * fps)))]
    scale = max(1, -(-min_size // min(frame.shape[:2])))
    big = np.asarray(Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST))
    with atomic_open(path, "wb") as f:
        Image.fromarray(annotate_frame(big, _people(det, second), names)).save(f, format="PNG")
