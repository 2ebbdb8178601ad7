"""WSOL metrics (wsolevaluation protocol): boxes from score maps, MaxBoxAccV2, Top-1/GT-known Loc, PxAP."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stal.engine.evaluate_wsol import evaluate_wsol
from stal.evaluation import wsol


def _blob(h: int, w: int, box: tuple, value: float = 1.0) -> np.ndarray:
    cam = np.zeros((h, w))
    x0, y0, x1, y1 = box
    cam[y0:y1 + 1, x0:x1 + 1] = value
    return cam


def test_boxes_of_components_holes_and_thresholds() -> None:
    cam = _blob(20, 30, (2, 3, 9, 8)) + _blob(20, 30, (15, 10, 20, 14), 0.5)
    cam[5, 5] = 0.0  # a one-pixel hole in the first blob
    boxes = wsol.scoremap_boxes(cam, np.array([0.0, 0.6]))
    # (x, y, x + w, y + h) of each contour: two blobs and the hole's border (grown by one pixel)
    assert sorted(boxes[0].tolist()) == [[2, 3, 10, 9], [4, 4, 7, 7], [15, 10, 21, 15]]
    assert sorted(boxes[1].tolist()) == [[2, 3, 10, 9], [4, 4, 7, 7]]  # 0.5 * 255 = 127 <= int(0.6 * 255)
    assert wsol.scoremap_boxes(cam, np.array([0.6]), multi_contour=False)[0].tolist() == [[2, 3, 10, 9]]
    # a blob touching the right/bottom edge is clipped to (W - 1, H - 1); an empty mask gives zeros
    edge = wsol.scoremap_boxes(_blob(10, 10, (5, 5, 9, 9)), np.array([0.5]))[0]
    assert edge.tolist() == [[5, 5, 9, 9]]
    assert wsol.scoremap_boxes(np.zeros((4, 4)), np.array([0.5]))[0].tolist() == [[0, 0, 0, 0]]


def test_eight_connected_foreground() -> None:
    cam = np.zeros((6, 6))
    cam[1, 1] = cam[2, 2] = cam[3, 3] = 1.0  # diagonal: one 8-connected component
    assert wsol.scoremap_boxes(cam, np.array([0.5]))[0].tolist() == [[1, 1, 4, 4]]


def test_multiple_iou_plus_one() -> None:
    iou = wsol.multiple_iou(np.array([[0, 0, 9, 9], [0, 0, 4, 9]]), np.array([[0, 0, 9, 9]]))
    assert iou[:, 0].tolist() == [1.0, 0.5]


def test_max_box_acc_top1_and_gt_known() -> None:
    acc = wsol.BoxAccumulator()
    gt = np.array([[10, 10, 29, 29]])
    # image 1: a CAM that is exactly the object; image 2: a CAM about twice as wide; class wrong
    acc.add(_blob(64, 64, (10, 10, 28, 28)), gt, class_correct=True)
    acc.add(_blob(64, 64, (10, 10, 50, 28)), gt, class_correct=False)  # IoU 400 / 840
    out = acc.compute()
    assert out["MaxBoxAcc@30"] == 1.0 and out["MaxBoxAcc@50"] == 0.5 and out["MaxBoxAcc@70"] == 0.5
    assert out["MaxBoxAcc"] == pytest.approx(2 / 3)
    assert out["GT-known Loc"] == 0.5 and out["Top-1 Loc"] == 0.5
    v1 = wsol.BoxAccumulator(multi_contour=False, iou_thresholds=(50,))
    v1.add(_blob(64, 64, (10, 10, 28, 28)), gt, class_correct=False)
    assert v1.compute()["MaxBoxAcc"] == 1.0 and v1.compute()["Top-1 Loc"] == 0.0


def test_pxap() -> None:
    mask = _blob(16, 16, (4, 4, 11, 11)).astype(bool)
    perfect = wsol.PxAPAccumulator()
    perfect.add(mask * 0.9 + 0.05, mask)
    assert perfect.compute() == pytest.approx(1.0)
    # a CAM that ranks 4 background pixels above the object: precision 64/68 at full recall
    cam = mask * 0.5
    cam[0, :4] = 1.0
    noisy = wsol.PxAPAccumulator()
    noisy.add(cam, mask)
    assert noisy.compute() == pytest.approx(64 / 68)
    ignored = wsol.PxAPAccumulator()
    ignore = np.zeros_like(mask)
    ignore[0, :4] = True
    ignored.add(cam, mask, ignore)
    assert ignored.compute() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no positive"):
        wsol.PxAPAccumulator().compute()


# --- the differences to wsolevaluation found in issue 23, each a hand-checked minimal case ---

needs_cv2 = pytest.mark.skipif(wsol.cv2 is None, reason="opencv-python-headless (the wsol extra) not installed")


def _v1_box(mask: np.ndarray) -> list:
    return wsol.scoremap_boxes(mask.astype(float), np.array([0.5]), multi_contour=False)[0].tolist()


@needs_cv2
def test_v1_takes_the_largest_contour_area_as_opencv() -> None:
    # a 1 x 10 line (10 pixels, polygon area 0) and a 2 x 2 square (4 pixels, area 1): the square
    line = np.zeros((12, 20), bool)
    line[1, 1:11] = True
    line[5:7, 14:16] = True
    assert _v1_box(line) == [[14, 5, 16, 7]]
    # a 5 x 5 ring (16 pixels, its outer polygon 4 x 4 = 16 counts the hole) against a solid
    # 5 x 4 block (20 pixels, 4 x 3 = 12): the ring
    ring = np.zeros((12, 20), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    ring[1:6, 10:14] = True
    assert _v1_box(ring) == [[1, 1, 6, 6]]
    # two equal squares: the first contour in OpenCV's order wins, the one found last in raster order
    tie = np.zeros((12, 12), bool)
    tie[1:3, 1:3] = True
    tie[8:10, 8:10] = True
    assert _v1_box(tie) == [[8, 8, 10, 10]]
    assert wsol.v1_approximation() is None and wsol.BoxAccumulator(multi_contour=False).approximate is None


def test_v1_without_opencv_is_approximate_and_says_why(monkeypatch) -> None:
    monkeypatch.setattr(wsol, "cv2", None)
    line = np.zeros((12, 20), bool)
    line[1, 1:11] = True
    line[5:7, 14:16] = True
    assert _v1_box(line) == [[1, 1, 11, 2]]  # the component with the most pixels stands in
    acc = wsol.BoxAccumulator(multi_contour=False, iou_thresholds=(50,))
    acc.add(line.astype(float), np.array([[1, 1, 11, 2]]))  # the line's clipped contour box
    assert "approximate" in acc.approximate and "cv2.contourArea" in acc.approximate
    with pytest.warns(UserWarning, match="MaxBoxAcc \\(v1\\) is approximate: OpenCV"):
        assert acc.compute()["MaxBoxAcc"] == 1.0
    assert wsol.BoxAccumulator(multi_contour=True).approximate is None  # V2 stays exact


@needs_cv2
def test_v2_boxes_equal_with_and_without_opencv(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    thresholds = wsol.cam_thresholds(0.05)
    for _ in range(30):
        cam = wsol.normalize_scoremap(wsol.upsample_cam(rng.normal(size=(5, 6)), height=40, width=48))
        exact = [sorted(b.tolist()) for b in wsol.scoremap_boxes(cam, thresholds)]
        with monkeypatch.context() as m:
            m.setattr(wsol, "cv2", None)
            assert [sorted(b.tolist()) for b in wsol.scoremap_boxes(cam, thresholds)] == exact


def test_pxap_ignores_only_the_ignore_box_outside_the_object() -> None:
    # 1 x 4: cam 1, .5, .2, .3 (normalized: 1, .375, 0, .125); object = pixels 1, 2; ignore box = 0, 1.
    # Reference: ignore & ~object = pixel 0 -> positives .375, 0 and negative .125: ranked P N P,
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (dropping every ignore pixel would give 1/2).
    cam = np.array([[1.0, 0.5, 0.2, 0.3]])
    gt = np.array([[False, True, True, False]])
    ignore = np.array([[True, True, False, False]])
    acc = wsol.PxAPAccumulator()
    acc.add(cam, gt, ignore)
    assert acc.compute() == pytest.approx(5 / 6, abs=1e-12)
    # the object entirely under the ignore box: still scored (AP 1), no error
    under = wsol.PxAPAccumulator()
    under.add(cam, np.array([[False, True, False, False]]), ignore)
    assert under.compute() == pytest.approx(1.0)


def test_bicubic_upsampling_by_hand_and_as_opencv(monkeypatch) -> None:
    # 1 x 4 -> 1 x 8: output x samples source 0.5 x - 0.25; Keys kernel A = -0.75.
    # x = 3: t = 0.25 from source 1, weight of source 2 = W(0.75) = 1.25 * .75^3 - 2.25 * .75^2 + 1
    # = 0.26171875 (bilinear: 0.25); x = 5: weight of source 2 = W(0.25) = 0.87890625.
    src = np.array([[0.0, 0.0, 1.0, 0.0]])
    for cv2_module in (wsol.cv2, None):
        monkeypatch.setattr(wsol, "cv2", cv2_module)
        up = wsol.upsample_cam(src, height=1, width=8)
        assert up.dtype == np.float64 and up.shape == (1, 8)
        assert up[0, 3] == pytest.approx(0.26171875, abs=1e-7) and up[0, 5] == pytest.approx(0.87890625, abs=1e-7)
    assert wsol.upsample_cam(src, height=1, width=4).tolist() == src.tolist()  # same size: a copy


@needs_cv2
def test_bicubic_numpy_replica_is_bit_identical_to_opencv(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    cases = [((7, 7), (224, 224)), ((1, 5), (9, 3)), ((30, 20), (11, 17))]
    cases += [(tuple(rng.integers(1, 40, 2)), tuple(rng.integers(1, 300, 2))) for _ in range(40)]
    for (h0, w0), (h, w) in cases:
        cam = rng.normal(size=(h0, w0)) * 10 ** rng.uniform(-3, 3)
        exact = wsol.upsample_cam(cam, height=h, width=w)
        with monkeypatch.context() as m:
            m.setattr(wsol, "cv2", None)
            assert np.array_equal(wsol.upsample_cam(cam, height=h, width=w), exact), ((h0, w0), (h, w))
        mask = rng.random((h0, w0)) > 0.5
        near = wsol.resize_mask_nearest(mask, height=h, width=w)
        with monkeypatch.context() as m:
            m.setattr(wsol, "cv2", None)
            assert np.array_equal(wsol.resize_mask_nearest(mask, height=h, width=w), near)


def _three_level_cam() -> tuple[np.ndarray, np.ndarray]:
    """uint8 levels 0 (background), 1 (outer ring [5, 34]), 2 (inner ring [13, 26] = the object),
    255 (core [18, 21]); the GT box is the object's contour box (13, 13, 27, 27)."""
    u8 = np.zeros((40, 40))
    u8[5:35, 5:35] = 1
    u8[13:27, 13:27] = 2
    u8[18:22, 18:22] = 255
    return np.where(u8 == 255, 1.0, (u8 + 0.5) / 255), np.array([[13, 13, 27, 27]])


