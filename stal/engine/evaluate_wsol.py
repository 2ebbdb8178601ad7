"""WSOL / classification evaluation of an image model (CAM head) on one-frame clips.

Per image: the class logits from the whole-image ROI (the same pooling the CutMix training
rows use, see :mod:`stal.data.images`), the CAM of the ground-truth class upsampled to the
input size (wsolevaluation scores boxes with the GT class's CAM), and the top-1 class for
Top-1 Loc. Metrics (fractions in [0, 1]): ``MaxBoxAccV2`` (mean of MaxBoxAcc at IoU 30/50/70,
all contours), ``GT-known Loc``, ``Top-1 Loc``, ``top1_accuracy``; images without a box
count only for the accuracy.
"""

from __future__ import annotations

import torch

from stal.evaluation.wsol import BoxAccumulator


def _batches(dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]


@torch.no_grad()
def evaluate_wsol(model: torch.nn.Module, dataset, *, batch_size: int, prefix: str = "") -> dict:
    """``{prefix + name: value}`` over ``dataset`` (items of :class:`stal.data.images.WsolEvalDataset`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    boxes_acc, correct, total, with_boxes = BoxAccumulator(multi_contour=True), 0, 0, 0
    try:
        for items in _batches(dataset, batch_size):
            clip = torch.stack([it["clip"] for it in items]).to(device)
            b, _, _, h, w = clip.shape
            rois = torch.tensor([[i, 0.0, 0.0, w, h] for i in range(b)], dtype=clip.dtype, device=device)
            pred = model(clip, rois).argmax(1).cpu().numpy()
            cams = model.cam(clip).float().cpu().numpy()  # (B, K, H, W)
            for it, p, cam in zip(items, pred, cams):
                ok = bool(p == it["label"])
                correct, total = correct + ok, total + 1
                if len(it["gt_boxes"]):
                    boxes_acc.add(cam[it["label"]], it["gt_boxes"], class_correct=ok)
                    with_boxes += 1
    finally:
        model.train(was_training)
    out = {"top1_accuracy": correct / max(total, 1)}
    if with_boxes:
        m = boxes_acc.compute()
        out.update({"MaxBoxAccV2": m["MaxBoxAcc"], "GT-known Loc": m["GT-known Loc"], "Top-1 Loc": m["Top-1 Loc"],
                    **{k: m[k] for k in m if k.startswith("MaxBoxAcc@")}})
    return {prefix + k: float(v) for k, v in out.items()}

