"""Load pretrained weights from local files, with key mapping and a report. Nothing is downloaded.

Supported files (``torch.load``-able dicts; the weights may sit under ``model_state``
(PySlowFast, pytorchvideo model zoo), ``state_dict``, ``model`` or be the dict itself):

- ``stal``: this project's own checkpoints / ``state_dict()`` (keys ``backbone.*``, ``head.*``).
- ``pytorchvideo``: state dicts of pytorchvideo's X3D / Slow / SlowFast / MViT builders
  (``blocks.N.*``, MViT ``patch_embed.*`` ...): loaded into ``backbone.*`` unchanged.
- ``pyslowfast``: PySlowFast ``.pyth`` checkpoints of Slow, SlowFast and X3D (``s1.pathway0_stem.*``,
  ``s2.pathway0_res0.branch2.a.*``, ``s1_fuse.conv_f2s.*``, X3D's ``branch2.se.fc1``), renamed to
  pytorchvideo's layout. (PySlowFast's MViT layout is not mapped: use pytorchvideo's MViT files.)
- ``torchvision``: ResNet-50 / VGG16 ImageNet state dicts for the image models.

The file's classification head (``head.*``, pytorchvideo's last block, torchvision's ``fc`` /
``classifier``) is dropped on purpose: the action head is new. Anything else that does not
fit -- keys the model lacks, backbone keys the file lacks, shape mismatches -- is a
:class:`DataError` listing the keys, unless ``strict=False``, which loads what fits and
reports the rest.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from stal.errors import DataError
from stal.io.torch_files import load_torch_file

logger = logging.getLogger("stal")

SOURCES = ("auto", "stal", "pytorchvideo", "pyslowfast", "torchvision")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did. Keys are the model's names (after mapping)."""

    path: str
    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys left at their initial value
    unexpected: list[str] = field(default_factory=list)  # file keys the model does not have
    mismatched: list[str] = field(default_factory=list)  # "key: file shape vs model shape"
    ignored: list[str] = field(default_factory=list)  # the file's classification head

    def format(self, limit: int = 10) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path} ({self.source} layout)"]
        for name in ("missing", "unexpected", "mismatched", "ignored"):
            keys = getattr(self, name)
            if keys:
                more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
                lines.append(f"  {name} ({len(keys)}): {', '.join(keys[:limit])}{more}")
        return "\n".join(lines)


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise DataError(f"pretrained weights not found: {path}")
    obj = load_torch_file(path, what="pretrained weights (MODEL.PRETRAINED)")
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path} holds no state dict (expected a dict of tensors, or one under "
                        f"'model_state' / 'state_dict' / 'model')")
    # DDP-saved weights carry a "module." prefix.
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def detect_source(keys: list[str]) -> str:
    """Guess the layout of a state dict from its key names."""
    if any(k.startswith(("backbone.", "detector.backbone.")) for k in keys):
        return "stal"
    if any(re.match(r"s\d(_fuse)?\.", k) for k in keys):
        return "pyslowfast"
    if any(k.startswith(("conv1.", "layer1.", "classifier.")) for k in keys) or (
        any(k.startswith("features.") for k in keys) and not any(k.startswith("blocks.") for k in keys)
    ):
        return "torchvision"
    return "pytorchvideo"


_RESNET_RENAMES = [
    (r"branch1_bn\.", "branch1_norm."), (r"branch1\.", "branch1_conv."),
    (r"branch2\.([abc])_bn\.", r"branch2.norm_\1."), (r"branch2\.([abc])\.", r"branch2.conv_\1."),
    (r"stem\.bn\.", "stem.norm."),
]
_X3D_RENAMES = [  # applied after the ResNet ones
    # X3D: the stem's spatial conv is pytorchvideo's conv_t and its temporal one conv_xy (sic).
    (r"stem\.conv_xy\.", "stem.conv.conv_t."), (r"stem\.conv\.(?!conv_t)", "stem.conv.conv_xy."),
    (r"branch2\.norm_b\.", "branch2.norm_b.0."),  # BN + squeeze-excitation in a Sequential
    (r"branch2\.se\.fc1\.", "branch2.norm_b.1.block.0."), (r"branch2\.se\.fc2\.", "branch2.norm_b.1.block.2."),
]