def test_threshold_step_defaults_to_0_001() -> None:
    # mask = uint8 > int(t * 255): cut 1 (object alone, IoU 1) needs t in [0.004, 0.0078]; step
    # 0.01 only reaches cuts 0 (outer ring: IoU 225/961) and 2 (core: 25/225)
    cam, gt = _three_level_cam()
    assert wsol.CAM_CURVE_INTERVAL == 0.001 and len(wsol.CAM_THRESHOLDS) == 1000
    fine = wsol.BoxAccumulator()
    fine.add(cam, gt)
    assert fine.compute()["MaxBoxAcc@50"] == 1.0
    assert fine.compute()["best_cam_threshold@50"] == pytest.approx(0.004)
    coarse = wsol.BoxAccumulator(thresholds=wsol.cam_thresholds(0.01))
    coarse.add(cam, gt)
    assert coarse.compute()["MaxBoxAcc@30"] == 0.0 and coarse.compute()["MaxBoxAcc@50"] == 0.0
    with pytest.raises(ValueError, match="cam_curve_interval"):
        wsol.cam_thresholds(0.0)


def test_resize_box_truncates_in_float64() -> None:
    # y 31 of 112 rows at 224: 31 * 224 / 112 = 62.0 exactly; float32(31 / 112) * 224 = 61.999996
    assert wsol.resize_box((0, 31, 10, 31), image_size=(40, 112), resize_size=(224, 224)) == (0, 62, 56, 62)
    assert int(np.float32(31 / 112) * np.float32(224)) == 61  # the float32 route this replaces
    assert wsol.resize_box((60, 27, 385, 331), image_size=(500, 335), resize_size=(224, 224)) == (26, 18, 172, 221)


