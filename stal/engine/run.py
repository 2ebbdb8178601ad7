"""A whole run from a config: processes, output directory, train (:mod:`stal.engine.loop`), test
(:func:`stal.engine.evaluate.test`), metrics.json.

``run(cfg)`` is what ``tools/train_net.py`` calls (once per process under torchrun);
``run_test(cfg)`` is ``tools/test_net.py``. Rank 0 writes every file; the other ranks only
train. See docs/training.md for the outputs and the resume rules.
"""

from __future__ import annotations

import os

from fvcore.common.config import CfgNode

from stal.engine import builders
from stal.engine.distributed import barrier, init_distributed, shutdown
from stal.engine.evaluate import test
from stal.engine.loop import train
from stal.engine.outputs import check_output_dir, prepare_output_dir, write_json
from stal.engine.state import load_trained_weights, seed_everything
from stal.errors import StalError


def run(cfg: CfgNode) -> dict:
    """Train and/or test as configured (one process of a torchrun job, or the only one);
    rank 0 writes OUTPUT_DIR/metrics.json. Returns the metrics (empty on other ranks)."""
    ctx = init_distributed(num_gpus=cfg.NUM_GPUS)
    try:
        if ctx.is_main:
            check_output_dir(cfg.OUTPUT_DIR)  # config.yaml is written once the data and model are built
        barrier(ctx)
        seed_everything(cfg.RNG_SEED)
        model = builders.build_model(cfg).to(ctx.device)
        if ctx.active:
            seed_everything(cfg.RNG_SEED + ctx.rank)  # same initial weights, own dropout streams
        metrics: dict = {}
        if cfg.TRAIN.ENABLE:
            metrics.update(train(cfg, model, ctx))
        else:
            load_trained_weights(cfg, model)
            if ctx.is_main:
                prepare_output_dir(cfg.OUTPUT_DIR, config_text=cfg.dump())
        if cfg.TEST.ENABLE:
            metrics = {**test(cfg, model, out_dir=cfg.OUTPUT_DIR, ctx=ctx), **metrics}
            if ctx.is_main:
                write_json(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), metrics)
        barrier(ctx)
        return metrics if ctx.is_main else {}
    finally:
        shutdown(ctx)


def run_test(cfg: CfgNode) -> dict:
    """tools/test_net.py: the trained checkpoint on the test split; writes OUTPUT_DIR/test/
    (config.yaml, detections.csv in the dataset's native format, metrics.json)."""
    ctx = init_distributed(num_gpus=cfg.NUM_GPUS)
    if ctx.active:
        shutdown(ctx)
        raise StalError("tools/test_net.py runs in one process; launch it without torchrun")
    out_dir = os.path.join(cfg.OUTPUT_DIR, "test")
    check_output_dir(out_dir)
    seed_everything(cfg.RNG_SEED)
    model = builders.build_model(cfg).to(ctx.device)
    path = load_trained_weights(cfg, model)
    prepare_output_dir(out_dir, config_text=cfg.dump())  # only now: a failed start leaves no files
    metrics = {"checkpoint": os.path.abspath(path), **test(cfg, model, out_dir=out_dir)}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
