"""tools/run_seeds.py's tables: per-seed values, mean ± sample std and paired differences."""

import json
import os

import pytest

from stal.cli import run_seeds
from stal.engine.sweep import paired_difference, plan_runs, summarize


def _write_runs(root, name, values):
    for seed, value in values.items():
        run = root / f"{name}_seed{seed}"
        run.mkdir()
        if value is not None:  # None: a run that has not finished (no metrics.json)
            (run / "metrics.json").write_text(json.dumps({"frame_mAP": value}))


def test_paired_difference_is_per_seed_in_points_over_the_seeds_both_ran(tmp_path):
    _write_runs(tmp_path, "g", {1: 0.50, 2: 0.30, 3: 0.90})
    _write_runs(tmp_path, "p", {1: 0.25, 2: 0.40, 3: None})
    runs = plan_runs(["cfgs/g.yaml", "cfgs/p.yaml"], [1, 2, 3], out_root=str(tmp_path), opts=[], fresh_data=True)
    d = paired_difference(summarize(runs, ["frame_mAP"]), first="g", second="p", key="frame_mAP")
    assert d["per_seed"] == pytest.approx({1: 25.0, 2: -10.0})  # seed 3: p did not finish, not paired
    assert d["mean"] == pytest.approx(7.5) and d["std"] == pytest.approx(24.7487, abs=1e-3)
    assert d["ahead"] == 1
    with pytest.raises(ValueError, match="not among the configs"):
        paired_difference(summarize(runs, ["frame_mAP"]), first="g", second="a", key="frame_mAP")


def test_run_seeds_diff_rows_and_unknown_names(tmp_path, capsys):
    _write_runs(tmp_path, "g", {1: 0.50, 2: 0.30})
    _write_runs(tmp_path, "p", {1: 0.25, 2: 0.40})
    args = ["--cfgs", "g.yaml", "p.yaml", "--seeds", "1", "2", "--summarize-only", "--keys", "frame_mAP",
            "--out", str(tmp_path)]
    assert run_seeds.main(args + ["--diff", "g", "p"]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| g - p | frame_mAP, points | +25.0 | -10.0 | +7.5 ± 24.7 (ahead on 1 of 2) |" in table
    assert json.loads((tmp_path / "summary.json").read_text())["g.yaml"]["frame_mAP"]["mean"] == pytest.approx(0.4)
    with pytest.raises(SystemExit):
        run_seeds.main(args + ["--diff", "g", "demo_nothing"])
    assert "--diff names demo_nothing" in capsys.readouterr().err
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".stal-tmp-")]