class _FakeCamModel(torch.nn.Module):
    """A classifier whose CAMs are given maps (B, K, h, w); records how ``cam`` was called."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.maps, self.upsample_calls = maps, []

    def forward(self, clip: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return torch.zeros(clip.shape[0], self.maps.shape[1]) + torch.arange(self.maps.shape[1])  # class K-1

    def cam(self, clip: torch.Tensor, *, upsample: bool = True) -> torch.Tensor:
        self.upsample_calls.append(upsample)
        maps = self.maps[: clip.shape[0]]
        return F.interpolate(maps, size=clip.shape[-2:], mode="bilinear", align_corners=False) if upsample else maps


def _items(count: int, size: int, boxes: np.ndarray) -> list:
    return [{"clip": torch.zeros(3, 1, size, size), "label": 1, "gt_boxes": boxes} for _ in range(count)]


def test_evaluate_wsol_upsamples_feature_cams_bicubically() -> None:
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.normal(size=(2, 2, 4, 4)).astype(np.float32))
    gt = np.array([[4, 6, 20, 25]])
    model = _FakeCamModel(maps)
    out = evaluate_wsol(model, _items(2, 32, gt), batch_size=2, cam_curve_interval=0.01)
    assert model.upsample_calls == [False]  # the feature-size CAM, resized here, not bilinearly in the model
    expected = wsol.BoxAccumulator(thresholds=wsol.cam_thresholds(0.01))
    for cam in maps[:, 1].double().numpy():
        expected.add(wsol.upsample_cam(cam, height=32, width=32), gt, class_correct=True)
    e = expected.compute()
    assert out["MaxBoxAccV2"] == e["MaxBoxAcc"] and out["GT-known Loc"] == e["GT-known Loc"]
    assert out["top1_accuracy"] == 1.0 and out["Top-1 Loc"] == e["Top-1 Loc"]


def test_evaluate_wsol_threshold_step() -> None:
    cam, gt = _three_level_cam()
    maps = torch.from_numpy(np.stack([np.zeros_like(cam), cam])[None].astype(np.float64))
    fine = evaluate_wsol(_FakeCamModel(maps), _items(1, 40, gt), batch_size=1)  # the default: 0.001
    coarse = evaluate_wsol(_FakeCamModel(maps), _items(1, 40, gt), batch_size=1, cam_curve_interval=0.01)
    assert fine["MaxBoxAcc@50"] == 1.0 and coarse["MaxBoxAcc@50"] == 0.0


def test_config_default_step_is_the_references() -> None:
    from stal.config.defaults import get_cfg

    assert get_cfg().IMAGE.CAM_CURVE_INTERVAL == 0.001


def test_module_imports_and_runs_without_opencv() -> None:
    """With cv2 unimportable (the wsol extra absent): the import works, v1 says why it is approximate,
    the bicubic resize is OpenCV's to the last bit."""
    code = ("import sys; sys.modules['cv2'] = None\n"
            "import numpy as np\nfrom stal.evaluation import wsol\n"
            "assert wsol.cv2 is None and 'approximate' in wsol.v1_approximation()\n"
            "cam = np.arange(12.0).reshape(3, 4) ** 1.5\n"
            "np.save(sys.argv[1], wsol.upsample_cam(cam, height=7, width=9))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "up.npy")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        proc = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, cwd=root, env=env)
        assert proc.returncode == 0, proc.stderr
        cam = np.arange(12.0).reshape(3, 4) ** 1.5
        if wsol.cv2 is not None:
            assert np.array_equal(np.load(out), wsol.cv2.resize(cam, (9, 7), interpolation=wsol.cv2.INTER_CUBIC))
