"""The one way stal writes a file: a temporary file in the same folder, fsync, rename.

Readers see the old file or the new one, never half of either; a crash, a SIGKILL or a full
disk while writing leaves the previous file as it was (the temporary file is removed when
Python still runs). The rename is then fsynced through the folder so it survives a power loss.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

from stal.errors import StalError

PathLike = Union[str, "os.PathLike[str]"]
TMP_PREFIX = ".stal-tmp-"  # shared with checkpoint cleanup: files with this prefix are leftovers
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(StalError):
    """A file cannot be written; the previous version of it (if any) is unchanged.

    ``reason`` is the cause alone (e.g. "disk full: No space left on device"), for callers
    that name the file in their own words.
    """

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"cannot write {path}: {reason}; the previous file is unchanged")
        self.path, self.reason = path, reason


def failure_reason(exc: BaseException) -> str:
    """One line saying why a write failed, a full disk named as such."""
    full = isinstance(exc, OSError) and exc.errno in _FULL
    reason = getattr(exc, "strerror", None) or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return ("disk full: " if full else "") + reason


def fsync_directory(directory: PathLike) -> None:
    """Persist a rename in ``directory`` (best effort: not every platform opens folders)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    mode: "wb" or "w" (text; ``encoding`` defaults to UTF-8, newlines are written as given).
    An OSError while writing or renaming becomes a :class:`WriteError`; any other exception
    propagates; in both cases the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(path, failure_reason(exc)) from None
    try:
        text = {"encoding": encoding or "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; keep an existing file's mode, else the usual 0644.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteError(path, failure_reason(exc)) from None
        raise
    fsync_directory(directory)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically; newlines are written as given."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path: PathLike, data: object, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent))
