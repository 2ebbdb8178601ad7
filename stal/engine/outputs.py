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

from stal.io.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger("stal")


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
