"""Every video demo config through the real tools/train_net.py, instant-sized: the production
synthesis path, the arms' settings, and test / val / val_seen frame-mAP in metrics.json."""

import json
import os

import pytest
import yaml

from stal.cli import train_net

TINY = ["MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2", "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "4",
        "SYNTHESIS.CLIPS_PER_EPOCH", "4", "TRAIN.BATCH_SIZE", "2", "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "4",
        "TEST.NUM_ENERGY_CLIPS", "2", "DEMO.TUBES_PER_CLASS", "4", "DEMO.BACKGROUNDS_PER_SCENE", "1",
        "DEMO.TEST_VIDEOS", "2", "DEMO.TEST_KEYFRAMES", "1"]

# config -> (scene bias, guidance mode or None, task loss on the re-rendering, lambda)
ARMS = {
    "demo_baseline": (0.9, None, False, None),
    "demo_unbiased": (0.0, None, False, None),
    "demo_guided": (0.9, "counterfactual", True, 1.0),
    "demo_guided_consistency_only": (0.9, "counterfactual", False, 1.0),
    "demo_cf_augment": (0.9, "counterfactual", True, 0.0),
    "demo_cf_augment_consistency": (0.9, "counterfactual", True, 1.0),
    "demo_guided_energy": (0.9, "exact", False, 0.1),
    "demo_guided_colour": (0.9, "exact", False, 1.0),
    "demo_guided_gradient": (0.9, "exact", False, None),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo_data"))  # one generated dataset for every config


def test_every_video_demo_config_is_listed(repo_root):
    names = {f[:-5] for f in os.listdir(os.path.join(repo_root, "configs"))
             if f.startswith("demo_") and not f.startswith(("demo_wsol", "demo_weak")) and f.endswith(".yaml")}
    assert names == set(ARMS)


@pytest.mark.parametrize("name", sorted(ARMS))
def test_demo_config_trains_and_reports_every_split(repo_root, tmp_path, data_root, name):
    out = tmp_path / "run"
    cfg = os.path.join(repo_root, "configs", f"{name}.yaml")
    assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(out), "DEMO.ROOT", data_root] + TINY) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    bias, mode, cf_task, lam = ARMS[name]
    g = resolved["GUIDANCE"]
    assert resolved["TRAIN"]["DATASET"] == resolved["TEST"]["DATASET"] == "demo"
    assert resolved["SYNTHESIS"]["SCENE_BIAS"] == bias
    assert (resolved["SYNTHESIS"]["SCALE_MIN"], resolved["SYNTHESIS"]["SCALE_MAX"]) == (0.4, 0.5)
    assert g["ENABLE"] == (mode is not None)
    if mode is not None:
        assert (g["MODE"], g["CF_TASK_LOSS"]) == (mode, cf_task)
        assert lam is None or g["LAMBDA"] == lam
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("frame_mAP", "val_frame_mAP", "val_seen_frame_mAP"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert len(os.listdir(data_root)) == 1  # every config reads the same splits
