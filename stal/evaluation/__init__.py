"""Evaluation metrics (docs/evaluation.md).

* :mod:`stal.evaluation.frame_map`: AVA frame-mAP, official semantics, streaming and vectorised
  (CSV reader in :mod:`stal.formats.ava_csv`).
* :mod:`stal.evaluation.act_map`: UCF101-24 / JHMDB frame-mAP and video-mAP (ACT; YOWO variant).
* :mod:`stal.evaluation.wsol`: MaxBoxAccV2, GT-known / Top-1 Loc, PxAP.

The input-gradient diagnostic (off-target energy) lives with the guidance, in
:mod:`stal.guidance.attribution`. Only the AVA functions are imported here; the other modules load on first use.
"""

from stal.evaluation.frame_map import (
    ava_frame_map,
    ava_frame_map_files,
    paired_iou,
    voc_average_precision,
)

__all__ = ["ava_frame_map", "ava_frame_map_files", "paired_iou", "voc_average_precision"]
