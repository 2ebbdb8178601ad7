"""The partner-scene CutMix WSOL configs through the real tools/train_net.py, instant-sized."""

import json
import os

import numpy as np
import pytest
import yaml

from stal.cli import train_net

TINY = ["DATA.CROP_SIZE", "32", "MODEL.NUM_CLASSES", "3", "SYNTHESIS.CLIPS_PER_EPOCH", "8", "TRAIN.BATCH_SIZE", "4",
        "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "8", "IMAGE.DEMO_SCENES_PER_CLASS", "2",
        "IMAGE.DEMO_VAL_IMAGES", "6", "IMAGE.DEMO_TEST_IMAGES", "8"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("partner_data"))  # one generated file for the three configs


@pytest.mark.parametrize("name, rho, guided", [
    ("demo_wsol_partner_cutmix", 0.9, False),
    ("demo_wsol_partner_guided", 0.9, True),
    ("demo_wsol_partner_unbiased", 0.0, False),
    ("demo_wsol_partner_counterfactual", 0.9, True),
])
def test_partner_config_trains_and_reports_wsol_metrics(repo_root, tmp_path, data_root, name, rho, guided):
    out = tmp_path / "run"
    cfg = os.path.join(repo_root, "configs", f"{name}.yaml")
    assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(out), "DEMO.ROOT", data_root] + TINY) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["TRAIN"]["DATASET"] == resolved["TEST"]["DATASET"] == "image_partner"
    assert resolved["IMAGE"]["PARTNER_SCENE_BIAS"] == rho and resolved["GUIDANCE"]["ENABLE"] == guided
    metrics = json.loads((out / "metrics.json").read_text())
    for prefix in ("", "val_"):  # test (top level) and validation
        for key in ("MaxBoxAccV2", "MaxBoxAcc@30", "MaxBoxAcc@50", "MaxBoxAcc@70", "Top-1 Loc", "top1_accuracy"):
            assert 0.0 <= metrics[prefix + key] <= 1.0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if r.get("split") != "eval"]
    assert train and train[0]["loss_task"] > 0
    g = resolved["GUIDANCE"]
    if guided and g["MODE"] == "counterfactual":  # both sources re-rendered: a finite consistency term
        assert np.isfinite(train[0]["loss_guidance"])
    elif guided:  # the paper's form: lambda balanced on the first batch, a finite penalty
        assert (g["MODE"], g["REGION"], g["SCORE"], g["NORM"]) == ("exact", "per_source", "logit", "share")
        assert g["MERGE_SAME_CLASS"] and g["INNER_BN"] == "batch_constant" and g["LAMBDA_RULE"] == "balance_init"
        assert np.isfinite(train[0]["loss_guidance"]) and train[0]["guidance_lambda"] > 0
    else:
        assert "loss_guidance" not in train[0] or train[0]["loss_guidance"] in (None, 0.0)
    files = os.listdir(data_root)
    assert len(files) == 1 and files[0].endswith("_heldoutval.npz")


def test_run_seeds_tables_the_wsol_keys(repo_root, tmp_path, capsys):
    from stal.cli import run_seeds

    cfg = os.path.join(repo_root, "configs", "demo_wsol_partner_guided.yaml")
    for seed, value in ((10, 0.25), (11, 0.35)):
        run = tmp_path / f"demo_wsol_partner_guided_seed{seed}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"MaxBoxAccV2": value, "val_MaxBoxAccV2": value + 0.1}))
    assert run_seeds.main(["--cfgs", cfg, "--seeds", "10", "11", "--summarize-only", "--keys", "MaxBoxAccV2",
                           "val_MaxBoxAccV2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| demo_wsol_partner_guided.yaml | MaxBoxAccV2 | 0.250 | 0.350 | 0.300 ± 0.071 |" in table
    assert "| val_MaxBoxAccV2 | 0.350 | 0.450 |" in table and "frame_mAP" not in table
