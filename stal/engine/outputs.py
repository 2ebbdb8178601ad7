"""What a run writes besides checkpoints: log.jsonl, TensorBoard events, JSON files.

Only rank 0 writes (:func:`open_run_log` gives the other ranks a log that drops records).
log.jsonl has one JSON object per logged step; on resume the records at or after the
resumed iteration (written by the killed run after its last checkpoint) are dropped first,
so the file reads as one uninterrupted run. TensorBoard is told the same (``purge_step``).
"""

from __future__ import annotations

import json
import logging
import math
import os

from stal.errors import StalError
from stal.io.atomic import WriteError, atomic_write_json, atomic_write_text

logger = logging.getLogger("stal")


def check_output_dir(path: str) -> None:
    """Fail now, writing nothing, if ``path`` could not be created or written: the nearest existing
    folder on the way must be a writable directory (a failed start leaves no files behind)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        what = "is not a directory" if not os.path.isdir(probe) else "is not writable"
        raise StalError(f"OUTPUT_DIR {path!r} cannot be written: {probe} {what}")


def prepare_output_dir(path: str, *, config_text: str) -> None:
    """Create ``path`` and dump the resolved config into it as config.yaml (atomically)."""
    try:
        os.makedirs(path, exist_ok=True)
        atomic_write_text(os.path.join(path, "config.yaml"), config_text)
    except OSError as exc:
        raise StalError(f"OUTPUT_DIR {path!r} cannot be written: {exc.strerror}") from None
    except WriteError as exc:
        raise StalError(f"OUTPUT_DIR {path!r} cannot be written: {exc.reason}") from None


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` atomically as indented JSON."""
    atomic_write_json(path, data)


def _truncate_jsonl(path: str, *, before_iteration: int) -> None:
    """Keep only the records of ``path`` with ``iter`` < ``before_iteration`` (and drop a torn last line)."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a SIGKILL cut in half
            if record.get("iter", -1) < before_iteration:
                kept.append(json.dumps(record) + "\n")
    atomic_write_text(path, "".join(kept))


class RunLog:
    """log.jsonl and TensorBoard scalars of one run (rank 0); ``enabled`` False writes nothing.

    start_iteration: the iteration the run starts (resumes) at; later records are discarded.
    """

    def __init__(self, output_dir: str, *, start_iteration: int, enabled: bool):
        self.file, self.tb = None, None
        if not enabled:
            return
        path = os.path.join(output_dir, "log.jsonl")
        _truncate_jsonl(path, before_iteration=start_iteration)
        self.file = open(path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional at run time: the JSON log has everything
            logger.warning("tensorboard is not installed: no event files (pip install tensorboard)")
            return
        self.tb = SummaryWriter(os.path.join(output_dir, "tensorboard"), purge_step=start_iteration)

    def write(self, record: dict, *, prefix: str = "train") -> None:
        """Append ``record`` (must hold ``iter``) to log.jsonl; its numbers to TensorBoard."""
        # Strict JSON: a skipped step's NaN / inf values are written as null.
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "iter" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{prefix}/{key}", value, record["iter"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
