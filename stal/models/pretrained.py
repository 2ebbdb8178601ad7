"""Load pretrained weights from local files, with key mapping and a report. Nothing is downloaded.

Supported files (``torch.load``-able dicts; the weights may sit under ``model_state``
(PySlowFast, pytorchvideo model zoo), ``state_dict``, ``model`` or be the dict itself):

- ``stal``: this project's own checkpoints / ``state_dict()`` (keys ``backbone.*``, ``head.*``).
- ``pytorchvideo``: state dicts of pytorchvideo's X3D / Slow / SlowFast / MViT builders
  (``blocks.N.*``, MViT ``patch_embed.*`` ...): loaded into ``backbone.*`` unchanged.
- ``pyslowfast``: PySlowFast ``.pyth`` checkpoints of Slow, SlowFast and X3D (``s1.pathway0_stem.*``,
  ``s2.pathway0_res0.branch2.a.*``, ``s1_fuse.conv_f2s.*``, X3D's ``branch2.se.fc1``), renamed to
  pytorchvideo's layout. (PySlowFast's MViT layout is not mapped: use pytorchvideo's MViT files.)
- ``caffe2``: PySlowFast's ``CHECKPOINT_TYPE caffe2`` model-zoo ``.pkl`` files (a pickle of
  ``{"blobs": {name: numpy array}}``, read with the restricted unpickler of
  :mod:`stal.io.safe_pickle`, so nothing in the file runs): blob names such as ``conv1_w``,
  ``res_conv1_bn_s``, ``res2_0_branch2a_w``, ``t_res3_0_branch1_bn_riv`` (fast pathway),
  ``t_pool1_subsample_w`` (fusion) are renamed to PySlowFast's ``.pyth`` names and from there
  to pytorchvideo's. ``source="auto"`` picks it for a ``.pkl`` file. Optimizer blobs
  (``*_momentum``, ``lr``, ``model_iter``) and the head (``pred_*``) are dropped.
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

import numpy as np
import torch
import torch.nn as nn

from stal.errors import DataError
from stal.io.safe_pickle import load_pickle
from stal.io.torch_files import load_torch_file

logger = logging.getLogger("stal")

SOURCES = ("auto", "stal", "pytorchvideo", "pyslowfast", "caffe2", "torchvision")


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


def _read_caffe2_blobs(path: str) -> dict[str, torch.Tensor]:
    """The ``blobs`` of a Caffe2 ``.pkl`` as tensors (same dtype and bits as the arrays).

    PySlowFast reads these with ``pickle.load`` (slowfast/utils/checkpoint.py,
    ``load_checkpoint(convert_from_caffe2=True)``); here only numpy arrays and containers
    can come out of the file.
    """
    if not os.path.isfile(path):
        raise DataError(f"pretrained weights not found: {path}")
    obj = load_pickle(path, what="Caffe2 weights (a dict with 'blobs' of numpy arrays)")
    blobs = obj.get("blobs") if isinstance(obj, dict) else None
    if not isinstance(blobs, dict):
        found = f"a dict with keys {sorted(map(str, obj))[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{path}: expected a Caffe2 checkpoint (a dict with 'blobs'), found {found}")
    state = {}
    for name, value in blobs.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # e.g. a plain-int model_iter
            value = np.asarray(value)
        if not isinstance(value, (np.ndarray, np.generic)) or not np.issubdtype(np.asarray(value).dtype, np.number):
            raise DataError(f"{path}: blob {name!r} is {type(value).__name__}, expected a numeric numpy array")
        state[str(name)] = torch.from_numpy(np.array(value))  # a copy: the tensor owns its memory
    return state


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


_C2_CONV = {"w": "weight", "b": "bias"}
_C2_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
# Blobs of the Caffe2 training state and of the classification head, dropped on purpose.
_C2_DROPPED = re.compile(r"(_momentum$|^lr$|^model_iter$|^(pred|conv_5|lin_5)_)")


def _caffe2_module(module: str, bn: bool) -> str | None:
    """Caffe2 module prefix (blob name minus ``_w`` / ``_bn_s`` ...) -> PySlowFast module name.

    ``t_`` marks the fast pathway (pathway1). Written from the rules of PySlowFast's
    slowfast/utils/c2_model_loading.py ``get_name_convert_func`` (not copied), one
    pattern per module kind instead of a chain of rewrites.
    """
    m = re.fullmatch(r"(t_)?(res_)?conv1(_xy)?", module)
    if m:  # stem: conv1 (conv), res_conv1 + _bn (norm); X3D's spatial stem conv is conv1_xy
        part = "bn" if bn else "conv" + (m.group(3) or "")
        return f"s1.pathway{int(bool(m.group(1)))}_stem.{part}"
    m = re.fullmatch(r"t_(pool1|res(\d+)_\d+_branch2c_bn)_subsample", module)
    if m:  # fast -> slow lateral conv after the stem (pool1) or after stage k's last block
        return f"s{m.group(2) or 1}_fuse.{'bn' if bn else 'conv_f2s'}"
    m = re.fullmatch(r"(t_)?res(\d+)_(\d+)_branch(1|2[abc])(_bn_fc[12])?", module)
    if not m:
        return None  # e.g. non-local blocks, which stal's backbones do not have
    where = f"s{m.group(2)}.pathway{int(bool(m.group(1)))}_res{m.group(3)}"
    if m.group(5):  # X3D squeeze-excitation of branch2b: res2_0_branch2b_bn_fc1_w
        return None if bn else f"{where}.branch2.se.fc{m.group(5)[-1]}"
    branch = "branch1" if m.group(4) == "1" else f"branch2.{m.group(4)[1]}"
    return f"{where}.{branch}_bn" if bn else f"{where}.{branch}"


def caffe2_to_pyslowfast(name: str) -> str | None:
    """Caffe2 blob name -> PySlowFast ``.pyth`` key (None: not a backbone parameter).

    ``res2_0_branch2a_w`` -> ``s2.pathway0_res0.branch2.a.weight``,
    ``res2_0_branch2a_bn_riv`` -> ``s2.pathway0_res0.branch2.a_bn.running_var``,
    ``t_res_conv1_bn_s`` -> ``s1.pathway1_stem.bn.weight``,
    ``t_res3_3_branch2c_bn_subsample_w`` -> ``s3_fuse.conv_f2s.weight``.
    """
    m = re.fullmatch(r"(.+?)(?:_bn_(s|b|rm|riv)|_(w|b))", name)
    if not m:
        return None
    module = _caffe2_module(m.group(1), bn=m.group(2) is not None)
    if module is None:
        return None
    return f"{module}.{_C2_BN[m.group(2)] if m.group(2) else _C2_CONV[m.group(3)]}"


def _map_keys(state: dict, *, source: str, model: nn.Module, prefix: str) -> tuple[dict, list[str], list[str]]:
    """(model-named state, ignored file keys (heads, optimizer state), unknown file keys)."""
    if source == "stal":
        return {k if k.startswith(prefix) else prefix + k: v for k, v in state.items()}, [], []
    backbone = model.get_submodule(prefix + "backbone")
    multipathway, x3d = hasattr(backbone, "alpha"), type(backbone).__name__ == "X3DBackbone"
    own = backbone.state_dict()
    mapped, ignored, unknown = {}, [], []
    for key, value in state.items():
        if source in ("pyslowfast", "caffe2"):
            if key.startswith("head.") or (source == "caffe2" and _C2_DROPPED.search(key)):
                ignored.append(key)
                continue
            name = caffe2_to_pyslowfast(key) if source == "caffe2" else key
            new = name and pyslowfast_to_pytorchvideo(name, multipathway=multipathway, x3d=x3d)
            if new is None:  # a module stal's backbones lack (non-local blocks ...): reported
                unknown.append(key)
                continue
            if ".norm_b.0." in new and new not in own:
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
    return mapped, ignored, unknown


def _is_pytorchvideo_head(key: str, backbone: nn.Module) -> bool:
    m = re.match(r"blocks\.(\d+)\.", key)
    blocks = getattr(backbone, "blocks", None)
    if key.startswith("head."):
        return True
    # Trailing blocks that the backbone dropped (X3D/ResNet head, SlowFast pool + head).
    return bool(m) and blocks is not None and not hasattr(backbone, "patch_embed") and int(m.group(1)) >= len(blocks)


def load_pretrained(model: nn.Module, path: str, *, source: str = "auto", strict: bool = True) -> LoadReport:
    """Load ``path`` into ``model`` (an :class:`ActionDetector` or ``MILDetector``) in place.

    source: one of ``SOURCES`` ("auto": ``caffe2`` for a ``.pkl`` file, otherwise guessed from the
    key names). strict: raise a
    :class:`DataError` listing the keys when anything but the file's classification head and
    the model's new layers (action head, VGG16-GAP's conv6) fails to match; False loads what fits. Head tensors whose
    shape differs (another class count) are skipped and reported as mismatched.
    Returns the :class:`LoadReport` (also logged).
    """
    if source not in SOURCES:
        raise DataError(f"pretrained source must be one of {SOURCES}, got {source!r}")
    if source == "auto" and path.lower().endswith(".pkl"):
        source = "caffe2"
    state = _read_caffe2_blobs(path) if source == "caffe2" else _read_state(path)
    source = detect_source(list(state)) if source == "auto" else source
    prefix = "detector." if hasattr(model, "detector") else ""
    mapped, ignored, unknown = _map_keys(state, source=source, model=model, prefix=prefix)
    own = model.state_dict()
    report = LoadReport(path=path, source=source, ignored=ignored, unexpected=unknown)
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
