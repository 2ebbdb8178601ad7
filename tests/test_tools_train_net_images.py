"""Image tasks through the real tools/train_net.py (T = 1, same trainer as video), image demo data."""

import json
import os

import numpy as np
import pytest

from stal.cli import test_net
from stal.cli import train_net
from stal.demo.images import SHAPES, ensure_image_demo, load_image_demo, shape_mask

TINY = ["DATA.CROP_SIZE", "32", "MODEL.NUM_CLASSES", "3", "SYNTHESIS.CLIPS_PER_EPOCH", "8", "TRAIN.BATCH_SIZE", "4",
        "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "8", "IMAGE.DEMO_SCENES_PER_CLASS", "2",
        "IMAGE.DEMO_VAL_IMAGES", "6", "IMAGE.DEMO_TEST_IMAGES", "8"]


@pytest.mark.parametrize("guidance", [
    ["GUIDANCE.ENABLE", "True", "GUIDANCE.MODE", "exact", "GUIDANCE.REGION", "per_source"],
    ["GUIDANCE.ENABLE", "True", "GUIDANCE.MODE", "counterfactual", "IMAGE.PROVENANCE", "object"],
], ids=["exact_per_source", "counterfactual"])
def test_guided_image_step_end_to_end(repo_root, tmp_path, capsys, guidance):
    cfg = os.path.join(repo_root, "configs", "demo_wsol_cutmix.yaml")
    out = tmp_path / "run"
    opts = TINY + guidance + ["OUTPUT_DIR", str(out), "DEMO.ROOT", str(tmp_path / "data")]
    assert train_net.main(["--cfg", cfg] + opts) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for prefix in ("", "val_"):
        for key in ("MaxBoxAccV2", "Top-1 Loc", "GT-known Loc", "top1_accuracy"):
            assert 0.0 <= metrics[prefix + key] <= 1.0
    assert metrics["Top-1 Loc"] <= metrics["GT-known Loc"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(log[0]["loss_guidance"]) and log[0]["loss_task"] > 0
    if guidance[3] == "exact":  # tools/test_net.py on the same run: WSOL metrics, not frame_mAP
        capsys.readouterr()
        assert test_net.main(["--cfg", cfg] + opts) == 0
        printed = capsys.readouterr().out
        assert printed.startswith("MaxBoxAccV2 ") and "top1_accuracy" in printed
        assert json.loads((out / "test" / "metrics.json").read_text())["MaxBoxAccV2"] == metrics["MaxBoxAccV2"]


def test_image_demo_is_deterministic_atomic_and_unbiased_in_test(tmp_path):
    kwargs = dict(seed=4, size=32, num_classes=3, scenes_per_class=2, val_images=30, test_images=30)
    path = ensure_image_demo(root=str(tmp_path / "a"), **kwargs)
    again = ensure_image_demo(root=str(tmp_path / "b"), **kwargs)
    a, b = load_image_demo(path), load_image_demo(again)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [n for n in os.listdir(tmp_path / "a")] == [os.path.basename(path)]  # no temporary left
    assert a["test_images"].shape == (30, 32, 32, 3) and a["train_scenes"].shape == (3, 2, 32, 32, 3)
    # Scene drawn independently of the class in test: not all on their own class's scene.
    assert (a["test_scenes"] != a["test_labels"]).any()
    x0, y0, x1, y1 = a["test_boxes"][0]
    assert 0 <= x0 < x1 < 32 and 0 <= y0 < y1 < 32
    masks = [shape_mask(s, size=32, cx=16, cy=16, radius=8, angle=0.0) for s in SHAPES]
    assert len({m.tobytes() for m in masks}) == len(SHAPES) and all(m.any() for m in masks)


def test_cub_and_image_folder_configs_train_end_to_end(repo_root, tmp_path):
    from _data_fixtures import write_jpegs
    from test_data_cub import make_cub

    make_cub(tmp_path / "cub")
    for split, values in (("train", [40, 200]), ("val", [60, 180])):
        for name, v in zip(("cat", "dog"), values):
            write_jpegs(tmp_path / "folder" / split / name, ["1.jpg", "2.png"], size=(20, 14), values=[v, v + 5])
    small = ["DATA.CROP_SIZE", "32", "MODEL.ARCH", "resnet50_tiny", "MODEL.NUM_CLASSES", "2", "TRAIN.BATCH_SIZE", "2",
             "SYNTHESIS.CLIPS_PER_EPOCH", "4", "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "4"]
    for cfg, root, keys in (("cub_wsol_guided.yaml", "cub", ("MaxBoxAccV2", "Top-1 Loc", "GT-known Loc")),
                            ("imagefolder_cls_guided.yaml", "folder", ("top1_accuracy",))):
        out = tmp_path / cfg
        assert train_net.main(["--cfg", os.path.join(repo_root, "configs", cfg), "IMAGE.ROOT", str(tmp_path / root),
                               "OUTPUT_DIR", str(out)] + small) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert all(0.0 <= metrics[k] <= 1.0 for k in keys)
