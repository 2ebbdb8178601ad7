"""The dataset configs: without data, one short error naming the missing path and the data_prep
command that creates it; with a tiny prepared UCF101-24, ucf24_guided.yaml trains and evaluates."""

import json
import os

import pytest

from stal.cli import train_net
from stal.cli import ucf24_from_act
from test_data_act import _make


@pytest.mark.parametrize("config,missing,tool", [
    ("ava_baseline.yaml", "nothing_here/annotations/ava_train_v2.2.csv", "data_prep/videos_to_ava.py"),
    ("ava_guided.yaml", "nothing_here/annotations/ava_train_v2.2.csv", "data_prep/videos_to_ava.py"),
    ("ucf24_guided.yaml", "nothing_here/rgb-images", "data_prep/ucf24_from_act.py"),
    ("jhmdb_guided.yaml", "nothing_here/rgb-images", "data_prep/jhmdb_from_act.py"),
])
def test_config_without_data(repo_root, tmp_path, capsys, config, missing, tool):
    root = str(tmp_path / "nothing_here")
    opts = ["OUTPUT_DIR", str(tmp_path / "o"), "AVA.ANNOTATION_DIR", os.path.join(root, "annotations"),
            "UCF24.ROOT", root, "JHMDB.ROOT", root]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", config)] + opts) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / missing) in lines[0] and tool in lines[0], lines


def test_ucf24_config_trains_and_evaluates(repo_root, tmp_path):
    _make(tmp_path)
    assert ucf24_from_act.main(["--root", str(tmp_path)]) == 0
    opts = ["UCF24.ROOT", str(tmp_path), "MODEL.NUM_CLASSES", "2", "OUTPUT_DIR", str(tmp_path / "run"),
            "MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2", "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "2",
            "TRAIN.BATCH_SIZE", "2", "TRAIN.MAX_ITERS", "1", "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "4"]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", "ucf24_guided.yaml")] + opts) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and set(metrics["per_class_AP"]) == {"1", "2"}
