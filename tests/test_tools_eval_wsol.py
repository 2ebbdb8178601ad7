"""tools/eval_wsol.py on fixtures in wsolevaluation's metadata layout: a hand-checked case, an
independent re-implementation of the reference's semantics on random score maps, and every
malformed-input error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from stal.cli import eval_wsol

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the wsol extra) is what the reference calls")


def write_meta(folder, images, *, predictions=None, masks=None) -> None:
    """images: [(id, (w, h), [boxes x0,y0,x1,y1], class)]; masks: {id: ([mask paths], ignore path)}."""
    os.makedirs(folder, exist_ok=True)
    lines = lambda rows: "".join(",".join(map(str, r)) + "\n" for r in rows)  # noqa: E731
    with open(os.path.join(folder, "image_ids.txt"), "w") as f:
        f.write(lines([[i] for i, *_ in images]))
    with open(os.path.join(folder, "class_labels.txt"), "w") as f:
        f.write(lines([[i, c] for i, _, _, c in images]))
    with open(os.path.join(folder, "image_sizes.txt"), "w") as f:
        f.write(lines([[i, *wh] for i, wh, _, _ in images]))
    with open(os.path.join(folder, "localization.txt"), "w") as f:
        if masks is None:
            f.write(lines([[i, *b] for i, _, boxes, _ in images for b in boxes]))
        else:
            f.write(lines([[i, m, ig if k == 0 else ""] for i, (ms, ig) in masks.items() for k, m in enumerate(ms)]))
    if predictions is not None:
        with open(os.path.join(folder, "predictions.txt"), "w") as f:
            f.write(lines(list(predictions.items())))


def _env(**extra):
    """This checkout's stal first (an installed stal may be another checkout's)."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_tool(*args, env=None):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval_wsol.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=_env(**(env or {})))
    return proc.returncode, proc.stdout, proc.stderr


def _blob(h, w, x0, y0, x1, y1):
    cam = np.zeros((h, w))
    cam[y0:y1 + 1, x0:x1 + 1] = 1.0
    return cam


def test_hand_checked_case(tmp_path):
    # image 1 (448 x 448, id with '/' and a space): box (20, 40, 219, 239) -> (10, 20, 109, 119) at 224;
    # its CAM (224 x 224) is 1 on (10, 20)-(108, 118), whose contour box is (10, 20, 109, 119): IoU 1.
    # image 2: the CAM lies elsewhere (IoU 0). Predictions: image 1 right, image 2 wrong.
    images = [("001.Albatross/a b.jpg", (448, 448), [(20, 40, 219, 239)], 0),
              ("002.Auklet/c.jpg", (224, 224), [(100, 100, 200, 200)], 1)]
    write_meta(tmp_path / "meta", images, predictions={"001.Albatross/a b.jpg": 0, "002.Auklet/c.jpg": 0})
    np.savez(tmp_path / "cams.npz", **{"001.Albatross/a b.jpg": _blob(224, 224, 10, 20, 108, 118),
                                       "002.Auklet/c.jpg": _blob(224, 224, 0, 0, 20, 20).astype(np.float32)})
    code, out, err = run_tool("--meta", tmp_path / "meta", "--cams", tmp_path / "cams.npz", "--out", tmp_path / "r.json",
                              env={"STAL_PROGRESS_SECONDS": "0"})
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    for key in ("MaxBoxAccV2", "MaxBoxAccV2@30", "MaxBoxAccV2@50", "MaxBoxAccV2@70", "MaxBoxAcc", "gt_known_loc",
                "top1_loc"):
        assert result[key] == 50.0, key
    assert result["approximate"] == {} and result["units"] == "percent" and result["num_images"] == 2
    assert "MaxBoxAccV2: 50.0000" in out and "WSOL: 1/2" in err  # progress lines without a terminal
    # without predictions.txt there is no Top-1 Loc
    os.remove(tmp_path / "meta" / "predictions.txt")
    code, _, err = run_tool("--meta", tmp_path / "meta", "--cams", tmp_path / "cams.npz", "--out", tmp_path / "r.json")
    assert code == 0, err and json.loads((tmp_path / "r.json").read_text())["top1_loc"] is None


# --- an independent re-implementation of wsolevaluation's semantics (loops, cv2 calls) ---

