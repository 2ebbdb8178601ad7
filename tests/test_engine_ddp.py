"""2-process gloo DDP (torchrun) and gradient accumulation against one process, same global batch.

configs/instant.yaml is set up so that the comparison is exact up to float rounding (see its
header): one ROI per clip, GroupNorm, per-clip guidance terms, no dropout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from stal.cli import train_net

KEYS = ("loss", "loss_task", "loss_guidance", "off_target_energy", "grad_norm", "lr")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _log(out):
    return [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]


def _assert_same_trajectory(log, ref, *, tol):
    assert [r["iter"] for r in log] == [r["iter"] for r in ref] == list(range(len(ref)))
    for a, b in zip(log, ref):
        for key in KEYS:
            assert a[key] == pytest.approx(b[key], abs=tol, rel=tol), (a["iter"], key)


def test_two_process_ddp_and_accumulation_match_one_process(repo_root, tmp_path):
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    common = ["DEMO.ROOT", str(tmp_path / "data"), "TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", "3"]
    tested = ["TEST.ENABLE", "True"]  # evaluation too: each process scores half of the test clips
    assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(tmp_path / "one")] + common + tested) == 0
    ref = _log(tmp_path / "one")
    assert len(ref) == 6

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         os.path.join(repo_root, "tools", "train_net.py"), "--cfg", cfg, "OUTPUT_DIR", str(tmp_path / "two")]
        + common + tested, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_trajectory(_log(tmp_path / "two"), ref, tol=1e-4)
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    for key in ("frame_mAP", "off_target_energy", "input_grad_rms", "synth_val_accuracy"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert (tmp_path / "two" / "detections.csv").read_text().count("\n") == \
        (tmp_path / "one" / "detections.csv").read_text().count("\n")
    # Rank 0 alone writes; both ranks' RNG states are in the checkpoint.
    state = torch.load(tmp_path / "two" / "checkpoints" / "checkpoint_epoch_00003.pyth", weights_only=True)
    assert len(state["rng"]) == 2

    accum = ["OUTPUT_DIR", str(tmp_path / "accum"), "TRAIN.GRAD_ACCUM_STEPS", "2"]
    assert train_net.main(["--cfg", cfg] + accum + common) == 0
    _assert_same_trajectory(_log(tmp_path / "accum"), ref, tol=1e-5)

    # The same global batch on another number of processes resumes the same run: the 2-process
    # checkpoint of epoch 1 continued by one process ends where the one-process run ended.
    resumed = tmp_path / "resumed"
    os.makedirs(resumed / "checkpoints")
    os.link(tmp_path / "two" / "checkpoints" / "checkpoint_epoch_00001.pyth",
            resumed / "checkpoints" / "checkpoint_epoch_00001.pyth")
    assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(resumed)] + common) == 0
    a = torch.load(resumed / "checkpoints" / "checkpoint_epoch_00003.pyth", weights_only=True)["model_state"]
    b = torch.load(tmp_path / "one" / "checkpoints" / "checkpoint_epoch_00003.pyth", weights_only=True)["model_state"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
