"""Atomic checkpoints with every random state, and automatic resume that survives bad files.

Writing: ``torch.save`` into a temporary file in the same directory, flush, fsync, rename
over the final name, fsync the directory. A crash, a SIGKILL or a full disk while saving
leaves the previous checkpoints as they were (pruning runs only after a successful save).

Names follow PySlowFast: ``checkpoint_epoch_%05d.pyth`` after a finished epoch, plus
``checkpoint_epoch_%05d_iter_%08d.pyth`` for mid-epoch saves (TRAIN.CHECKPOINT_ITERS; the
epoch number counts finished epochs) and ``checkpoint_best.pyth`` (never resumed from).

Contents (PySlowFast's keys where they exist): ``model_state``, ``optimizer_state``,
``scaler_state``, ``epoch`` (finished epochs), ``iteration`` (optimizer steps done; the data
sampler's position is ``iteration`` modulo ``iters_per_epoch``), ``rng`` (one entry per rank:
Python, numpy, torch, CUDA), ``cfg`` (the resolved config as YAML), ``history``. Everything is
a tensor or a plain Python value, so loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import re

import numpy as np
import torch
import yaml
from fvcore.common.config import CfgNode

from stal.errors import ConfigError, StalError
from stal.io.atomic import TMP_PREFIX, WriteError, atomic_open, failure_reason
from stal.io.torch_files import load_torch_file

logger = logging.getLogger("stal")
_PATTERN = re.compile(r"checkpoint_epoch_(\d{5})(?:_iter_(\d{8}))?\.pyth$")
BEST_NAME = "checkpoint_best.pyth"
_NUMPY_ARRAYS = [(getattr(np, "_core", None) or np.core).multiarray._reconstruct, np.ndarray, np.dtype,
                 type(np.dtype(np.uint32))]
# Keys that change where or how often things are written, not the trained weights: a resumed
# run may differ from the checkpoint's config in these without TRAIN.ALLOW_CONFIG_CHANGE.
_RESUME_FREE = ("OUTPUT_DIR", "LOG_PERIOD", "NUM_GPUS", "TRAIN.ENABLE", "TRAIN.AUTO_RESUME",
                "TRAIN.CHECKPOINT_PERIOD", "TRAIN.CHECKPOINT_ITERS", "TRAIN.CHECKPOINT_KEEP",
                "TRAIN.MAX_ITERS", "TRAIN.EVAL_PERIOD", "TRAIN.BEST_METRIC", "TRAIN.ALLOW_CONFIG_CHANGE",
                "TRAIN.MAX_NONFINITE_STEPS", "TEST.", "DATA_LOADER.", "DEMO.ROOT", "AVA.FRAME_DIR",
                "AVA.ANNOTATION_DIR")


class CheckpointError(StalError):
    """A checkpoint cannot be written or read."""


def checkpoint_name(*, epoch: int, iteration: int | None = None) -> str:
    """File name of the checkpoint after ``epoch`` finished epochs (+ ``iteration`` mid-epoch)."""
    return f"checkpoint_epoch_{epoch:05d}" + ("" if iteration is None else f"_iter_{iteration:08d}") + ".pyth"


def atomic_torch_save(obj: object, path: str) -> None:
    """``torch.save`` to ``path`` atomically (:func:`stal.io.atomic.atomic_open`); CheckpointError on failure."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        with atomic_open(path, "wb") as f:
            torch.save(obj, f)
    except (WriteError, RuntimeError) as exc:  # torch.save reports some write failures as RuntimeError
        reason = exc.reason if isinstance(exc, WriteError) else failure_reason(exc)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}; "
                              f"the previous checkpoints in {directory} are unchanged") from None


def remove_stale_temporaries(directory: str) -> None:
    """Delete temporary files left by a save that was killed (SIGKILL, power loss)."""
    for path in glob.glob(os.path.join(directory, TMP_PREFIX + "*")):
        os.unlink(path)


