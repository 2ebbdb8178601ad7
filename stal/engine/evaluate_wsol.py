"""WSOL / classification evaluation of an image model (CAM head) on one-frame clips.

Per image: the class logits from the whole-image ROI (the same pooling the CutMix training
rows use, see :mod:`stal.data.images`), the CAM of the ground-truth class at feature
resolution upsampled to the input size as wsolevaluation's ``CAMComputer`` does (float64,
OpenCV's bicubic rule: :func:`stal.evaluation.wsol.upsample_cam`; wsolevaluation scores boxes
with the GT class's CAM), and the top-1 class for Top-1 Loc. Metrics (fractions in [0, 1]):
``MaxBoxAccV2`` (mean of MaxBoxAcc at IoU 30/50/70, all contours), ``MaxBoxAcc@<d>``,
``GT-known Loc``, ``Top-1 Loc``, ``top1_accuracy``; images without a box count only for the
accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from stal.evaluation.wsol import CAM_CURVE_INTERVAL, BoxAccumulator, cam_thresholds, upsample_cam


def _batches(dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]


@torch.no_grad()
def evaluate_wsol(model: torch.nn.Module, dataset, *, batch_size: int, prefix: str = "",
                  cam_curve_interval: float = CAM_CURVE_INTERVAL) -> dict:
    """``{prefix + name: value}`` over ``dataset`` (items of :class:`stal.data.images.WsolEvalDataset`).

    cam_curve_interval: CAM threshold step (IMAGE.CAM_CURVE_INTERVAL; 0.001 as wsolevaluation's
    evaluate_wsol and CAMComputer, 0.01 as its evaluation.py command line).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    boxes_acc = BoxAccumulator(multi_contour=True, thresholds=cam_thresholds(cam_curve_interval))
    correct, total, with_boxes = 0, 0, 0
    try:
        for items in _batches(dataset, batch_size):
            clip = torch.stack([it["clip"] for it in items]).to(device)
            b, _, _, h, w = clip.shape
            rois = torch.tensor([[i, 0.0, 0.0, w, h] for i in range(b)], dtype=clip.dtype, device=device)
            pred = model(clip, rois).argmax(1).cpu().numpy()
            cams = model.cam(clip, upsample=False).float().cpu().numpy()  # (B, K, h, w), feature size
            for it, p, cam in zip(items, pred, cams):
                ok = bool(p == it["label"])
                correct, total = correct + ok, total + 1
                if len(it["gt_boxes"]):
                    full = upsample_cam(cam[it["label"]].astype(np.float64), height=h, width=w)
                    boxes_acc.add(full, it["gt_boxes"], class_correct=ok)
                    with_boxes += 1
    finally:
        model.train(was_training)
    out = {"top1_accuracy": correct / max(total, 1)}
    if with_boxes:
        m = boxes_acc.compute()
        out.update({"MaxBoxAccV2": m["MaxBoxAcc"], "GT-known Loc": m["GT-known Loc"], "Top-1 Loc": m["Top-1 Loc"],
                    **{k: m[k] for k in m if k.startswith("MaxBoxAcc@")}})
    return {prefix + k: float(v) for k, v in out.items()}

