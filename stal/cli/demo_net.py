#!/usr/bin/env python
"""Run a trained detector on your own video: boxes, actions and scores drawn on it, offline.

    python tools/demo_net.py --cfg CFG --video IN.mp4 --out DIR [--boxes BOXES.csv | --detector FILE]
                             [--stride 1] [KEY VALUE ...]

Keyframes every ``--stride`` seconds (AVA-style); person boxes from, in order: ``--boxes`` (CSV
``video,time,x1,y1,x2,y2[,score]``, normalized, as data_prep/videos_to_ava.py reads; ``video`` is
the file name without extension), ``--detector`` (a local torchvision ``fasterrcnn_resnet50_fpn``
state dict; nothing is downloaded), or else background subtraction (static cameras). The model is
TEST.CHECKPOINT_FILE_PATH or the newest checkpoint in OUTPUT_DIR. Writes DIR/detections.csv (AVA
prediction format), DIR/<video>_annotated.mp4, DIR/timeline.png and DIR/<video>_keyframe.png (the
middle keyframe, enlarged to at least 256 pixels so that the labels are legible).

``--export-demo-video DIR`` writes one test video of the embedded demo (and its person boxes)
to try the tool on right after the README demo.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from stal.config import load_cfg
from stal.data.build import demo_data, labelmap_path
from stal.engine import inference, visualize
from stal.engine.builders import build_model
from stal.engine.state import load_trained_weights
from stal.errors import DataError, StalError
from stal.formats.ava import read_ava_csv, read_labelmap, write_ava_csv
from stal.io.atomic import atomic_write_text
from stal.io.images import list_frames, read_image
from stal.io.torch_files import load_torch_file
from stal.io.video import write_video


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", dest="cfg_file", action="append", required=True, metavar="FILE", help="the training config")
    p.add_argument("--video", help="the video to run on (anything PyAV decodes)")
    p.add_argument("--out", help="output folder (created)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--boxes", help="person boxes CSV video,time,x1,y1,x2,y2[,score] (normalized)")
    source.add_argument("--detector", help="torchvision fasterrcnn_resnet50_fpn state dict (.pth), person class 1")
    p.add_argument("--stride", type=int, default=1, help="seconds between keyframes (default 1)")
    p.add_argument("--export-demo-video", metavar="DIR", help="write a demo test video + its boxes CSV and stop")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    if not args.export_demo_video and not (args.video and args.out):
        p.error("--video and --out are required (or --export-demo-video DIR)")
    if args.stride < 1:
        p.error(f"--stride must be a whole number of seconds >= 1, got {args.stride}")
    return args


def detector_boxes(path: str, video, seconds, *, threshold: float = 0.5) -> dict[int, np.ndarray]:
    """Person boxes (COCO class 1) from a local torchvision Faster R-CNN checkpoint."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    if not os.path.isfile(path):
        raise DataError(f"detector weights not found: {path}; pass a local copy of torchvision's "
                        f"fasterrcnn_resnet50_fpn_coco-258fb6c6.pth (nothing is downloaded)")
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    try:
        model.load_state_dict(load_torch_file(path, what="detector weights"))
    except RuntimeError as exc:
        raise DataError(f"{path}: not a fasterrcnn_resnet50_fpn state dict ({str(exc).splitlines()[0]})") from None
    model.eval()
    H, W = video.frames.shape[1:3]
    out = {}
    with torch.no_grad():
        for t in seconds:
            frame = video.frames[min(len(video.frames) - 1, int(round(t * video.fps)))]
            pred = model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])[0]
            keep = (pred["labels"] == 1) & (pred["scores"] >= threshold)
            if keep.any():
                out[t] = (pred["boxes"][keep].numpy() / [W, H, W, H]).clip(0, 1).astype(np.float32)
    return out


def export_demo_video(cfg, folder: str) -> None:
    """The demo's first test video as a lossless .mkv (frames at DEMO.FPS) and its person boxes CSV."""

    paths = demo_data(cfg)
    video = sorted(os.listdir(paths.test.frames))[0]
    frames = [read_image(p) for p in list_frames(os.path.join(paths.test.frames, video))]
    os.makedirs(folder, exist_ok=True)
    # Lossless (FFV1, RGB): the demo's 64-pixel actors are small enough that MPEG-4 at its best
    # quality (3.7 grey levels of error) flips the demo model's predictions.
    write_video(os.path.join(folder, f"{video}.mkv"), frames, fps=cfg.DEMO.FPS, codec="ffv1", pix_fmt="bgr0")
    boxes = read_ava_csv(paths.test.person_boxes_csv)
    rows = [f"{v},{int(second) - 900},{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f}\n"  # AVA seconds count from 900
            for v, second, b in zip(boxes.video, boxes.timestamp, boxes.boxes) if v == video]
    atomic_write_text(os.path.join(folder, f"{video}_boxes.csv"), "video,time,x1,y1,x2,y2\n" + "".join(rows))
    print(f"-> {folder}/{video}.mkv, {folder}/{video}_boxes.csv")


def run(args) -> str:

    cfg = load_cfg(args.cfg_file, args.opts)
    if args.export_demo_video:
        export_demo_video(cfg, args.export_demo_video)
        return ""
    names = read_labelmap(labelmap_path(cfg))
    # Output j scores class id j + 1, as in the test path; AVA's 60 named classes of 80 outputs are fine.
    if max(names) > cfg.MODEL.NUM_CLASSES or min(names) < 1:
        raise DataError(f"{labelmap_path(cfg)}: the label map has class ids {min(names)}..{max(names)}, the model "
                        f"outputs ids 1..{cfg.MODEL.NUM_CLASSES} (MODEL.NUM_CLASSES): not every class has an output")
    model = build_model(cfg)
    load_trained_weights(cfg, model)
    video = inference.decode_video(args.video)
    name = os.path.splitext(os.path.basename(args.video))[0]
    seconds = inference.keyframe_seconds(video.duration, args.stride)
    if args.boxes:
        boxes = {t: b for t, b in inference.read_person_boxes(args.boxes, video=name).items() if t in seconds}
    elif args.detector:
        boxes = detector_boxes(args.detector, video, seconds)
    else:
        boxes = inference.subtraction_boxes(args.video, video, seconds)
    det = inference.predict_video(
        model, video, boxes, name=name, class_ids=sorted(names), loss_func=cfg.MODEL.LOSS_FUNC,
        batch_size=cfg.TEST.BATCH_SIZE,
        num_frames=cfg.DATA.NUM_FRAMES, sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE,
        mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    os.makedirs(args.out, exist_ok=True)
    write_ava_csv(os.path.join(args.out, "detections.csv"), det, score=True)
    visualize.write_annotated_video(os.path.join(args.out, f"{name}_annotated.mp4"), video.frames, video.fps,
                                    det, names)
    visualize.draw_timeline(os.path.join(args.out, "timeline.png"), det, names)
    outputs = [f"{args.out}/detections.csv", f"{args.out}/{name}_annotated.mp4", f"{args.out}/timeline.png"]
    if len(det):
        second = int(np.median(np.unique(det.timestamp)))
        visualize.write_keyframe_png(os.path.join(args.out, f"{name}_keyframe.png"), video.frames, video.fps,
                                     det, names, second=second)
        outputs.append(f"{args.out}/{name}_keyframe.png")
    return f"{len(boxes)} keyframes with people, {len(det)} detection rows -> {', '.join(outputs)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (StalError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary:
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
