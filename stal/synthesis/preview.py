"""Preview files of synthesized samples: arrays (npz), a PNG contact sheet and a GIF.

Everything written is a pure function of the sample, and the npz's zip entries carry a
fixed timestamp, so two runs with the same config write byte-identical files.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw

from stal.io.atomic import atomic_write_bytes
from stal.structures import Sample

# Source colours of the provenance overlay (source k uses _PALETTE[(k - 1) % len]).
_PALETTE = np.array([(255, 64, 64), (64, 160, 255), (255, 210, 0), (0, 220, 120), (220, 80, 255),
                     (255, 140, 0)], np.uint8)


def _uint8(clip: np.ndarray) -> np.ndarray:
    return clip if clip.dtype == np.uint8 else np.rint(np.clip(clip, 0, 1) * 255).astype(np.uint8)


def preview_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The npz arrays: clip, background (T, H, W, 3) uint8, ids (T, H, W) int16, alpha
    (K, T, H, W) float32, boxes (K, T, 4) normalized xyxy (NaN where absent), labels, keyframe."""
    clip = _uint8(sample.clip)
    prov = sample.provenance
    return {"clip": clip, "background": _uint8(sample.background) if sample.background is not None else clip,
            "ids": prov.ids.astype(np.int16), "alpha": prov.alpha.astype(np.float32),
            "boxes": sample.boxes.astype(np.float32), "labels": np.asarray(sample.labels),
            "keyframe": np.int64(sample.keyframe)}


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed-compatible file with fixed zip timestamps (reproducible bytes), atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def overlay_frame(arrays: dict[str, np.ndarray], t: int, *, boxes: bool = True) -> Image.Image:
    """Frame t with each source's visible voxels tinted in its colour and its box drawn."""
    frame = arrays["clip"][t].astype(np.float32)
    ids = arrays["ids"][t]
    colour = _PALETTE[(np.maximum(ids, 1) - 1) % len(_PALETTE)].astype(np.float32)
    tinted = np.where((ids > 0)[..., None], 0.5 * frame + 0.5 * colour, frame)
    img = Image.fromarray(np.rint(tinted).astype(np.uint8))
    if boxes:
        draw = ImageDraw.Draw(img)
        H, W = ids.shape
        for k, box in enumerate(arrays["boxes"][:, t]):
            if not np.isnan(box).any():
                x1, y1, x2, y2 = box * [W, H, W, H]
                draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=tuple(int(c) for c in _PALETTE[k % len(_PALETTE)]))
    return img


def contact_sheet(arrays: dict[str, np.ndarray], *, max_frames: int = 8) -> Image.Image:
    """Rows: background, clip, provenance overlay with boxes; columns: up to ``max_frames`` frames."""
    T, H, W = arrays["ids"].shape
    frames = np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(int))
    sheet = Image.new("RGB", (len(frames) * (W + 2), 3 * (H + 2)), (255, 255, 255))
    for col, t in enumerate(frames):
        x = col * (W + 2)
        sheet.paste(Image.fromarray(arrays["background"][t]), (x, 0))
        sheet.paste(Image.fromarray(arrays["clip"][t]), (x, H + 2))
        sheet.paste(overlay_frame(arrays, int(t)), (x, 2 * (H + 2)))
    return sheet


def write_preview(directory: str, index: int, sample: Sample) -> list[str]:
    """Write sample_%04d.npz / .png / .gif under ``directory``; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    arrays = preview_arrays(sample)
    stem = os.path.join(directory, f"sample_{index:04d}")
    write_npz(stem + ".npz", arrays)
    buf = io.BytesIO()
    contact_sheet(arrays).save(buf, format="PNG")
    atomic_write_bytes(stem + ".png", buf.getvalue())
    T, H, W = arrays["ids"].shape
    frames = []
    for t in range(T):
        both = Image.new("RGB", (2 * W + 2, H), (255, 255, 255))
        both.paste(Image.fromarray(arrays["clip"][t]), (0, 0))
        both.paste(overlay_frame(arrays, t), (W + 2, 0))
        frames.append(both)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    atomic_write_bytes(stem + ".gif", buf.getvalue())
    return [stem + ext for ext in (".npz", ".png", ".gif")]
