"""Progress of long jobs, on a terminal and in logs.

On a terminal a tqdm bar; without one (cluster jobs, redirected output) tqdm stays silent, so
a line is logged every ``every`` seconds instead: ``desc: done/total (pct), rate, ETA`` and
the latest postfix values. The first line comes after ``every`` seconds, so short jobs log
nothing; the interval is STAL_PROGRESS_SECONDS (default 30) unless given.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

logger = logging.getLogger("stal")
T = TypeVar("T")


def _interval() -> float:
    try:
        return float(os.environ.get("STAL_PROGRESS_SECONDS", "30"))
    except ValueError:
        return 30.0


class Progress:
    """``update`` / ``set_postfix`` / ``close`` like tqdm, plus the periodic log lines."""

    def __init__(self, *, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 enabled: bool = True, every: float | None = None, leave: bool = True):
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave,
                        disable=None if enabled else True)  # None: a bar only on a terminal
        self.log_lines = enabled and self.bar.disable
        self.every = _interval() if every is None else every
        self._start = self._last = time.monotonic()
        self._start_done, self._postfix = initial, {}

    @property
    def disable(self) -> bool:
        """True when no bar is drawn (so callers need not redirect logging around it)."""
        return self.bar.disable

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)
        now = time.monotonic()
        if self.log_lines and now - self._last >= self.every:
            self._last = now
            logger.info("%s", self.line(now))

    def set_postfix(self, **values) -> None:
        self._postfix = values
        self.bar.set_postfix(**values)

    def line(self, now: float | None = None) -> str:
        """``desc: done/total (pct), rate unit/s, ETA h:mm:ss[, key=value ...]``."""
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        parts = [f"{self.desc}: {self.done}" + (f"/{self.total} ({100 * self.done / self.total:.0f}%)"
                                               if self.total else ""), f"{rate:.3g} {self.unit}/s"]
        if self.total and rate > 0:
            parts.append(f"ETA {time.strftime('%H:%M:%S', time.gmtime((self.total - self.done) / rate))}")
        parts += [f"{k}={v}" for k, v in self._postfix.items()]
        return ", ".join(parts)

    def close(self) -> None:
        self.bar.close()


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str, unit: str = "it",
             leave: bool = True, every: float | None = None) -> Iterator[T]:
    """Iterate ``iterable`` with a :class:`Progress` (``total`` defaults to ``len(iterable)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    bar = Progress(total=total, desc=desc, unit=unit, leave=leave, every=every)
    try:
        for item in iterable:
            yield item
            bar.update()
    finally:
        bar.close()
