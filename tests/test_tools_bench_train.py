"""tools/bench_train.py on the CPU at tiny sizes: the engine's step in every mode, side by side."""

from __future__ import annotations

import json

import pytest
import torch

import bench_train
from stal.engine.trainer import Trainer


def test_tiny_run_times_every_mode_through_the_engine_step(tmp_path, monkeypatch, capsys):
    calls = []
    real = Trainer.run_step

    def counting(self, micro_batches):
        calls.append(self.objective.guidance.mode if self.objective.guidance else "plain")
        return real(self, micro_batches)

    monkeypatch.setattr(Trainer, "run_step", counting)
    out = tmp_path / "bench.json"
    assert bench_train.main(["--json", str(out), "--size", "tiny", "--models", "small3d", "mvit_b_16x4",
                             "--rounds", "1", "--warmup", "1", "--batch", "1"]) == 0
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["amp"] == "fp32" and list(results["models"]) == ["small3d",
                                                                                                  "mvit_b_16x4"]
    for name, arch in (("small3d", "small3d_tiny"), ("mvit_b_16x4", "mvit_b_16x4_tiny")):
        r = results["models"][name]
        assert r["arch"] == arch and r["input"] == "1x3x4x32x32"
        assert r["plain"]["ratio"] == 1.0
        for mode in bench_train.MODES:
            m = r[mode]
            assert m["clips_per_s"] == pytest.approx(1 / m["step_s"]) and m["step_s"] > 0
            assert m["ratio"] == pytest.approx(m["step_s"] / r["plain"]["step_s"])
    # Every mode ran warm-up + 1 timed round per model, interleaved (the order rotates each round).
    assert sorted(calls) == sorted(list(bench_train.MODES) * 2 * 2)
    assert calls[:8] == ["plain", "exact", "fd", "counterfactual", "exact", "fd", "counterfactual", "plain"]
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["model", "input"] and table[2].startswith("small3d")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_is_one_line(tmp_path, capsys):
    assert bench_train.main(["--json", str(tmp_path / "b.json"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0]
