"""The real tools/train_net.py on configs/instant.yaml: outputs, resume, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

from stal.cli import train_net


def _opts(tmp_path, name):
    return ["OUTPUT_DIR", str(tmp_path / name), "DEMO.ROOT", str(tmp_path / "data")]


def test_instant_end_to_end_then_test_net(repo_root, tmp_path):
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    assert train_net.main(["--cfg", cfg, "TRAIN.EVAL_PERIOD", "1"] + _opts(tmp_path, "full")) == 0
    out = tmp_path / "full"
    metrics = json.loads((out / "metrics.json").read_text())
    # Periodic evaluation after each epoch; the best frame-mAP's weights kept apart.
    assert [e["epoch"] for e in metrics["evals"]] == [1, 2]
    best = max(metrics["evals"], key=lambda e: e["frame_mAP"])
    assert metrics["best"]["value"] == best["frame_mAP"] and metrics["best"]["epoch"] == best["epoch"]
    assert metrics["evals"][-1]["frame_mAP"] == pytest.approx(metrics["frame_mAP"], abs=1e-9)
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and 0.0 <= metrics["off_target_energy"] <= 1.0
    assert set(metrics["per_class_AP"]) == {"1", "2", "3", "4"}
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["nonfinite_steps"] == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"iter", "epoch", "loss", "loss_task", "loss_guidance", "lr", "data_time", "step_time",
            "off_target_energy", "grad_norm"} <= set(log[0])
    assert [r["iter"] for r in log if "split" not in r] == [0, 1, 2, 3]
    assert [(r["iter"], r["epoch"]) for r in log if r.get("split") == "eval"] == [(1, 1), (3, 2)]
    assert (out / "config.yaml").exists() and (out / "detections.csv").exists()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "tensorboard"))
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint_best.pyth", "checkpoint_epoch_00001.pyth",
                                                       "checkpoint_epoch_00002.pyth"]
    state = torch.load(out / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=True)
    assert state["epoch"] == 2 and state["iteration"] == 4
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}

    # tools/test_net.py: the trained checkpoint on the test split, detections in AVA CSV format
    # that the evaluator re-scores to the same frame-mAP.
    from stal.cli import test_net
    from stal.config import load_cfg
    from stal.data.build import demo_data
    from stal.evaluation.frame_map import ava_frame_map_files

    assert test_net.main(["--cfg", cfg] + _opts(tmp_path, "full")) == 0
    tested = json.loads((out / "test" / "metrics.json").read_text())
    assert tested["checkpoint"].endswith("checkpoint_epoch_00002.pyth")
    assert tested["frame_mAP"] == pytest.approx(metrics["frame_mAP"], abs=1e-9)
    paths = demo_data(load_cfg(cfg, _opts(tmp_path, "full")))
    again = ava_frame_map_files(paths.test.gt_csv, str(out / "test" / "detections.csv"), paths.test.labelmap)
    assert again["frame_mAP"] == pytest.approx(tested["frame_mAP"], abs=1e-6)
    best_path = str(out / "checkpoints" / "checkpoint_best.pyth")
    assert test_net.main(["--cfg", cfg, "TEST.CHECKPOINT_FILE_PATH", best_path] + _opts(tmp_path, "full")) == 0
    tested = json.loads((out / "test" / "metrics.json").read_text())
    assert tested["checkpoint"] == best_path and tested["frame_mAP"] == pytest.approx(best["frame_mAP"], abs=1e-9)


def test_test_net_without_a_checkpoint_is_a_clear_error(repo_root, tmp_path, capsys):
    from stal.cli import test_net

    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    assert test_net.main(["--cfg", cfg] + _opts(tmp_path, "empty")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint to test" in err[0] and "TEST.CHECKPOINT_FILE_PATH" in err[0]


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
            "AVA.FRAME_DIR", paths.test.frames, "AVA.ANNOTATION_DIR", paths.test.annotations,
            "AVA.TRAIN_GT_BOX_LISTS", "['demo_test_gt.csv']", "AVA.GROUNDTRUTH_FILE", "demo_test_gt.csv",
            "AVA.TEST_PREDICT_BOX_LISTS", "['demo_test_person_boxes.csv']", "AVA.LABEL_MAP_FILE",
            "demo_labelmap.pbtxt", "AVA.FPS", str(kwargs["fps"]), "AVA.DETECTION_SCORE_THRESH", "0.0"]
    assert train_net.main(["--cfg", cfg] + opts) == 0
    metrics = json.loads((tmp_path / "ava" / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and metrics["off_target_energy"] is None
