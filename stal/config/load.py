"""Load a config: defaults <- YAML file (with ``_BASE_``) <- ``KEY VALUE`` overrides.

Unknown keys, wrong value types, YAML files that are not mappings and values outside
their allowed range are :class:`stal.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import ast
import os
from typing import Any, Sequence

import yaml
from fvcore.common.config import CfgNode

from stal.config.defaults import get_cfg
from stal.data.build import IMAGE_DATASETS, TEST_DATASETS, TRAIN_DATASETS
from stal.errors import ConfigError
from stal.guidance.penalty import CHOICES as GUIDANCE_CHOICES

# Allowed values of string keys; checked after all merges.
_CHOICES = {
    # The dataset and guidance values come from where they are implemented (one list each).
    "TRAIN.DATASET": tuple(TRAIN_DATASETS),
    "TEST.DATASET": tuple(TEST_DATASETS),
    "IMAGE.PROVENANCE": ("region", "object"),
    "MODEL.LOSS_FUNC": ("softmax", "bce"),
    "MODEL.MIL_POOLING": ("", "max", "lse", "mean"),
    "SOLVER.OPTIMIZING_METHOD": ("adamw", "sgd"),
    "SOLVER.LR_POLICY": ("cosine", "constant", "steps_with_relative_lrs"),
    "TRAIN.MIXED_PRECISION": ("fp32", "bf16", "fp16"),
    "SYNTHESIS.TRAJECTORY": ("static", "linear"),
    "SYNTHESIS.OCCLUSION": ("random", "depth"),
    "SYNTHESIS.EDGE": ("hard", "feather"),
    "SYNTHESIS.INTERPOLATION": ("nearest", "bilinear"),
    "SYNTHESIS.MIXER": ("none", "cutmix", "batchmix"),
    **{f"GUIDANCE.{name.upper()}": values for name, values in GUIDANCE_CHOICES.items()},
}
# Numeric keys that must be >= 0 (or > 0 for the second group).
_NON_NEGATIVE = ("GUIDANCE.LAMBDA", "GUIDANCE.WARMUP_EPOCHS", "GUIDANCE.TOLERANCE",
                 "GUIDANCE.TOLERANCE_FRAMES", "GUIDANCE.LOWPASS", "GUIDANCE.TEMPORAL_DECAY",
                 "GUIDANCE.MAX_RATIO", "SOLVER.WARMUP_EPOCHS",
                 "SOLVER.WEIGHT_DECAY", "NUM_GPUS", "DATA_LOADER.NUM_WORKERS",
                 "TRAIN.MAX_ITERS", "TRAIN.CHECKPOINT_KEEP", "MODEL.DROPOUT_RATE",
                 "TRAIN.CHECKPOINT_ITERS", "TRAIN.EVAL_PERIOD", "SOLVER.WARMUP_START_LR",
                 "SOLVER.COSINE_END_LR", "SOLVER.CLIP_GRAD_L2NORM")
_POSITIVE = ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "SOLVER.BASE_LR", "SOLVER.MAX_EPOCH",
             "DATA.NUM_FRAMES", "DATA.CROP_SIZE", "DATA.SAMPLING_RATE",
             "MODEL.NUM_CLASSES", "SYNTHESIS.CLIPS_PER_EPOCH", "LOG_PERIOD",
             "TRAIN.CHECKPOINT_PERIOD", "GUIDANCE.FD_STEP",
             "TRAIN.GRAD_ACCUM_STEPS", "TRAIN.MAX_NONFINITE_STEPS", "DEMO.TUBES_PER_CLASS",
             "DEMO.BACKGROUNDS_PER_SCENE", "DEMO.TEST_VIDEOS", "DEMO.TEST_KEYFRAMES", "DEMO.FPS")


def _read_yaml(path: str, _seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML config as a dict, resolving ``_BASE_`` (relative to the file)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.abspath(path) in _seen:
        raise ConfigError(f"{path}: _BASE_ chain includes itself")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, "
                          f"got {type(data).__name__}")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    merged = _read_yaml(base_path, _seen + (os.path.abspath(path),))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = value


def _merge_dict(cfg: CfgNode, data: dict, source: str, prefix: str = "") -> None:
    """Merge ``data`` into ``cfg`` key by key, so errors can name the full key."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str) or key not in cfg:
            raise ConfigError(f"{source}: unknown config key {full}")
        current = cfg[key]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full} is a section; expected a mapping, "
                                  f"got {value!r}")
            _merge_dict(current, value, source, full + ".")
        else:
            cfg[key] = _coerce(current, value, full, source)