def _ref_cam(cam):
    """CAMComputer: cv2 bicubic to 224 x 224 in float64, then min-max (NaN or constant -> zeros)."""
    cam = cv2.resize(np.array(cam, dtype=np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    lo, hi = cam.min(), cam.max()
    return np.zeros_like(cam) if np.isnan(cam).any() or lo == hi else (cam - lo) / (hi - lo)


def _ref_boxes(cam, t, multi):
    u8 = np.floor(cam * 255).astype(np.uint8)
    binary = np.where(u8 > int(t * int(u8.max())), 255, 0).astype(np.uint8)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return [(0, 0, 0, 0)]
    if not multi:
        areas = [cv2.contourArea(c) for c in contours]
        contours = [contours[areas.index(max(areas))]]
    out = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        out.append((x, y, min(x + w, 223), min(y + h, 223)))
    return out


def _ref_iou(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
    return 0.0 if union <= 0 else iw * ih / union


def _ref_box_metrics(images, cams, predictions, step, ious):
    thresholds = list(np.arange(0, 1, step))
    best = {multi: np.zeros((len(images), len(thresholds))) for multi in (True, False)}
    for n, (image_id, (w, h), boxes, _) in enumerate(images):
        gts = [(int(x0 * 224.0 / w), int(y0 * 224.0 / h), int(x1 * 224.0 / w), int(y1 * 224.0 / h))
               for x0, y0, x1, y1 in boxes]
        cam = _ref_cam(cams[image_id])
        for multi in (True, False):
            for k, t in enumerate(thresholds):
                best[multi][n, k] = max(_ref_iou(p, g) for p in _ref_boxes(cam, t, multi) for g in gts)
    acc = lambda multi, d: 100.0 * (best[multi] >= d / 100).mean(0)  # noqa: E731
    out = {f"MaxBoxAccV2@{d}": acc(True, d).max() for d in ious}
    out["MaxBoxAccV2"] = float(np.mean([out[f"MaxBoxAccV2@{d}"] for d in ious]))
    out["MaxBoxAcc"] = acc(False, 50).max()
    k = int(np.argmax(acc(True, 50)))
    out["gt_known_loc"] = acc(True, 50)[k]
    right = np.array([predictions[i] == c for i, _, _, c in images])
    out["top1_loc"] = 100.0 * ((best[True][:, k] >= 0.5) & right).mean()
    return out


def _random_case(rng, count):
    images, cams = [], {}
    for n in range(count):
        w, h = (int(v) for v in rng.integers(60, 500, 2))
        boxes = []
        for _ in range(int(rng.integers(1, 3))):
            x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
            y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
            boxes.append((x0, y0, x1, y1))
        image_id = f"{n % 3:03d}.class/img {n}.jpg"
        images.append((image_id, (w, h), boxes, int(rng.integers(0, 3))))
        shape = (224, 224) if n == 0 else tuple(int(v) for v in rng.integers(3, 20, 2))
        cams[image_id] = rng.normal(size=shape).astype(np.float32 if n % 2 else np.float64)
    cams[images[1][0]] = np.full(cams[images[1][0]].shape, np.nan)  # NaN -> zeros, as the reference
    return images, cams


@pytest.mark.parametrize("step,ious", [(0.001, (30, 50, 70)), (0.01, (50, 75))])
def test_equals_an_independent_reimplementation_on_random_maps(tmp_path, step, ious):
    rng = np.random.default_rng(int(step * 1000))
    images, cams = _random_case(rng, 7)
    predictions = {i: c if k % 3 else (c + 1) % 3 for k, (i, _, _, c) in enumerate(images)}  # 2 of 3 right
    write_meta(tmp_path / "meta", images, predictions=predictions)
    np.savez(tmp_path / "cams.npz", **cams)
    assert eval_wsol.main(["--meta", str(tmp_path / "meta"), "--cams", str(tmp_path / "cams.npz"), "--out",
                           str(tmp_path / "r.json"), "--cam-curve-interval", str(step),
                           "--iou", *map(str, ious)]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    expected = _ref_box_metrics(images, cams, predictions, step, ious)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key
    assert 0 < result["MaxBoxAccV2"] < 100 and 0 < result["top1_loc"] <= result["gt_known_loc"]  # not degenerate


def _ref_pxap(ids, cams, masks, root, step):
    """MaskEvaluator by direct counts: precision and recall at each bin edge, summed over recall steps."""
    read = lambda p: cv2.resize(np.float32(cv2.imread(os.path.join(root, p), cv2.IMREAD_GRAYSCALE)),  # noqa: E731
                                (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
    pos, neg = [], []
    for image_id in ids:
        cam = _ref_cam(cams[image_id])
        paths, ignore_path = masks[image_id]
        fg = np.logical_or.reduce([read(p) for p in paths])
        ignored = read(ignore_path) & ~fg
        pos += list(cam[fg])
        neg += list(cam[~fg & ~ignored])
    pos, neg = np.array(pos), np.array(neg)
    edges = list(np.arange(0, 1, step)) + [1.0, 2.0]  # bins' lower edges, highest first below
    ap, prev_tp = 0.0, 0
    for e in reversed(edges):
        tp, fp = int((pos >= e).sum()), int((neg >= e).sum())
        if tp + fp and e != 2.0:
            ap += tp / (tp + fp) * (tp - prev_tp) / len(pos)
        prev_tp = tp
    return 100.0 * ap


def test_pxap_equals_an_independent_reimplementation(tmp_path):
    rng = np.random.default_rng(5)
    images, cams = _random_case(rng, 5)
    masks = {}
    os.makedirs(tmp_path / "masks")
    for n, (image_id, (w, h), _, _) in enumerate(images):
        paths = []
        for k in range(1 + n % 2):
            m = np.zeros((h, w), np.uint8)
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            m[y0:y0 + h // 3, x0:x0 + w // 3] = 255
            paths.append(f"masks/{n}_{k}.png")
            Image.fromarray(m).save(tmp_path / paths[-1])
        ignore = np.zeros((h, w), np.uint8)
        ignore[: h // 2, : w // 2] = 255  # overlaps the objects: only its part outside them is ignored
        Image.fromarray(ignore).save(tmp_path / f"masks/{n}_ignore.png")
        masks[image_id] = (paths, f"masks/{n}_ignore.png")
    write_meta(tmp_path / "meta", images, masks=masks)
    np.savez(tmp_path / "cams.npz", **cams)
    code, _, err = run_tool("--meta", tmp_path / "meta", "--cams", tmp_path / "cams.npz", "--out", tmp_path / "r.json",
                            "--mask-root", tmp_path, "--cam-curve-interval", 0.01)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["PxAP"] == pytest.approx(_ref_pxap([i for i, *_ in images], cams, masks, tmp_path, 0.01), abs=1e-6)
    assert "MaxBoxAccV2" not in result


# --- malformed input: one line naming the file and the line ---

def _good(tmp_path):
    images = [("a/1.jpg", (100, 80), [(10, 10, 50, 40)], 0), ("b/2.jpg", (100, 80), [(0, 0, 99, 79)], 1)]
    write_meta(tmp_path / "meta", images)
    np.savez(tmp_path / "cams.npz", **{"a/1.jpg": np.ones((7, 7)), "b/2.jpg": np.eye(7)})
    return tmp_path / "meta"


@pytest.mark.parametrize("file,text,cams,message", [
    ("image_sizes.txt", "a/1.jpg,100,80\n", None, r"image_sizes.txt: no line for image id 'b/2.jpg' "
                                                  r"\(.*image_ids.txt:2\)"),
    ("image_sizes.txt", "a/1.jpg,100,80\nb/2.jpg,100,0\n", None, r"image_sizes.txt:2: expected .*positive"),
    ("localization.txt", "a/1.jpg,10,10,50,40\nb/2.jpg,0,0,99\n", None, r"localization.txt:2: expected "
                                                                         r"<image_id>,<x0>,<y0>,<x1>,<y1>"),
    ("localization.txt", "a/1.jpg,10,10,5,40\nb/2.jpg,0,0,99,79\n", None, r"localization.txt:1: box needs 0 <= x0"),
    ("localization.txt", "a/1.jpg,10,10,50.5,40\nb/2.jpg,0,0,99,79\n", None, r"localization.txt:1: .*integers"),
    ("localization.txt", "a/1.jpg,10,10,50,40\n", None, r"localization.txt: no line for image id 'b/2.jpg'"),
    ("image_ids.txt", "a/1.jpg\nb/2.jpg\na/1.jpg\n", None, r"image_ids.txt:3: duplicate image id 'a/1.jpg' "
                                                           r"\(first at line 1\)"),
    ("image_ids.txt", "a/1.jpg\n\nb/2.jpg\n", None, r"image_ids.txt:2: empty image id"),
    (None, None, {"a/1.jpg": np.ones((7, 7))}, r"cams.npz: no score map for image id 'b/2.jpg' "
                                               r"\(.*image_ids.txt:2\)"),
    (None, None, {"a/1.jpg": np.ones((7, 7)), "b/2.jpg": np.ones((1, 7, 7))},
     r"cams.npz: score map 'b/2.jpg' has shape \(1, 7, 7\).*expected a non-empty 2-D"),
    (None, None, {"a/1.jpg": np.ones((7, 7)), "b/2.jpg": np.array([[1.0, np.inf]])}, r"'b/2.jpg' has infinite"),
])
def test_malformed_input_is_one_line(tmp_path, file, text, cams, message):
    meta = _good(tmp_path)
    if file:
        (meta / file).write_text(text)
    if cams:
        np.savez(tmp_path / "cams.npz", **cams)
    code, _, err = run_tool("--meta", meta, "--cams", tmp_path / "cams.npz", "--out", tmp_path / "r.json")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "r.json").exists()


def test_bad_archives_and_options(tmp_path):
    meta = _good(tmp_path)
    np.save(tmp_path / "one.npy", np.ones((3, 3)))
    np.savez(tmp_path / "obj.npz", **{"a/1.jpg": np.array([{}], dtype=object), "b/2.jpg": np.ones((2, 2))})
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for cams, message in (("one.npy", "expected an .npz archive"), ("obj.npz", "score map 'a/1.jpg': Object arrays"),
                          ("junk.npz", "junk.npz: cannot read score maps"),
                          ("missing.npz", "missing.npz: cannot read score maps")):
        code, _, err = run_tool("--meta", meta, "--cams", tmp_path / cams, "--out", tmp_path / "r.json")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_tool("--meta", tmp_path / "nowhere", "--cams", tmp_path / "one.npy", "--out", tmp_path / "r.json")
    assert code == 2 and "image_ids.txt: file not found" in err
    code, _, err = run_tool("--meta", meta, "--cams", tmp_path / "one.npy", "--out", tmp_path / "r.json",
                            "--cam-curve-interval", "0")
    assert code == 2 and "--cam-curve-interval must be in (0, 1)" in err
    # masks: an ignore path on an image's second line
    (meta / "localization.txt").write_text("a/1.jpg,m1.png,ig.png\na/1.jpg,m2.png,ig.png\nb/2.jpg,m3.png,\n")
    code, _, err = run_tool("--meta", meta, "--cams", tmp_path / "one.npy", "--out", tmp_path / "r.json",
                            "--mask-root", tmp_path)
    assert code == 2 and "localization.txt:2: an ignore path only on an image's first line" in err, err


def test_v1_without_opencv_is_labelled_approximate(tmp_path):
    """The tool with cv2 unimportable: MaxBoxAcc carries the reason, the rest is unchanged."""
    meta = _good(tmp_path)
    args = ["--meta", str(meta), "--cams", str(tmp_path / "cams.npz")]
    code = ("import sys; sys.modules['cv2'] = None; sys.path.insert(0, 'tools'); import eval_wsol; "
            f"sys.exit(eval_wsol.main({args + ['--out', str(tmp_path / 'no_cv2.json')]!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "warning: MaxBoxAcc (v1) is approximate: OpenCV (cv2) is not installed" in proc.stderr
    assert eval_wsol.main(args + ["--out", str(tmp_path / "cv2.json")]) == 0
    without, with_cv2 = (json.loads((tmp_path / n).read_text()) for n in ("no_cv2.json", "cv2.json"))
    assert "cv2.contourArea" in without["approximate"]["MaxBoxAcc"] and with_cv2["approximate"] == {}
    for key in ("MaxBoxAccV2", "MaxBoxAccV2@30", "MaxBoxAccV2@50", "MaxBoxAccV2@70", "gt_known_loc"):
        assert without[key] == with_cv2[key], key
