"""The real tools/train_net.py on configs/instant.yaml: outputs, resume, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

import train_net


def _opts(tmp_path, name):
    return ["OUTPUT_DIR", str(tmp_path / name), "DEMO.ROOT", str(tmp_path / "data")]


def _weights(out):
    ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
    state = torch.load(os.path.join(out, "checkpoints", ckpts[-1]), weights_only=False)
    return state["model_state"], ckpts


def test_instant_end_to_end_and_exact_resume(repo_root, tmp_path):
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    assert train_net.main(["--cfg", cfg] + _opts(tmp_path, "full")) == 0
    out = tmp_path / "full"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and 0.0 <= metrics["off_target_energy"] <= 1.0
    assert set(metrics["per_class_AP"]) == {"1", "2", "3", "4"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"iter", "epoch", "loss_task", "loss_guidance", "lr", "off_target_energy"} <= set(log[0])
    assert (out / "config.yaml").exists() and (out / "detections.csv").exists()
    full, ckpts = _weights(out)
    assert ckpts == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]

    # Interrupted after epoch 1, then resumed: identical weights to the uninterrupted run.
    # TRAIN.MAX_ITERS 2 stops after the first epoch (2 iterations) as a crash would.
    assert train_net.main(["--cfg", cfg, "TRAIN.MAX_ITERS", "2"] + _opts(tmp_path, "resumed")) == 0
    assert len(os.listdir(tmp_path / "resumed" / "checkpoints")) == 1
    assert train_net.main(["--cfg", cfg] + _opts(tmp_path, "resumed")) == 0
    resumed, _ = _weights(tmp_path / "resumed")
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6)


def _run_cli(repo_root, args):
    return subprocess.run([sys.executable, os.path.join(repo_root, "tools", "train_net.py"), *args],
                          capture_output=True, text=True, cwd=repo_root, timeout=120)


@pytest.mark.parametrize("yaml_text,opts,expected", [
    ("- not\n- a mapping\n", [], "expected a mapping"),
    ("GUIDANCE:\n  LAMBDA: -1.0\n", [], "GUIDANCE.LAMBDA must be >= 0"),
    ("TRAIN:\n  BATCH_SIZE: two\n", [], "TRAIN.BATCH_SIZE expects a int"),
    (None, [], "config file not found"),
    ("OUTPUT_DIR: /proc/version/out\n", [], "OUTPUT_DIR '/proc/version/out' cannot be written"),
])
def test_bad_input_is_a_one_line_error(repo_root, tmp_path, yaml_text, opts, expected):
    path = tmp_path / "cfg.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text)
    proc = _run_cli(repo_root, ["--cfg", str(path), *opts])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr


def test_ava_config_without_data_names_path_and_tool(repo_root, tmp_path):
    proc = _run_cli(repo_root, ["--cfg", "configs/ava_guided.yaml", "OUTPUT_DIR", str(tmp_path / "o"),
                                "AVA.ANNOTATION_DIR", str(tmp_path / "missing")])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0] and "data_prep/" in lines[0]


def test_ava_format_dataset_trains_and_evaluates(repo_root, tmp_path, tiny_demo):
    """TRAIN/TEST.DATASET ava on an AVA-format directory (the demo's test split): multi-label BCE."""
    paths, kwargs = tiny_demo
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    opts = ["OUTPUT_DIR", str(tmp_path / "ava"), "TRAIN.DATASET", "ava", "TEST.DATASET", "ava",
            "MODEL.LOSS_FUNC", "bce", "DATA.CROP_SIZE", str(kwargs["size"]),
            "AVA.FRAME_DIR", paths.frames, "AVA.ANNOTATION_DIR", paths.annotations,
            "AVA.TRAIN_GT_BOX_LISTS", "['demo_test_gt.csv']", "AVA.GROUNDTRUTH_FILE", "demo_test_gt.csv",
            "AVA.TEST_PREDICT_BOX_LISTS", "['demo_person_boxes.csv']", "AVA.LABEL_MAP_FILE",
            "demo_labelmap.pbtxt", "AVA.FPS", str(kwargs["fps"]), "AVA.DETECTION_SCORE_THRESH", "0.0"]
    assert train_net.main(["--cfg", cfg] + opts) == 0
    metrics = json.loads((tmp_path / "ava" / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and metrics["off_target_energy"] is None
