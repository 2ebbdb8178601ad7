"""Evaluation metrics: AVA frame-mAP (official semantics, vectorised, streaming)."""

from stal.evaluation.frame_map import (
    ava_frame_map,
    ava_frame_map_files,
    paired_iou,
    voc_average_precision,
)

__all__ = ["ava_frame_map", "ava_frame_map_files", "paired_iou", "voc_average_precision"]