def pyslowfast_to_pytorchvideo(key: str, *, multipathway: bool, x3d: bool = False) -> str | None:
    """PySlowFast ResNet key -> pytorchvideo key (None: classification head / unknown).

    ``s{k}.pathway{p}_stem`` -> ``blocks.0``, ``s{k}.pathway{p}_res{i}`` -> ``blocks.{k-1}.res_blocks.{i}``
    (SlowFast: inside ``multipathway_blocks.{p}``), ``s{k}_fuse.conv_f2s / .bn`` ->
    ``blocks.{k-1}.multipathway_fusion.conv_fast_to_slow / .norm``. X3D (``x3d``): stem
    ``conv_xy`` / ``conv`` -> ``conv.conv_t`` / ``conv.conv_xy``, ``branch2.b_bn`` ->
    ``branch2.norm_b.0`` (only in blocks with squeeze-excitation; the caller falls back to
    ``norm_b`` for the others), ``branch2.se.fc1 / fc2`` -> ``branch2.norm_b.1.block.0 / 2``.
    """
    m = re.match(r"s(\d)_fuse\.(conv_f2s|bn)\.(.+)$", key)
    if m:
        part = "conv_fast_to_slow" if m.group(2) == "conv_f2s" else "norm"
        return f"blocks.{int(m.group(1)) - 1}.multipathway_fusion.{part}.{m.group(3)}"
    m = re.match(r"s(\d)\.pathway(\d)_(stem|res(\d+))\.(.+)$", key)
    if not m:
        return None
    stage, pathway, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(5)
    rest = ("stem." if m.group(3) == "stem" else "") + rest
    for pattern, repl in _RESNET_RENAMES + (_X3D_RENAMES if x3d else []):
        rest = re.sub(pattern, repl, rest)
    rest = rest[len("stem."):] if rest.startswith("stem.") else f"res_blocks.{m.group(4)}.{rest}"
    where = f"blocks.{stage}.multipathway_blocks.{pathway}" if multipathway else f"blocks.{stage}"
    return f"{where}.{rest}"


def _map_keys(state: dict, *, source: str, model: nn.Module, prefix: str) -> tuple[dict, list[str]]:
    """(model-named state, ignored file keys)."""
    if source == "stal":
        return {k if k.startswith(prefix) else prefix + k: v for k, v in state.items()}, []
    backbone = model.get_submodule(prefix + "backbone")
    multipathway, x3d = hasattr(backbone, "alpha"), type(backbone).__name__ == "X3DBackbone"
    own = backbone.state_dict()
    mapped, ignored = {}, []
    for key, value in state.items():
        if source == "pyslowfast":
            new = pyslowfast_to_pytorchvideo(key, multipathway=multipathway, x3d=x3d)
            if new is not None and ".norm_b.0." in new and new not in own:
                new = new.replace(".norm_b.0.", ".norm_b.")  # X3D block without squeeze-excitation
        elif source == "torchvision":
            new = None if key.startswith(("fc.", "classifier.")) else (
                key if key.startswith("features.") else f"features.{key}")
        else:
            new = key
        if new is None or _is_pytorchvideo_head(new, backbone):
            ignored.append(key)
        else:
            mapped[f"{prefix}backbone.{new}"] = value
    return mapped, ignored


def _is_pytorchvideo_head(key: str, backbone: nn.Module) -> bool:
    m = re.match(r"blocks\.(\d+)\.", key)
    blocks = getattr(backbone, "blocks", None)
    if key.startswith("head."):
        return True
    # Trailing blocks that the backbone dropped (X3D/ResNet head, SlowFast pool + head).
    return bool(m) and blocks is not None and not hasattr(backbone, "patch_embed") and int(m.group(1)) >= len(blocks)


def load_pretrained(model: nn.Module, path: str, *, source: str = "auto", strict: bool = True) -> LoadReport:
    """Load ``path`` into ``model`` (an :class:`ActionDetector` or ``MILDetector``) in place.

    source: one of ``SOURCES`` ("auto" guesses from the key names). strict: raise a
    :class:`DataError` listing the keys when anything but the file's classification head and
    the model's new layers (action head, VGG16-GAP's conv6) fails to match; False loads what fits. Head tensors whose
    shape differs (another class count) are skipped and reported as mismatched.
    Returns the :class:`LoadReport` (also logged).
    """
    if source not in SOURCES:
        raise DataError(f"pretrained source must be one of {SOURCES}, got {source!r}")
    state = _read_state(path)
    source = detect_source(list(state)) if source == "auto" else source
    prefix = "detector." if hasattr(model, "detector") else ""
    mapped, ignored = _map_keys(state, source=source, model=model, prefix=prefix)
    own = model.state_dict()
    report = LoadReport(path=path, source=source, ignored=ignored)
    fits = {}
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            fits[key] = value
    report.loaded = sorted(fits)
    report.missing = [k for k in own if k not in fits and not k.endswith("num_batches_tracked")]
    backbone = model.get_submodule(prefix + "backbone")
    new = (prefix + "head.",) + tuple(f"{prefix}backbone.{p}" for p in getattr(backbone, "new_layers", ()))
    _check(report, strict=strict, arch=type(backbone).__name__, new=new)
    model.load_state_dict(fits, strict=False)
    logger.log(logging.WARNING if report.missing or report.unexpected or report.mismatched else logging.INFO,
               "%s", report.format())
    return report


def _check(report: LoadReport, *, strict: bool, arch: str, new: tuple[str, ...]) -> None:
    """Raise unless the file fits the architecture (see :func:`load_pretrained`); keys under
    the ``new`` prefixes (the action head, layers added to the pretrained net) may be absent."""
    problems = {
        "keys the model lacks": report.unexpected,
        "backbone keys the file lacks": [k for k in report.missing if not k.startswith(new)],
        "shape mismatches": [m for m in report.mismatched if not m.startswith(new)],
    }
    if not report.loaded or (strict and any(problems.values())):
        detail = "; ".join(f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                           for name, keys in problems.items() if keys)
        raise DataError(f"{report.path} ({report.source} layout) does not fit {arch}: {detail}. "
                        f"Is it a checkpoint of another architecture or size? (strict=False loads what fits)")
