"""Generators of tiny datasets in the native formats (videos encoded with PyAV, JPEGs, text files).

Frame k of a generated video is uniformly grey with value ``grey(k)``, so tests can tell which
source frame an extracted frame or a decoded clip came from.
"""

from __future__ import annotations

import os

import av
import numpy as np
from PIL import Image


def grey(k: int) -> int:
    return (40 * k) % 256 if k % 2 else (40 * k + 20) % 256


def write_video(path, *, frames: int, fps: int, size: tuple[int, int] = (32, 24), codec: str = "mpeg4") -> None:
    """Encode ``frames`` frames of ``size`` (width, height) at ``fps``; frame k is grey(k)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"} if codec == "mpeg4" else {}
        for k in range(frames):
            img = np.full((height, width, 3), grey(k), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_jpegs(folder, names: list[str], *, size: tuple[int, int] = (32, 24), values=None) -> None:
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(names):
        v = grey(i) if values is None else values[i]
        Image.fromarray(np.full((size[1], size[0], 3), v, np.uint8)).save(os.path.join(folder, name), quality=95)
