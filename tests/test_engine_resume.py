"""Crash and resume with the real tools/train_net.py: SIGKILL, truncated and foreign checkpoints,
a full disk while saving, non-finite losses."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from stal.cli import train_net
from stal.engine import checkpoint as ckpt


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs must compute like the OMP_NUM_THREADS=1 subprocesses, bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("instant_data"))


def _cfg(repo_root):
    return os.path.join(repo_root, "configs", "instant.yaml")


def _opts(out, data_root, *extra):
    return ["OUTPUT_DIR", str(out), "DEMO.ROOT", data_root, "TEST.ENABLE", "False", *extra]


def _final_weights(out):
    path = ckpt.list_checkpoints(os.path.join(out, "checkpoints"))[-1]
    return ckpt.read_checkpoint(path)["model_state"], os.path.basename(path)


def _log(out):
    return [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]


# 4 epochs of 4 steps, a checkpoint every 2 steps, dropout (so the restored RNG state matters).
LONG = ("SOLVER.MAX_EPOCH", "4", "SYNTHESIS.CLIPS_PER_EPOCH", "8", "TRAIN.CHECKPOINT_ITERS", "2",
        "TRAIN.CHECKPOINT_KEEP", "2", "MODEL.DROPOUT_RATE", "0.5")


@pytest.fixture(scope="module")
def uninterrupted(repo_root, data_root, tmp_path_factory):
    """Final weights and log of the LONG run without interruption."""
    out = tmp_path_factory.mktemp("uninterrupted")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root, *LONG)) == 0
    torch.set_num_threads(before)
    weights, name = _final_weights(out)
    assert name == "checkpoint_epoch_00004.pyth"
    return weights, _log(out)


def _run_until_first_checkpoint_then_signal(repo_root, out, opts, sig) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, os.path.join(repo_root, "tools", "train_net.py"), "--cfg",
                             _cfg(repo_root), *opts], cwd=repo_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_dir = os.path.join(out, "checkpoints")
    deadline = time.monotonic() + 120
    while not (os.path.isdir(ckpt_dir) and ckpt.list_checkpoints(ckpt_dir)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait()
    names = [os.path.basename(p) for p in ckpt.list_checkpoints(ckpt_dir)]
    assert "checkpoint_epoch_00004.pyth" not in names, f"the run finished before the signal: {names}"
    return proc


def _resume_and_compare(repo_root, out, data_root, uninterrupted) -> None:
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root, *LONG)) == 0
    resumed, _ = _final_weights(out)
    full, ref = uninterrupted
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6)
    # The log reads as one run: every iteration once, with the uninterrupted run's losses.
    log = _log(out)
    assert [r["iter"] for r in log] == list(range(16))
    for a, b in zip(log, ref):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert not [n for n in os.listdir(out / "checkpoints") if n.startswith(".tmp_")]


def test_sigkill_after_first_checkpoint_then_resume_equals_uninterrupted(repo_root, tmp_path, data_root,
                                                                         uninterrupted):
    out = tmp_path / "killed"
    proc = _run_until_first_checkpoint_then_signal(repo_root, out, _opts(out, data_root, *LONG), signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    _resume_and_compare(repo_root, out, data_root, uninterrupted)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_where_it_stops_then_resume_equals_uninterrupted(repo_root, tmp_path, data_root,
                                                                      uninterrupted, signum, code):
    """SIGTERM (a scheduler's preemption) or Ctrl-C: finish the step, save, exit 143 / 130; the
    resume continues there."""
    out = tmp_path / "terminated"
    proc = _run_until_first_checkpoint_then_signal(repo_root, out, _opts(out, data_root, *LONG), signum)
    err = proc.stderr.read().decode()
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name} after iteration" in err and "run the same command" in err
    assert "Traceback" not in err
    stopped_at = int(err.split("after iteration ")[1].split()[0])
    newest = ckpt.read_checkpoint(ckpt.list_checkpoints(str(out / "checkpoints"))[-1])
    assert newest["iteration"] == stopped_at and max(r["iter"] for r in _log(out)) == stopped_at - 1
    _resume_and_compare(repo_root, out, data_root, uninterrupted)


def test_foreign_config_is_an_error_unless_allowed(repo_root, tmp_path, data_root, capsys, caplog):
    out = tmp_path / "run"
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root, "TRAIN.MAX_ITERS", "1")) == 0
    changed = _opts(out, data_root, "GUIDANCE.LAMBDA", "0.5", "SOLVER.BASE_LR", "0.01")
    capsys.readouterr()
    assert train_net.main(["--cfg", _cfg(repo_root)] + changed) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with another config" in err[0]
    assert "GUIDANCE.LAMBDA: 0.1 -> 0.5" in err[0] and "SOLVER.BASE_LR: 0.002 -> 0.01" in err[0]
    assert "TRAIN.ALLOW_CONFIG_CHANGE True" in err[0]
    # Keys that only say where or how often to write may change freely.
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root, "TRAIN.MAX_ITERS", "2",
                                                             "LOG_PERIOD", "5", "TRAIN.CHECKPOINT_KEEP", "1")) == 0
    assert train_net.main(["--cfg", _cfg(repo_root)] + changed + ["TRAIN.ALLOW_CONFIG_CHANGE", "True"]) == 0
    assert "resuming" in caplog.text and "GUIDANCE.LAMBDA" in caplog.text


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(repo_root, tmp_path, data_root, caplog):
    """The newest checkpoint cut in half: a warning, resume from the one before, same final weights."""
    out = tmp_path / "run"
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 0
    reference, name = _final_weights(out)
    newest = out / "checkpoints" / name
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 0
    assert "cannot read checkpoint" in caplog.text and "falling back" in caplog.text
    weights, _ = _final_weights(out)
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=0, atol=1e-6)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(repo_root, tmp_path, data_root, monkeypatch, capsys):
    real_save, calls = torch.save, []

    def save_until_disk_full(obj, f):
        calls.append(1)
        if len(calls) == 1:
            return real_save(obj, f)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", save_until_disk_full)
    out = tmp_path / "run"
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 2
    err = capsys.readouterr().err
    assert "disk full" in err and "previous checkpoints" in err and "checkpoint_epoch_00002" in err
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint_epoch_00001.pyth"]  # no temporary left
    assert ckpt.read_checkpoint(str(out / "checkpoints" / "checkpoint_epoch_00001.pyth"))["epoch"] == 1
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 0  # resumes from epoch 1


def test_nonfinite_losses_are_skipped_then_stop_the_run(repo_root, tmp_path, data_root, capsys):
    """A learning rate of 1e30 makes every step after the first non-finite."""
    out = tmp_path / "run"
    opts = _opts(out, data_root, "SOLVER.BASE_LR", "1e30", "TRAIN.MAX_NONFINITE_STEPS", "3", "SOLVER.MAX_EPOCH", "3")
    assert train_net.main(["--cfg", _cfg(repo_root)] + opts) == 2
    err = capsys.readouterr().err
    assert "3 optimizer steps in a row had a non-finite loss" in err and "iterations 1..3" in err
    log = _log(out)
    assert [r["nonfinite"] for r in log] == [0.0, 1.0, 1.0, 1.0] and log[1]["loss"] is None
    # Skipped steps leave the weights alone: the epoch-1 checkpoint (after iteration 1) holds
    # the weights of the one finite step, and no later checkpoint was written.
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(str(out / "checkpoints"))] == \
        ["checkpoint_epoch_00001.pyth"]
    state = ckpt.read_checkpoint(str(out / "checkpoints" / "checkpoint_epoch_00001.pyth"))
    assert state["train_state"]["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(repo_root, tmp_path, data_root, capsys):
    """A directory of unreadable checkpoints (e.g. another program's) is never silently overwritten."""
    out = tmp_path / "run"
    os.makedirs(out / "checkpoints")
    (out / "checkpoints" / "checkpoint_epoch_00003.pyth").write_bytes(b"something else")
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 2
    err = capsys.readouterr().err
    assert "none of the 1 checkpoints" in err and "move them away or use another OUTPUT_DIR" in err
    assert os.listdir(out / "checkpoints") == ["checkpoint_epoch_00003.pyth"]


def test_resume_from_a_checkpoint_of_the_first_format(repo_root, tmp_path, data_root):
    """Checkpoints written before this format (numpy RNG tuple, no sampler/scaler state) still
    resume exactly: loaded with weights_only=True, numpy arrays allowed as data."""
    import numpy as np

    out = tmp_path / "run"
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 0
    reference, _ = _final_weights(out)
    first, second = ckpt.list_checkpoints(str(out / "checkpoints"))
    new = ckpt.read_checkpoint(first)
    n = new["rng"][0]["numpy"]
    rng = dict(new["rng"][0], numpy=("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                                     n["gauss"]))
    torch.save({k: new[k] for k in ("epoch", "iteration", "model_state", "optimizer_state", "cfg")} | {"rng": rng},
               first)
    os.unlink(second)
    assert train_net.main(["--cfg", _cfg(repo_root)] + _opts(out, data_root)) == 0
    weights, _ = _final_weights(out)
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], rtol=0, atol=1e-6)


def test_second_ctrl_c_stops_at_once_without_traceback(repo_root, tmp_path, data_root):
    """Two Ctrl-C in a row: exit 130 at once (or after the first's checkpoint, if it won the race),
    one line and no traceback; the checkpoints already written stay readable."""
    out = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, os.path.join(repo_root, "tools", "train_net.py"), "--cfg",
                             _cfg(repo_root), *_opts(out, data_root, *LONG)], cwd=repo_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_dir = os.path.join(out, "checkpoints")
    deadline = time.monotonic() + 120
    while not (os.path.isdir(ckpt_dir) and ckpt.list_checkpoints(ckpt_dir)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.wait()
    err = proc.stderr.read().decode()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted: stopped at once" in err or "stopped by SIGINT" in err
    for path in ckpt.list_checkpoints(ckpt_dir):
        ckpt.read_checkpoint(path)
