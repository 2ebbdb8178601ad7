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
        name = config_name(cfg)
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
        # Appended: a sweep started again resumes its runs (TRAIN.AUTO_RESUME), and their
        # first part's log stays.
        with open(os.path.join(run.output_dir, "stdout.txt"), "a") as log:
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


def config_name(cfg: str) -> str:
    """The name a run directory and ``--diff`` use for a config: its file name without .yaml."""
    return os.path.splitext(os.path.basename(cfg))[0]


def paired_difference(summary: dict, *, first: str, second: str, key: str) -> dict:
    """``first - second`` of ``key`` per seed, in points (x 100), over the seeds where both ran.

    ``first`` / ``second``: config names (:func:`config_name`) of ``summary``'s configs. Returns
    {"per_seed": {seed: points}, "mean", "std" (sample; None below 2 seeds), "ahead": seeds
    with first > second}. The pairing is by seed because each seed has its own data.
    """
    rows = {config_name(cfg): row for cfg, row in summary.items()}
    missing = [name for name in (first, second) if name not in rows]
    if missing:
        raise ValueError(f"--diff names {', '.join(missing)}: not among the configs {sorted(rows)}")
    a, b = rows[first][key]["per_seed"], rows[second][key]["per_seed"]
    per_seed = {s: 100.0 * (a[s] - b[s]) for s in a if a[s] is not None and b.get(s) is not None}
    values = list(per_seed.values())
    return {"per_seed": per_seed, "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "ahead": sum(v > 0 for v in values)}


def _fmt(v: float | None) -> str:
    return "–" if v is None else (f"{v:.3f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.1e}")


def _fmt_points(v: float | None) -> str:
    return "–" if v is None else f"{v:+.1f}"


def markdown_table(summary: dict, keys: list[str], diffs: list[tuple[str, str]] = ()) -> str:
    """A markdown table: one row per config and metric, seeds as columns, then mean +- std.

    ``diffs``: (first, second) config names; each adds one row per key with the paired
    difference in points (:func:`paired_difference`) and on how many seeds first is ahead.
    """
    seeds = sorted({s for row in summary.values() for s in next(iter(row.values()))["per_seed"]})
    lines = ["| config | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for cfg, row in summary.items():
        for key in keys:
            stats = row[key]
            cells = [_fmt(stats["per_seed"].get(s)) for s in seeds]
            spread = f"{_fmt(stats['mean'])} ± {_fmt(stats['std'])}"
            lines.append(f"| {os.path.basename(cfg)} | {key} | " + " | ".join(cells) + f" | {spread} |")
    for first, second in diffs:
        for key in keys:
            d = paired_difference(summary, first=first, second=second, key=key)
            cells = [_fmt_points(d["per_seed"].get(s)) for s in seeds]
            std = "–" if d["std"] is None else f"{d['std']:.1f}"
            spread = f"{_fmt_points(d['mean'])} ± {std} (ahead on {d['ahead']} of {len(d['per_seed'])})"
            lines.append(f"| {first} - {second} | {key}, points | " + " | ".join(cells) + f" | {spread} |")
    return "\n".join(lines)
