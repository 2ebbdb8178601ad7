"""Run a config over several seeds (in parallel processes) and summarise metrics.json files.

Used by ``tools/run_seeds.py`` to produce the README's result tables: every number there is
the mean and sample standard deviation over the listed seeds, next to each seed's value.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass(frozen=True)
class RunSpec:
    """One training run: a config file, a seed, extra overrides and where its outputs go."""

    cfg: str
    seed: int
    opts: tuple[str, ...]
    output_dir: str

    def command(self, train: list[str]) -> list[str]:
        """``train``: how to start the trainer, e.g. ``[sys.executable, "tools/train_net.py"]``."""
        return [*train, "--cfg", self.cfg, "RNG_SEED", str(self.seed),
                "OUTPUT_DIR", self.output_dir, *self.opts]


def plan_runs(cfgs: list[str], seeds: list[int], *, out_root: str, opts: list[str],
              fresh_data: bool) -> list[RunSpec]:
    """The grid cfgs x seeds; with ``fresh_data`` each seed also gets its own DEMO.SEED."""
    runs = []
    for cfg in cfgs:
        name = os.path.splitext(os.path.basename(cfg))[0]
        for seed in seeds:
            extra = list(opts) + (["DEMO.SEED", str(seed)] if fresh_data else [])
            runs.append(RunSpec(cfg, seed, tuple(extra), os.path.join(out_root, f"{name}_seed{seed}")))
    return runs


def execute(runs: list[RunSpec], *, train: list[str], jobs: int, threads: int) -> list[int]:
    """Run ``runs`` with at most ``jobs`` at a time, ``threads`` torch threads each; return codes.
    ``train``: the trainer's command (RunSpec.command)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    def one(run: RunSpec) -> int:
        os.makedirs(run.output_dir, exist_ok=True)
        with open(os.path.join(run.output_dir, "stdout.txt"), "w") as log:
            code = subprocess.call(run.command(train), stdout=log, stderr=subprocess.STDOUT, env=env)
        print(f"[{'ok' if code == 0 else f'exit {code}'}] {' '.join(run.command(train)[1:])}", flush=True)
        return code

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, runs))


def summarize(runs: list[RunSpec], keys: list[str]) -> dict:
    """{cfg: {key: {"per_seed": {seed: value}, "mean": m, "std": s}}} from each run's metrics.json."""
    table: dict = {}
    for run in runs:
        path = os.path.join(run.output_dir, "metrics.json")
        metrics = json.load(open(path)) if os.path.exists(path) else {}
        row = table.setdefault(run.cfg, {k: {"per_seed": {}} for k in keys})
        for key in keys:
            row[key]["per_seed"][run.seed] = metrics.get(key)
    for row in table.values():
        for stats in row.values():
            values = [v for v in stats["per_seed"].values() if v is not None]
            stats["mean"] = statistics.fmean(values) if values else None
            stats["std"] = statistics.stdev(values) if len(values) > 1 else None
    return table


def markdown_table(summary: dict, keys: list[str]) -> str:
    """A markdown table: one row per config and metric, seeds as columns, then mean +- std."""
    seeds = sorted({s for row in summary.values() for s in next(iter(row.values()))["per_seed"]})
    lines = ["| config | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.1e}")  # noqa: E731
    for cfg, row in summary.items():
        for key in keys:
            stats = row[key]
            cells = [fmt(stats["per_seed"].get(s)) for s in seeds]
            spread = f"{fmt(stats['mean'])} ± {fmt(stats['std'])}"
            lines.append(f"| {os.path.basename(cfg)} | {key} | " + " | ".join(cells) + f" | {spread} |")
    return "\n".join(lines)
