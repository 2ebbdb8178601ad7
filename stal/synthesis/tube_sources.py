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
from stal.formats.ava import read_ava_csv
from stal.io.images import read_image
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


def _polygon_mask(points: list, size: tuple[int, int], where: str) -> np.ndarray:
    """uint8 (H, W) mask of the polygon ``points`` ([[x, y], ...] pixels); a malformed point is
    a DataError naming ``where`` and the point."""
    try:
        xy = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        bad = next((i, p) for i, p in enumerate(points) if not _is_point(p))
        raise DataError(f"{where}: point {bad[0]} is {bad[1]!r}; expected [x, y] numbers") from None
    if len(xy) < 3:
        raise DataError(f"{where}: a polygon needs at least 3 points, got {len(xy)}")
    img = Image.new("L", (size[1], size[0]), 0)
    ImageDraw.Draw(img).polygon(xy, fill=255)
    return np.asarray(img)


def _is_point(p) -> bool:
    try:
        x, y = p
        float(x), float(y)
    except (TypeError, ValueError):
        return False
    return True


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
                rgb, alpha = _one_frame_tube(image, _polygon_mask(shape.get("points", []), image.shape[:2], where), where)
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
                mask, where = np.zeros(image.shape[:2], np.uint8), f"{path} annotation {ann.get('id')}"
                for poly in seg:
                    if not isinstance(poly, list) or len(poly) % 2:
                        raise DataError(f"{where}: a polygon is a flat list [x1, y1, x2, y2, ...] of even "
                                        f"length, got {str(poly)[:60]}")
                    mask |= _polygon_mask([poly[j:j + 2] for j in range(0, len(poly), 2)], image.shape[:2], where)
                rgb, alpha = _one_frame_tube(image, mask, where)
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


def _person_times(table) -> dict[tuple[str, int], dict[int, list[int]]]:
    """{(video, person id): {timestamp: row indices}} of an AVA-format table."""
    people: dict[tuple[str, int], dict[int, list[int]]] = {}
    for i in range(len(table.video)):
        key = (str(table.video[i]), int(table.extra[i]))
        people.setdefault(key, {}).setdefault(int(table.timestamp[i]), []).append(i)
    return people


def _centres(times: list[int], every: int) -> list[int]:
    """Every ``every``-th annotated time, starting so that the first window starts near the first time."""
    offset = min(every // 2, (len(times) - 1) // 2)
    return times[offset::every]


def _window_boxes(table, times: dict[int, list[int]], centre: int, *, fps: int, video_start: int,
                  num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(0-based frame indices (n,), normalized boxes (n, 4)) of the window around ``centre``.

    Frame f shows time ``video_start + f / fps``; its box is the person's box at the nearest
    annotated time. Frames more than half a time unit outside the person's annotated span
    (and before frame 0) are left out, so a tube never outlives its annotation.
    """
    known = np.array(sorted(times), np.float64)
    key = (centre - video_start) * fps
    frames = np.arange(key - num_frames // 2, key - num_frames // 2 + num_frames)
    t = video_start + frames / fps
    frames = frames[(frames >= 0) & (t >= known[0] - 0.5) & (t <= known[-1] + 0.5)]
    nearest = known[np.abs(video_start + frames[:, None] / fps - known[None, :]).argmin(1)]
    boxes = np.stack([table.boxes[times[int(s)][0]] for s in nearest]).astype(np.float64)
    return frames.astype(np.int64), boxes


def box_tube_inputs(csv_path: str, frame_dir: str, *, frame_template: str, fps: int, video_start: int,
                    num_frames: int, feather: int, num_classes: int, every: int = 1, kind: str = "boxes") -> Inputs:
    """Box tubes (no masks) from an AVA-format box CSV ``video,time,x1,y1,x2,y2,action,person``.

    For each person (video, person id) a tube of up to ``num_frames`` frames is centred on
    every ``every``-th annotated time; each frame is cut at the person's box nearest in time
    (AVA: the keyframe's box, annotated once a second; UCF101-24 / JHMDB: the tube's box of
    that very frame), on a canvas holding the window's boxes, alpha = the box (``feather``:
    ramped over that many pixels) and 0 elsewhere. Labels = the person's actions at the centre
    (1-based ids in the CSV, 0-based tube labels). Frames are
    ``frame_dir/frame_template.format(video=..., number=f + 1)`` for the 0-based frame f that
    shows time ``video_start + f / fps`` (AVA: ``{video}/{video}_{number:06d}.jpg``, 30, 900;
    ACT index: ``{video}/{number:05d}.jpg``, 1, 1). Boxes are normalized x1, y1, x2, y2.
    ``kind`` names the input in the bank (``<kind>_boxes``) and in its resume keys.
    """
    table = read_ava_csv(csv_path)
    people = _person_times(table)
    for video in sorted({vid for vid, _ in people}):
        def tubes(video=video):
            for (vid, person), times in sorted(people.items()):
                if vid != video:
                    continue
                for centre in _centres(sorted(times), every):
                    where = f"{csv_path}: {vid},{centre},person {person}"
                    actions = sorted({int(table.action[r]) - 1 for r in times[centre]})
                    if any(not 0 <= a < num_classes for a in actions):
                        raise DataError(f"{where}: action ids {[a + 1 for a in actions]} outside 1..{num_classes}")
                    frames, boxes = _window_boxes(table, times, centre, fps=fps, video_start=video_start,
                                                  num_frames=num_frames)
                    if len(frames) == 0:
                        raise DataError(f"{where}: time {centre} is before the first frame (time {video_start})")
                    files = [os.path.join(frame_dir, frame_template.format(video=vid, number=f + 1)) for f in frames]
                    rgb, alpha = _box_tube(np.stack([read_image(f) for f in files]), boxes, feather=feather,
                                           where=where)
                    yield {"rgb": rgb, "alpha": alpha, "labels": actions,
                           "source": {"input": csv_path, "kind": f"{kind}_boxes", "video": vid, "timestamp": centre,
                                      "person": person, "first_frame": int(frames[0]) + 1}}
        yield f"{kind}:{os.path.abspath(csv_path)}:{video}", tubes()


def _box_tube(frames: np.ndarray, boxes: np.ndarray, *, feather: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 (n, H, W, 3) and normalized boxes (n, 4) -> (rgb (n, h, w, 3), alpha (n, h, w))
    on the canvas enclosing every frame's box (pixel edges: x1 * W .. x2 * W, rounded)."""
    H, W = frames.shape[1:3]
    px = np.rint(boxes * np.array([W, H, W, H])).astype(np.int64)
    px[:, 0::2], px[:, 1::2] = np.clip(px[:, 0::2], 0, W), np.clip(px[:, 1::2], 0, H)
    empty = (px[:, 2] <= px[:, 0]) | (px[:, 3] <= px[:, 1])
    if empty.any():
        raise DataError(f"{where}: empty tube box {boxes[int(np.argmax(empty))].round(4).tolist()} "
                        f"(x2 <= x1 or y2 <= y1 on a {W}x{H} frame)")
    x0, y0, x1, y1 = px[:, 0].min(), px[:, 1].min(), px[:, 2].max(), px[:, 3].max()
    rgb = np.ascontiguousarray(frames[:, y0:y1, x0:x1])
    alpha = np.zeros(rgb.shape[:3], np.uint8)
    for t, (a, b, c, d) in enumerate(px):
        alpha[t, b - y0:d - y0, a - x0:c - x0] = box_alpha(d - b, c - a, feather)
    return rgb, alpha
