"""Reading still images and frame folders (PIL): the one place stal opens an image file.

Arrays are uint8 (H, W, 3) RGB; a file that is missing or not an image is a DataError
naming it. Resizing here is PIL bilinear to a square ``size`` (used where images of any
size must share a batch).
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

import numpy as np
from PIL import Image

from stal.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def read_image_and_size(path: str, *, size: int | None = None, what: str = "image") -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 (H, W, 3) RGB, (width, height) of the file); resized to (size, size) when given.

    what: the word used in the error ("image", "frame").
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size, size), Image.BILINEAR)
            return np.asarray(rgb), img.size
    except (OSError, ValueError) as exc:
        reason = str(exc)
        if "truncated" in reason.lower():  # PIL says it three ways, depending on format and point
            reason = f"the file is truncated ({reason})"
        raise DataError(f"cannot read {what} {path}: {reason}") from None


def read_image(path: str, *, size: int | None = None, what: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) RGB of the image at ``path`` (see :func:`read_image_and_size`)."""
    return read_image_and_size(path, size=size, what=what)[0]


def read_frame_files(paths: Sequence[str]) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB from image files of one size; an unreadable file is a DataError naming it."""
    return np.stack([read_image(path, what="frame") for path in paths])


def list_frames(directory: str) -> list[str]:
    """Image files of a frame folder in name order; DataError when there are none."""
    files = sorted(f for f in glob.glob(os.path.join(directory, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"frame folder {directory} has no {'/'.join(IMAGE_EXTENSIONS)} images")
    return files
