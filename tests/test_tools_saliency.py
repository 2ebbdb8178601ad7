"""tools/train_net.py with counterfactual guidance end to end, then tools/saliency.py on its output."""

import json
import os

import numpy as np
from PIL import Image

from stal.cli import saliency
from stal.cli import train_net


def test_counterfactual_run_and_saliency_picture(repo_root, tmp_path, capsys):
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    opts = ["GUIDANCE.MODE", "counterfactual", "GUIDANCE.LAMBDA", "1.0", "DEMO.ROOT", str(tmp_path / "data")]
    for name in ("cf", "plain"):
        extra = ["GUIDANCE.ENABLE", "False"] if name == "plain" else []
        assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(tmp_path / name)] + opts + extra) == 0
    log = [json.loads(line) for line in (tmp_path / "cf" / "log.jsonl").read_text().splitlines()]
    assert all(row["loss_guidance"] >= 0 and "penalty" in row for row in log)
    assert json.loads((tmp_path / "cf" / "metrics.json").read_text())["frame_mAP"] >= 0

    out = tmp_path / "pic" / "sal.png"
    assert saliency.main(["--runs", str(tmp_path / "plain"), str(tmp_path / "cf"), "--out", str(out), "--num", "2"]) == 0
    image = np.asarray(Image.open(out))
    # 2 rows of 32-pixel frames, 3 columns (keyframe, plain, cf), upscaled by saliency.SCALE.
    assert image.shape == (2 * 32 * saliency.SCALE, 3 * 32 * saliency.SCALE, 3)
    table = capsys.readouterr().out
    assert table.count("| 0 |") == 2 and table.count("| 1 |") == 2


def test_saliency_names_a_directory_without_a_run(tmp_path, capsys):
    assert saliency.main(["--runs", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "config.yaml" in capsys.readouterr().err
