"""tools/model_info.py and tools/bench_models.py on tiny models."""

from __future__ import annotations

import json
import types

import torch
import torch.nn.functional as F

import bench_models
from stal.cli import model_info


def test_model_info_reports_params_flops_time_and_guided_support(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert model_info.main(["mvit_b_16x4_tiny", "--json", str(out)]) == 0
    info = json.loads(out.read_text())["models"]["mvit_b_16x4_tiny"]
    assert info["exact"] == "ok" and info["fd"] == "ok"
    assert info["params_m"] > 0 and info["fwd_bwd_s"] > 0
    assert 0 < info["attn_gflops"] < info["gflops"]  # MViT's q @ k^T and attn @ v are counted
    assert "mvit_b_16x4_tiny" in capsys.readouterr().out
    assert model_info.main(["no_such_model"]) == 2


def test_flop_count_includes_sdpa():
    class Attention(torch.nn.Module):
        def forward(self, x):  # (B, heads, L, E) self-attention, no parameters
            return F.scaled_dot_product_attention(x, x, x)

    holder = types.SimpleNamespace(backbone=Attention())
    total, attention = model_info.count_flops(holder, torch.randn(2, 3, 5, 4))
    assert attention == total == 2 * 3 * 5 * 5 * (4 + 4) / 1e9


def test_bench_models_ratios(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_models.main(["--models", "small3d_tiny", "--rounds", "1", "--warmup", "0", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["models"]["small3d_tiny"]
    assert r["fd_ratio"] == r["fd_s"] / r["plain_s"] and r["exact_ratio"] > 0
