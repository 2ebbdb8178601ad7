"""Loading pickles from files a user passes in, without running code from them.

ACT ground truth (UCF101-24 / JHMDB) and mmaction2 proposal lists are pickles, downloaded from
third-party mirrors. ``pickle.load`` would call whatever callable a file names (``os.system``
through ``__reduce__``), so every pickle in stal is read with :func:`load_pickle`, whose
unpickler resolves only the globals in ``ALLOWED_GLOBALS``: builtin containers, numbers and
strings, and what numpy needs to rebuild arrays, dtypes and scalars (``_reconstruct``,
``ndarray``, ``dtype``, ``scalar``, ``_frombuffer``; both the ``numpy.core`` names of numpy 1
pickles and the ``numpy._core`` names of numpy 2 ones), plus ``_codecs.encode``, which
protocol-2 pickles written by Python 3 use for ``bytes``. Anything else is refused before it
is called. Python 2 pickles load with ``encoding="latin1"`` (their ``str`` were bytes; latin1
maps each byte to one character, and numpy's array payloads need it).
"""

from __future__ import annotations

import _codecs
import builtins
import os
import pickle

import numpy as np

from stal.errors import DataError

_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes",
             "bytearray", "slice", "range")
# The callables numpy's own pickles name, taken from numpy's reductions rather than from its
# private modules (numpy 2 moved numpy.core to numpy._core; pickles of either name must load).
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5: the array data as a pickle buffer
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")

ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    **{("builtins", name): getattr(builtins, name) for name in _BUILTINS},
    **{("__builtin__", name): getattr(builtins, name) for name in _BUILTINS},  # Python 2's module name
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
    **{(module, name): fn for module in _NUMPY_MODULES
       for name, fn in (("_reconstruct", _RECONSTRUCT), ("scalar", _SCALAR), ("_frombuffer", _FROMBUFFER))},
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside ``ALLOWED_GLOBALS``; nothing of it was called."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(module, name) from None


def load_pickle(path: str | os.PathLike, *, what: str = "a pickle", error: type[DataError] = DataError):
    """The object in the pickle file ``path``, built from allowed globals only.

    Raises ``error`` (a DataError subclass) with one line naming the file: not found, refused
    (naming the global it asked for, which was not called), or unreadable (truncated, not a pickle).
    """
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise error(f"{path}: file not found (expected {what})") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory (expected {what})") from None
    except UnsafePickleError as exc:
        raise error(f"{path}: refused to load: the pickle asks for {exc.qualname}, but {what} may hold only "
                    f"containers, numbers, strings and numpy arrays (nothing from the file was run)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # corrupt pickles raise many unrelated types (EOFError, ValueError, ...)
        raise error(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
