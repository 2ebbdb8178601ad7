"""Reading torch files (checkpoints, pretrained weights) a user passes in: weights only, one-line errors.

``torch.load(weights_only=True)`` builds tensors and plain values only, so a file cannot run
code. Its errors, though, span a dozen lines and advise re-running with ``weights_only=False``
("will likely succeed"), which is wrong for a random or truncated file and unsafe for a
foreign one; :func:`load_torch_file` reduces them to what is wrong with the file.
"""

from __future__ import annotations

import re
import zipfile
from typing import Iterable

import torch

from stal.errors import DataError, StalError


def torch_load_reason(exc: BaseException) -> str:
    """What is wrong with the file, in a few words, from a ``torch.load`` exception."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)|unsupported GLOBAL (\S+)", text)
    if refused:
        return (f"it asks for {refused.group(1) or refused.group(2)}, which a weights-only load refuses (only tensors and plain "
                f"values are allowed; nothing from the file was run)")
    if "Unsupported operand" in text or "Weights only load failed" in text:
        return "not a torch file (not a readable weights-only pickle)"
    if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
        return "truncated or not a torch file (its zip archive cannot be read)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first[:200]}"


def load_torch_file(path: str, *, what: str, error: type[StalError] = DataError,
                    allowed_globals: Iterable = ()) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; ``error`` with one line on failure.

    allowed_globals: extra classes / functions the file may name (e.g. numpy arrays in older
    stal checkpoints), as for ``torch.serialization.safe_globals``.
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory, expected a file") from None
    except Exception as exc:  # truncated zip, pickle errors, disallowed globals: all "unreadable"
        reason = torch_load_reason(exc)
        if reason.startswith(type(exc).__name__) and not zipfile.is_zipfile(path):
            # Random bytes make torch's legacy reader fail in arbitrary ways (IndexError, ...).
            reason = "not a torch file (neither a zip archive nor a readable weights-only pickle)"
        raise error(f"cannot read {what} {path}: {reason}") from None
