"""The one place that imports pytorchvideo.

pytorchvideo 0.1.5 (the last release) imports ``torchvision.transforms.functional_tensor``
from ``pytorchvideo.transforms``; torchvision 0.17+ renamed that module to
``torchvision.transforms._functional_tensor`` and 0.29 no longer ships the old name.
Registering the new module under the old name in ``sys.modules`` before pytorchvideo is
imported makes every pytorchvideo subpackage importable. Every other module in ``stal``
imports pytorchvideo through the functions here, so the alias is installed exactly once and
before any pytorchvideo import, whatever the import order of the caller.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

_OLD_NAME = "torchvision.transforms.functional_tensor"
_NEW_NAME = "torchvision.transforms._functional_tensor"


def install_torchvision_alias() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable (idempotent)."""
    if _OLD_NAME in sys.modules:
        return
    try:
        # Older torchvision still has the public name: nothing to do.
        importlib.import_module(_OLD_NAME)
        return
    except ImportError:
        pass
    sys.modules[_OLD_NAME] = importlib.import_module(_NEW_NAME)


def import_pytorchvideo(submodule: str) -> ModuleType:
    """Import ``pytorchvideo.<submodule>`` (e.g. ``"models.x3d"``) after installing the alias."""
    install_torchvision_alias()
    with warnings.catch_warnings():
        # pytorchvideo imports fvcore.nn, whose focal loss calls torch.jit.script at import
        # time; torch 2.14 warns about that on every process start. Nothing we can act on.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        return importlib.import_module(f"pytorchvideo.{submodule}")


def import_pytorchvideo_models() -> ModuleType:
    """Return the ``pytorchvideo.models`` package (builders such as ``create_x3d``)."""
    return import_pytorchvideo("models")
