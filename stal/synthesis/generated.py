"""A small static-camera video with moving figures, generated and encoded with PyAV.

Tests, the benchmark and the docs' examples use it as real footage whose ground truth is
known: a textured static background and ellipse "people" walking across it.
"""

from __future__ import annotations

import numpy as np

from stal.io.video import write_video


def static_camera_frames(*, num_frames: int = 24, height: int = 96, width: int = 128,
                         figures: tuple[tuple[int, int, int, tuple[int, int, int]], ...] = (
                             (12, 2, 20, (230, 40, 40)), (110, -2, 44, (40, 40, 230)))
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8 (T, H, W, 3), background uint8 (H, W, 3), masks bool (F, T, H, W)).

    figures: (start column, columns per frame, top row, RGB colour) of 16x30 ellipses.
    """
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.stack([np.sin(xx / 7) * 40 + 120, np.cos(yy / 5) * 40 + 110, (xx + yy) % 50 + 80], -1).astype(np.uint8)
    masks = np.zeros((len(figures), num_frames, height, width), bool)
    frames = np.repeat(bg[None], num_frames, 0)
    for k, (x0, vx, top, colour) in enumerate(figures):
        for t in range(num_frames):
            m = ((xx - (x0 + vx * t)) / 8.0) ** 2 + ((yy - top - 15) / 15.0) ** 2 <= 1.0
            masks[k, t] = m
            frames[t][m] = colour
    return frames, bg, masks


def encode_video(path: str, frames: np.ndarray, *, fps: int = 10, crf: int = 18, codec: str = "libx264") -> None:
    """Write uint8 (T, H, W, 3) frames (even H and W) as an H.264 mp4 with PyAV."""
    write_video(path, frames, fps=fps, codec=codec, options={"crf": str(crf)})