def rng_states() -> dict:
    """Python, numpy, torch and CUDA generator states, as tensors and plain values."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _order_key(path: str) -> tuple[int, int]:
    match = _PATTERN.search(path)
    # An epoch-end checkpoint precedes the mid-epoch ones of the next epoch (iteration > 0).
    return int(match.group(1)), int(match.group(2) or 0)


def list_checkpoints(directory: str) -> list[str]:
    """Regular checkpoint paths in ``directory``, oldest first (``checkpoint_best`` excluded)."""
    paths = [p for p in glob.glob(os.path.join(directory, "checkpoint_epoch_*.pyth")) if _PATTERN.search(p)]
    return sorted(paths, key=_order_key)


def save_checkpoint(directory: str, state: dict, *, name: str, keep: int) -> str:
    """Write ``state`` as ``directory/name`` atomically, then prune to the newest ``keep`` (0: all)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    atomic_torch_save(state, path)
    if keep > 0 and name != BEST_NAME:
        for old in list_checkpoints(directory)[:-keep]:
            os.unlink(old)
    return path


def read_checkpoint(path: str) -> dict:
    """The checkpoint dict at ``path`` (CPU tensors); CheckpointError if missing, truncated or foreign."""
    # Checkpoints of stal before this format hold numpy arrays (random states): allowed as data.
    state = load_torch_file(path, what="checkpoint", error=CheckpointError, allowed_globals=_NUMPY_ARRAYS)
    if not isinstance(state, dict) or "model_state" not in state:
        raise CheckpointError(f"{path} is not a stal checkpoint (no 'model_state')")
    return _upgrade(state)


def _upgrade(state: dict) -> dict:
    """A checkpoint of the first format (epoch ends only, one process, numpy RNG tuple) in this one."""
    if "train_state" in state or "optimizer_state" not in state:  # current, or weights only (best)
        return state
    rng = dict(state["rng"])
    _, key, pos, has_gauss, gauss = rng["numpy"]
    rng["numpy"] = {"key": torch.from_numpy(np.asarray(key, np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return {**state, "rng": [rng], "scaler_state": {}, "iters_per_epoch": None, "train_state": {}}


def load_newest(directory: str) -> tuple[str, dict] | None:
    """(path, state) of the newest readable checkpoint in ``directory``, or None if there is none.

    An unreadable newest file (truncated by a full disk outside our atomic save, a bad copy)
    is skipped with a warning and the previous one is used. If there are checkpoints but none
    can be read, that is an error: starting afresh would prune them.
    """
    paths = list_checkpoints(directory)
    for i in range(len(paths) - 1, -1, -1):
        try:
            return paths[i], read_checkpoint(paths[i])
        except CheckpointError as exc:
            logger.warning("%s; %s", exc, "falling back to the previous checkpoint" if i else "no older checkpoint")
    if paths:
        raise CheckpointError(f"none of the {len(paths)} checkpoints in {directory} can be read (see the "
                              f"warnings above); move them away or use another OUTPUT_DIR to start afresh")
    return None


def load_model_weights(model: torch.nn.Module, state: dict, *, path: str) -> None:
    """Load ``state['model_state']`` into ``model``; a clear error when the architectures differ."""
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{path} does not fit this model (another MODEL.* config?): "
                              f"{' '.join(lines[1:3]) or lines[0]}") from None


def _flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def config_differences(saved_dump: str, cfg: CfgNode, *, defaults: CfgNode) -> list[str]:
    """``KEY: saved -> current`` for each training-relevant key that differs.

    Keys added to the defaults after the checkpoint was written count as saved at their default.
    """
    saved = _flatten(yaml.safe_load(saved_dump) or {})
    current, default = _flatten(cfg), _flatten(defaults)
    diffs = []
    for key, value in current.items():
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in _RESUME_FREE):
            continue
        before = saved.get(key, default.get(key))
        if before != value:
            diffs.append(f"{key}: {before!r} -> {value!r}")
    return diffs


def check_resume_config(state: dict, cfg: CfgNode, *, path: str, defaults: CfgNode, allow: bool) -> None:
    """ConfigError if ``path`` was trained with another config (unless ``allow``; then a warning)."""
    diffs = config_differences(state.get("cfg", ""), cfg, defaults=defaults)
    if not diffs:
        return
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    if not allow:
        raise ConfigError(f"OUTPUT_DIR holds {path}, trained with another config ({shown}). Use another "
                          f"OUTPUT_DIR, or resume anyway with TRAIN.ALLOW_CONFIG_CHANGE True")
    logger.warning("resuming %s with a changed config (TRAIN.ALLOW_CONFIG_CHANGE): %s", path, shown)