def _coerce(current: Any, value: Any, key: str, source: str) -> Any:
    """Return ``value`` as the type of the default ``current`` or raise ConfigError."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-7" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    raise ConfigError(f"{source}: {key} expects a {type(current).__name__} "
                      f"(default {current!r}), got {value!r}")


def _parse_override(text: str) -> Any:
    """A command-line value: a Python/YAML literal when it parses as one, else a string."""
    if not text.strip():  # YAML reads "" as null; on the command line it means the empty string
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _merge_opts(cfg: CfgNode, opts: Sequence[str]) -> None:
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd number: {list(opts)}")
    for key, text in zip(opts[0::2], opts[1::2]):
        node_check = cfg
        for part in key.split("."):
            if not isinstance(node_check, CfgNode) or part not in node_check:
                raise ConfigError(f"command line: unknown config key {key}")
            node_check = node_check[part]
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_override(text)
        _merge_dict(cfg, nested, "command line")


def validate_cfg(cfg: CfgNode) -> None:
    """Check value ranges and choices that types alone cannot express."""
    def get(key: str) -> Any:
        node = cfg
        for part in key.split("."):
            node = node[part]
        return node

    for key, choices in _CHOICES.items():
        if get(key) not in choices:
            raise ConfigError(f"{key} must be one of {list(choices)}, got {get(key)!r}")
    for key in _NON_NEGATIVE:
        if get(key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {get(key)!r}")
    for key in _POSITIVE:
        if get(key) <= 0:
            raise ConfigError(f"{key} must be > 0, got {get(key)!r}")
    if not 0.0 < cfg.IMAGE.CAM_CURVE_INTERVAL < 1.0:
        raise ConfigError(f"IMAGE.CAM_CURVE_INTERVAL must be in (0, 1), got {cfg.IMAGE.CAM_CURVE_INTERVAL}")
    if not 0.0 <= cfg.SYNTHESIS.SCENE_BIAS <= 1.0:
        raise ConfigError(f"SYNTHESIS.SCENE_BIAS must be in [0, 1], got {cfg.SYNTHESIS.SCENE_BIAS}")
    _validate_partner(cfg)
    _validate_demo_weak(cfg, get)
    if not 1 <= cfg.SYNTHESIS.ACTORS_MIN <= cfg.SYNTHESIS.ACTORS_MAX:
        raise ConfigError("need 1 <= SYNTHESIS.ACTORS_MIN <= SYNTHESIS.ACTORS_MAX, got "
                          f"{cfg.SYNTHESIS.ACTORS_MIN} and {cfg.SYNTHESIS.ACTORS_MAX}")
    if not 0.0 <= cfg.DEMO.POSE_RANDOMNESS <= 1.0:
        raise ConfigError(f"DEMO.POSE_RANDOMNESS must be in [0, 1], got {cfg.DEMO.POSE_RANDOMNESS}")
    if cfg.GUIDANCE.PENALTY == "colour_shift" and cfg.GUIDANCE.P != "l2":
        raise ConfigError("GUIDANCE.PENALTY colour_shift is a squared derivative: it needs GUIDANCE.P l2")
    _validate_union_region(cfg)
    if cfg.GUIDANCE.LAMBDA_RULE == "balance_init" and cfg.GUIDANCE.MODE == "counterfactual":
        raise ConfigError("GUIDANCE.LAMBDA_RULE balance_init balances the input-gradient penalty: it needs "
                          "GUIDANCE.MODE exact or fd, not counterfactual")
    _validate_steps(cfg)
    if len(cfg.DATA.MEAN) != 3 or len(cfg.DATA.STD) != 3:
        raise ConfigError("DATA.MEAN and DATA.STD must have 3 values (RGB)")


# TRAIN.DATASET demo_weak fixes these keys (the benchmark's layout, docs/weak_demo.md): two actors
# per clip, one per half; the half-frame cuboid over every frame; one class per actor; no
# transforms after the mix (the regions are read from the cuboid).
_DEMO_WEAK_FIXED = {"SYNTHESIS.MIXER": "batchmix", "SYNTHESIS.ACTORS_MIN": 2, "SYNTHESIS.ACTORS_MAX": 2,
                    "SYNTHESIS.MIX_AREA_MIN": 0.5, "SYNTHESIS.MIX_AREA_MAX": 0.5, "SYNTHESIS.MIX_DURATION_MIN": 1.0,
                    "SYNTHESIS.MIX_DURATION_MAX": 1.0, "SYNTHESIS.KEEP_INSIDE": True, "SYNTHESIS.MULTI_LABEL": False,
                    "SYNTHESIS.CROP_SCALE_MIN": 1.0, "SYNTHESIS.HFLIP_PROB": 0.0, "MODEL.LOSS_FUNC": "softmax"}


def _validate_demo_weak(cfg: CfgNode, get) -> None:
    """TRAIN.DATASET demo_weak: MIL pooling on, and the keys of :data:`_DEMO_WEAK_FIXED` as stated."""
    if cfg.TRAIN.DATASET != "demo_weak":
        return
    if not cfg.MODEL.MIL_POOLING:
        raise ConfigError("TRAIN.DATASET demo_weak has clip-level labels only: set MODEL.MIL_POOLING (max, lse or mean)")
    for key, value in _DEMO_WEAK_FIXED.items():
        if get(key) != value:
            raise ConfigError(f"TRAIN.DATASET demo_weak needs {key} {value!r} (the benchmark's layout, "
                              f"docs/weak_demo.md), got {get(key)!r}")


def _validate_partner(cfg: CfgNode) -> None:
    """TRAIN.DATASET image_partner: rho in [0, 1]; a rectangle beside an object up to about half the
    image wide has at most half the image (a larger MIX_AREA_MAX would redraw targets forever)."""
    if not 0.0 <= cfg.IMAGE.PARTNER_SCENE_BIAS <= 1.0:
        raise ConfigError(f"IMAGE.PARTNER_SCENE_BIAS must be in [0, 1], got {cfg.IMAGE.PARTNER_SCENE_BIAS}")
    s = cfg.SYNTHESIS
    if cfg.TRAIN.DATASET == "image_partner" and not 0.0 < s.MIX_AREA_MIN <= s.MIX_AREA_MAX <= 0.5:
        raise ConfigError("TRAIN.DATASET image_partner needs 0 < SYNTHESIS.MIX_AREA_MIN <= SYNTHESIS.MIX_AREA_MAX "
                          f"<= 0.5 (the rectangle lies beside the target object), got {s.MIX_AREA_MIN} and "
                          f"{s.MIX_AREA_MAX}")


def _validate_union_region(cfg: CfgNode) -> None:
    """REGION union over region provenance from a mixing synthesizer: the union of the mixed
    sources' regions is the whole input, so R is identically 0 -- refused, not silently run."""
    g = cfg.GUIDANCE
    if not g.ENABLE or g.MODE == "counterfactual" or g.REGION != "union":
        return
    keys = None
    if cfg.TRAIN.DATASET in IMAGE_DATASETS and cfg.IMAGE.PROVENANCE == "region":
        keys = f"TRAIN.DATASET {cfg.TRAIN.DATASET} (CutMix) with IMAGE.PROVENANCE region"
    elif cfg.TRAIN.DATASET == "synthesis" and cfg.SYNTHESIS.MIXER != "none" and not cfg.MODEL.MIL_POOLING:
        keys = f"SYNTHESIS.MIXER {cfg.SYNTHESIS.MIXER} (two region sources)"
    if keys:
        raise ConfigError(f"GUIDANCE.REGION union with {keys}: the union of the mixed sources is the whole "
                          f"input, so the penalty is identically 0; use GUIDANCE.REGION per_source")


def _validate_steps(cfg: CfgNode) -> None:
    steps, lrs = list(cfg.SOLVER.STEPS), list(cfg.SOLVER.LRS)
    if cfg.SOLVER.LR_POLICY != "steps_with_relative_lrs":
        return
    if not steps or len(steps) != len(lrs) or steps[0] != 0 or sorted(set(steps)) != steps:
        raise ConfigError("SOLVER.LR_POLICY steps_with_relative_lrs needs SOLVER.STEPS (increasing epochs, "
                          f"starting at 0) and SOLVER.LRS of the same length, got {steps} and {lrs}")


def load_cfg(path: str | Sequence[str] | None = None, opts: Sequence[str] = ()) -> CfgNode:
    """Defaults, then the YAML file(s) at ``path`` (merged in order), then ``opts`` (KEY VALUE ...);
    validated, frozen."""
    cfg = get_cfg()
    for one in [path] if isinstance(path, (str, os.PathLike)) else list(path or ()):
        _merge_dict(cfg, _read_yaml(one), one)
    _merge_opts(cfg, opts)
    validate_cfg(cfg)
    cfg.freeze()
    return cfg
