"""Where tubes come from, for data_prep/build_tube_bank.py: one generator per kind of input.

Each ``*_inputs`` function yields ``(key, tubes)`` per input file (the key marks the input
done in the bank index, so an interrupted build resumes); ``tubes`` yields dicts with
``rgb`` uint8 (T, h, w, 3), ``alpha`` uint8 (T, h, w), ``labels`` (0-based) and ``source``.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from stal.errors import DataError
from stal.synthesis.backgrounds import read_image
from stal.synthesis.extraction import SubtractionSpec, extract_tubes

Inputs = Iterator[tuple[str, Iterator[dict]]]


def video_inputs(paths: list[str], spec: SubtractionSpec, *, label: int, stride: int, max_frames: int) -> Inputs:
    """Static-camera videos through background subtraction; every tube gets ``label``."""
    for path in paths:
        def tubes(path=path):
            for t in extract_tubes(path, spec, stride=stride, max_frames=max_frames):
                yield {"rgb": t["rgb"], "alpha": t["alpha"], "labels": [label],
                       "source": {"input": path, "kind": "video", "start": t["start"], "stride": stride,
                                  "canvas_yyxx": list(t["box"])}}
        yield f"video:{os.path.abspath(path)}", tubes()


def _polygon_mask(points: list, size: tuple[int, int]) -> np.ndarray:
    img = Image.new("L", (size[1], size[0]), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return np.asarray(img)


def _one_frame_tube(image: np.ndarray, mask: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Crop image (H, W, 3) and mask (H, W) to the mask's box: ((1, h, w, 3), (1, h, w))."""
    if mask.shape != image.shape[:2]:
        raise DataError(f"{where}: mask and frame size mismatch: mask {mask.shape}, image {image.shape[:2]}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise DataError(f"{where}: empty tube (the polygon covers no pixel)")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return image[None, y0:y1, x0:x1].copy(), mask[None, y0:y1, x0:x1].copy()


def labelme_inputs(paths: list[str], classes: list[str]) -> Inputs:
    """labelme JSON files: every polygon shape whose label is in ``classes`` is a one-frame tube."""
    for path in paths:
        def tubes(path=path):
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
                image_path = os.path.join(os.path.dirname(path), doc["imagePath"])
                shapes = doc["shapes"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}: not a labelme JSON with imagePath and shapes ({exc})") from None
            image = read_image(image_path)
            declared = (doc.get("imageHeight"), doc.get("imageWidth"))
            if None not in declared and tuple(declared) != image.shape[:2]:
                raise DataError(f"{path}: mask and frame size mismatch: imageHeight/imageWidth {declared}, "
                                f"{image_path} is {image.shape[:2]}")
            for i, shape in enumerate(shapes):
                if shape.get("label") not in classes or shape.get("shape_type", "polygon") != "polygon":
                    continue
                where = f"{path} shape {i}"
                rgb, alpha = _one_frame_tube(image, _polygon_mask(shape["points"], image.shape[:2]), where)
                yield {"rgb": rgb, "alpha": alpha, "labels": [classes.index(shape["label"])],
                       "source": {"input": path, "kind": "labelme", "shape": i}}
        yield f"labelme:{os.path.abspath(path)}", tubes()


def coco_inputs(path: str, image_dir: str, classes: list[str]) -> Inputs:
    """COCO instance JSON: polygon segmentations of the listed categories, one input per image."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        names = {c["id"]: c["name"] for c in doc["categories"]}
        images = {im["id"]: im for im in doc["images"]}
        anns = doc["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO JSON with images, annotations and categories ({exc})") from None
    by_image: dict[int, list[dict]] = {}
    for ann in anns:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image_id, im in sorted(images.items()):
        def tubes(im=im, image_id=image_id):
            image_path = os.path.join(image_dir, im["file_name"])
            image = read_image(image_path)
            if (im.get("height"), im.get("width")) != (None, None) and (im["height"], im["width"]) != image.shape[:2]:
                raise DataError(f"{path}: mask and frame size mismatch: image {image_id} is declared "
                                f"{(im['height'], im['width'])}, {image_path} is {image.shape[:2]}")
            for ann in by_image.get(image_id, []):
                name = names.get(ann["category_id"])
                seg = ann.get("segmentation")
                if name not in classes or not isinstance(seg, list) or not seg:
                    continue
                mask = np.zeros(image.shape[:2], np.uint8)
                for poly in seg:
                    mask |= _polygon_mask(np.asarray(poly).reshape(-1, 2).tolist(), image.shape[:2])
                rgb, alpha = _one_frame_tube(image, mask, f"{path} annotation {ann.get('id')}")
                yield {"rgb": rgb, "alpha": alpha, "labels": [classes.index(name)],
                       "source": {"input": path, "kind": "coco", "annotation": ann.get("id")}}
        yield f"coco:{os.path.abspath(path)}:{image_id}", tubes()


def box_alpha(h: int, w: int, feather: int) -> np.ndarray:
    """uint8 (h, w): 255 inside, ramping to 0 over ``feather`` pixels at the border (0: hard)."""
    if feather <= 0:
        return np.full((h, w), 255, np.uint8)
    dy = np.minimum(np.arange(h), np.arange(h)[::-1]) + 1
    dx = np.minimum(np.arange(w), np.arange(w)[::-1]) + 1
    ramp = np.minimum(dy[:, None], dx[None, :]) / (feather + 1)
    return np.rint(np.clip(ramp, 0, 1) * 255).astype(np.uint8)


def ava_box_inputs(csv_path: str, frame_dir: str, *, fps: int, num_frames: int, feather: int,
                   num_classes: int, video_start: int = 900) -> Inputs:
    """AVA-format boxes (no masks): rectangular (or feathered-box) tubes of ``num_frames`` frames
    centred on each annotated keyframe, cut at the keyframe's box; labels = the person's
    actions at that keyframe (AVA action ids are 1-based, tube labels 0-based)."""
    from stal.data.ava_format import read_ava_csv

    table = read_ava_csv(csv_path)
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i in range(len(table.video)):
        groups.setdefault((str(table.video[i]), int(table.timestamp[i]), int(table.extra[i])), []).append(i)
    for video in sorted({key[0] for key in groups}):
        def tubes(video=video):
            for (vid, second, person), rows in sorted(groups.items()):
                if vid != video:
                    continue
                actions = sorted({int(table.action[r]) - 1 for r in rows})
                if any(not 0 <= a < num_classes for a in actions):
                    raise DataError(f"{csv_path}: {vid},{second}: action ids {[a + 1 for a in actions]} "
                                    f"outside 1..{num_classes}")
                key = (second - video_start) * fps
                idx = np.clip(np.arange(key - num_frames // 2, key - num_frames // 2 + num_frames), 0, None)
                files = [os.path.join(frame_dir, vid, f"{vid}_{j + 1:06d}.jpg") for j in idx]
                frames = np.stack([read_image(f) for f in files])
                H, W = frames.shape[1:3]
                x1, y1, x2, y2 = table.boxes[rows[0]]
                c = [int(round(y1 * H)), int(round(y2 * H)), int(round(x1 * W)), int(round(x2 * W))]
                if c[1] <= c[0] or c[3] <= c[2]:
                    raise DataError(f"{csv_path}: {vid},{second},person {person}: empty box {table.boxes[rows[0]]}")
                rgb = np.ascontiguousarray(frames[:, c[0]:c[1], c[2]:c[3]])
                alpha = np.broadcast_to(box_alpha(c[1] - c[0], c[3] - c[2], feather), rgb.shape[:3]).copy()
                yield {"rgb": rgb, "alpha": alpha, "labels": actions,
                       "source": {"input": csv_path, "kind": "ava_boxes", "video": vid, "timestamp": second,
                                  "person": person}}
        yield f"ava:{os.path.abspath(csv_path)}:{video}", tubes()


def demo_inputs(*, per_class: int, num_frames: int, seed: int, pose_randomness: float = 1.0) -> Inputs:
    """The demo's procedural stick-figure actors, ``per_class`` of each action (one input per class)."""
    from stal.data.demo_render import ACTIONS, render_actor

    for c, action in enumerate(ACTIONS):
        def tubes(c=c, action=action):
            rng = np.random.default_rng([seed, c])
            for i in range(per_class):
                rgba = (render_actor(action, num_frames, rng, pose_randomness) * 255).round().astype(np.uint8)
                yield {"rgb": np.ascontiguousarray(rgba[..., :3]), "alpha": np.ascontiguousarray(rgba[..., 3]),
                       "labels": [c], "source": {"input": "demo", "kind": "demo", "action": action, "seed": seed, "i": i}}
        yield f"demo:{seed}:{action}", tubes()
