"""Atomic checkpoints with every random state, and automatic resume.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, then
renamed over the final name: a crash while saving never leaves a truncated checkpoint, and
the previous ones stay intact. Names follow PySlowFast: ``checkpoint_epoch_%05d.pyth``.
"""

from __future__ import annotations

import glob
import os
import random
import re
import tempfile

import numpy as np
import torch

from stal.errors import StalError

_PATTERN = re.compile(r"checkpoint_epoch_(\d{5})\.pyth$")


def atomic_torch_save(obj: object, path: str) -> None:
    """``torch.save`` to ``path`` via a temporary file + fsync + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pyth", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rng_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def list_checkpoints(directory: str) -> list[str]:
    """Checkpoint paths in ``directory`` sorted by epoch (oldest first)."""
    paths = [p for p in glob.glob(os.path.join(directory, "checkpoint_epoch_*.pyth")) if _PATTERN.search(p)]
    return sorted(paths, key=lambda p: int(_PATTERN.search(p).group(1)))


def save_checkpoint(directory: str, *, epoch: int, iteration: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, keep: int, cfg_dump: str) -> str:
    """Write the checkpoint of a finished ``epoch`` (1-based) and prune to the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"checkpoint_epoch_{epoch:05d}.pyth")
    state = {"epoch": epoch, "iteration": iteration, "model_state": model.state_dict(),
             "optimizer_state": optimizer.state_dict(), "rng": rng_states(), "cfg": cfg_dump}
    atomic_torch_save(state, path)
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            os.unlink(old)
    return path


def load_checkpoint(path: str, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load model (and optimizer, random states) from ``path``; returns the checkpoint dict."""
    try:
        # Random states hold numpy arrays and tuples: not loadable with weights_only=True.
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model_state"])
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise StalError(f"cannot load checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer_state"])
        set_rng_states(state["rng"])
    return state
