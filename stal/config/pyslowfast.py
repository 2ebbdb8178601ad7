"""PySlowFast YAML -> stal config: every key mapped, implied or unsupported, with the reason.

A PySlowFast config file holds only what differs from PySlowFast's defaults
(slowfast/config/defaults.py), so a key it leaves out means PySlowFast's default, not stal's.
:func:`convert_pyslowfast` therefore reads the file over the PySlowFast defaults of the keys
it maps (``PYSLOWFAST_DEFAULTS``, values read from that file) and reports, one line per key:

- ``mapped``: the value lands on a stal key (renamed, or converted: ``TRAIN.MIXED_PRECISION
  True`` -> ``"fp16"``, ``MODEL.LOSS_FUNC cross_entropy`` -> ``softmax``, ``MODEL.ARCH`` +
  ``RESNET.DEPTH`` + the temporal-kernel layout -> ``slowfast_r101`` ...);
- ``implied``: stal behaves so without a key (``DETECTION.ENABLE True``: stal's models are
  detectors; ``AVA.FRAME_LIST_DIR``: stal finds frames at ``FRAME_DIR/<video>/<video>_%06d.jpg``,
  the layout the frame lists list);
- ``unsupported``: stal has no such behaviour; the reason says what stal does instead.

Defaults that the file leaves out are reported only where stal's own default differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from stal.config.defaults import get_cfg
from stal.config.load import _merge_dict, _read_yaml, validate_cfg
from stal.errors import ConfigError

# PySlowFast's defaults (slowfast/config/defaults.py) of the keys this converter reads.
PYSLOWFAST_DEFAULTS: dict[str, Any] = {
    "RNG_SEED": 1, "OUTPUT_DIR": ".", "NUM_GPUS": 1, "LOG_PERIOD": 10,
    "TRAIN.DATASET": "kinetics", "TRAIN.BATCH_SIZE": 64, "TRAIN.EVAL_PERIOD": 10, "TRAIN.CHECKPOINT_PERIOD": 10,
    "TRAIN.MIXED_PRECISION": False, "TEST.DATASET": "kinetics", "TEST.BATCH_SIZE": 8,
    "DATA.NUM_FRAMES": 8, "DATA.SAMPLING_RATE": 8, "DATA.TRAIN_CROP_SIZE": 224, "DATA.RANDOM_FLIP": True,
    "DATA_LOADER.NUM_WORKERS": 8,
    "MODEL.ARCH": "slowfast", "MODEL.NUM_CLASSES": 400, "MODEL.LOSS_FUNC": "cross_entropy",
    "MODEL.DROPOUT_RATE": 0.5, "DETECTION.ROI_XFORM_RESOLUTION": 7,
    "RESNET.DEPTH": 50, "RESNET.NUM_BLOCK_TEMP_KERNEL": [[3], [4], [6], [3]],
    "RESNET.SPATIAL_STRIDES": [[1], [2], [2], [2]], "RESNET.SPATIAL_DILATIONS": [[1], [1], [1], [1]],
    "SLOWFAST.ALPHA": 8, "SLOWFAST.BETA_INV": 8, "SLOWFAST.FUSION_KERNEL_SZ": 5,
    "SOLVER.BASE_LR": 0.1, "SOLVER.LR_POLICY": "cosine", "SOLVER.MAX_EPOCH": 300, "SOLVER.WARMUP_EPOCHS": 0.0,
    "SOLVER.WARMUP_START_LR": 0.01, "SOLVER.COSINE_END_LR": 0.0, "SOLVER.COSINE_AFTER_WARMUP": False,
    "SOLVER.OPTIMIZING_METHOD": "sgd", "SOLVER.NESTEROV": True,
    "AVA.TRAIN_GT_BOX_LISTS": ["ava_train_v2.2.csv"], "AVA.TEST_PREDICT_BOX_LISTS": ["ava_val_predicted_boxes.csv"],
    "AVA.DETECTION_SCORE_THRESH": 0.9, "MODEL.MODEL_NAME": "SlowFast", "MODEL.HEAD_ACT": "softmax",
    "DETECTION.ENABLE": False, "DETECTION.ALIGNED": True, "DETECTION.SPATIAL_SCALE_FACTOR": 16,
    "RESNET.WIDTH_PER_GROUP": 64, "RESNET.NUM_GROUPS": 1, "RESNET.TRANS_FUNC": "bottleneck_transform",
    "RESNET.STRIDE_1X1": False, "SLOWFAST.FUSION_CONV_CHANNEL_RATIO": 2, "NONLOCAL.LOCATION": [[[]], [[]], [[]], [[]]],
    "BN.USE_PRECISE_STATS": False,
}

# Same meaning, same type: PySlowFast key -> stal key.
_SAME = {k: k for k in (
    "RNG_SEED", "OUTPUT_DIR", "NUM_GPUS", "LOG_PERIOD", "TRAIN.ENABLE", "TRAIN.BATCH_SIZE", "TRAIN.EVAL_PERIOD",
    "TRAIN.CHECKPOINT_PERIOD", "TRAIN.AUTO_RESUME", "TEST.ENABLE", "TEST.BATCH_SIZE", "DATA.NUM_FRAMES",
    "DATA.SAMPLING_RATE", "DATA.MEAN", "DATA.STD", "DATA_LOADER.NUM_WORKERS", "MODEL.NUM_CLASSES",
    "MODEL.DROPOUT_RATE", "SOLVER.BASE_LR", "SOLVER.STEPS", "SOLVER.LRS", "SOLVER.MAX_EPOCH", "SOLVER.MOMENTUM",
    "SOLVER.WEIGHT_DECAY", "SOLVER.WARMUP_EPOCHS", "SOLVER.WARMUP_START_LR", "SOLVER.COSINE_END_LR",
    "SOLVER.COSINE_AFTER_WARMUP", "AVA.FRAME_DIR", "AVA.ANNOTATION_DIR", "AVA.TRAIN_GT_BOX_LISTS",
    "AVA.TEST_PREDICT_BOX_LISTS", "AVA.DETECTION_SCORE_THRESH", "AVA.LABEL_MAP_FILE", "AVA.EXCLUSION_FILE",
    "AVA.GROUNDTRUTH_FILE")}
_SAME.update({"DATA.TRAIN_CROP_SIZE": "DATA.CROP_SIZE", "DETECTION.ROI_XFORM_RESOLUTION": "MODEL.ROI_SIZE",
              "TRAIN.CHECKPOINT_FILE_PATH": "MODEL.PRETRAINED"})

# Keys whose listed value is what stal does anyway (implied); any other value is unsupported.
_OFF = {
    "DETECTION.ENABLE": (True, "stal trains detectors only (AVA-style boxes); no clip classification"),
    "DETECTION.ALIGNED": (True, "stal's RoIAlign is always aligned=True"),
    "AVA.BGR": (False, "stal reads frames as RGB"),
    "AVA.TRAIN_PREDICT_BOX_LISTS": ([], "stal trains on AVA.TRAIN_GT_BOX_LISTS only, not on detector boxes"),
    "AVA.TRAIN_USE_COLOR_AUGMENTATION": (False, "no colour augmentation in stal's AVA loader"),
    "AVA.TEST_FORCE_FLIP": (False, "no flip at test time in stal"),
    "AVA.FULL_TEST_ON_VAL": (False, "stal evaluates the whole test list every time"),
    "DATA.RANDOM_FLIP": (False, "no random flip in stal's AVA loader (PySlowFast's default is True)"),
    "DATA.REVERSE_INPUT_CHANNEL": (False, "stal feeds RGB"),
    "BN.USE_PRECISE_STATS": (False, "no precise-BN pass in stal"),
    "TENSORBOARD.ENABLE": (True, "stal always writes OUTPUT_DIR/tensorboard when tensorboard is installed"),
    "TENSORBOARD.LOG_DIR": ("", "stal's event files go to OUTPUT_DIR/tensorboard"),
    "NUM_SHARDS": (1, "several machines: launch with torchrun --nnodes; stal reads the world size from torchrun"),
    "SHARD_ID": (0, "set by torchrun (--node_rank)"),
    "SOLVER.NESTEROV": (False, "stal's SGD is plain momentum (PySlowFast's default is Nesterov)"),
    "SOLVER.DAMPENING": (0.0, "stal's SGD has no dampening"),
    "SOLVER.ZERO_WD_1D_PARAM": (False, "stal decays every parameter with SOLVER.WEIGHT_DECAY"),
    "SOLVER.LARS_ON": (False, "no LARS in stal"),
    "SOLVER.LAYER_DECAY": (1.0, "no layer-wise learning-rate decay in stal"),
    "SOLVER.BASE_LR_SCALE_NUM_SHARDS": (False, "stal does not scale BASE_LR with the machines"),
    "SOLVER.CLIP_GRAD_VAL": (None, "stal clips the gradient norm only (SOLVER.CLIP_GRAD_L2NORM)"),
    "SOLVER.BETAS": ([0.9, 0.999], "stal's AdamW uses torch's default betas (0.9, 0.999)"),
    "DATA_LOADER.PIN_MEMORY": (True, "stal pins memory whenever NUM_GPUS > 0"),
    "DATA_LOADER.ENABLE_MULTI_THREAD_DECODE": (False, "stal decodes in the loader workers"),
}
# Always unsupported (no equivalent in stal), with the reason.
_UNSUPPORTED = {
    "DATA.TRAIN_JITTER_SCALES": "stal resizes every frame to DATA.CROP_SIZE x DATA.CROP_SIZE: no scale jitter, no crop",
    "BN.WEIGHT_DECAY": "stal decays BatchNorm parameters with SOLVER.WEIGHT_DECAY like the others",
    "RESNET.ZERO_INIT_FINAL_BN": "stal keeps pytorchvideo's initialisation (or MODEL.PRETRAINED's weights)",
    "MODEL.FC_INIT_STD": "stal's action head keeps torch's default initialisation",
    "SOLVER.WARMUP_FACTOR": "not used by PySlowFast's lr_policy either (WARMUP_START_LR is)",
    "TEST.NUM_ENSEMBLE_VIEWS": "stal tests AVA keyframes, one clip each (no multi-view classification)",
    "TEST.NUM_SPATIAL_CROPS": "stal tests AVA keyframes, one clip each (no multi-view classification)",
    "TEST.CHECKPOINT_FILE_PATH": "stal's TEST.CHECKPOINT_FILE_PATH takes a stal checkpoint; a PySlowFast one's "
                                 "head is never loaded (train from it with MODEL.PRETRAINED)",
}
_SECTION_REASONS = {
    "TENSORBOARD": "PySlowFast's visualisations (confusion matrix, histograms, model vis) are not in stal",
    "AUG": "no RandAugment / random erasing in stal's AVA loader", "MIXUP": "no mixup / cutmix of videos here",
    "MULTIGRID": "no multigrid training in stal", "MVIT": "mvit_b_16x4's layout is fixed (MViT-B 16x4)",
    "X3D": "x3d_xs / x3d_s / x3d_m have X3D-XS's layout (depth 2.2, width 2.0) fixed",
    "NONLOCAL": "stal's backbones have no non-local blocks", "DEMO": "PySlowFast's demo: use tools/demo_net.py",
}

# X3D keys and the value stal's x3d_xs / x3d_s / x3d_m have (pytorchvideo create_x3d's defaults).
_X3D_FIXED = {"X3D.WIDTH_FACTOR": 2.0, "X3D.DEPTH_FACTOR": 2.2, "X3D.BOTTLENECK_FACTOR": 2.25, "X3D.DIM_C1": 12,
              "X3D.DIM_C5": 2048}
_LOSSES = {"cross_entropy": "softmax", "bce": "bce", "bce_logit": "bce"}  # bce / bce_logit: sigmoid + BCE
_DATASETS = {"ava": "ava"}


@dataclass
class Conversion:
    """``cfg``: the stal config (nested dict, only the keys that differ from stal's defaults);
    ``lines``: one report line per PySlowFast key; ``unsupported``: the unsupported keys."""

    cfg: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    def set(self, stal_key: str, value: Any) -> None:
        node = self.cfg
        *parents, last = stal_key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    def report(self, key: str, value: Any, status: str, detail: str, default: bool = False) -> None:
        where = " (PySlowFast default)" if default else ""
        self.lines.append(f"{status:<11} {key} {_show(value)}{where}: {detail}")
        if status == "unsupported":
            self.unsupported.append(key)


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# ----------------------------------------------------------------------------- one key

Result = tuple[str, str | None, Any, str]  # (status, stal key or None, stal value, detail)


def _mapped(stal_key: str, value: Any, why: str = "") -> Result:
    return "mapped", stal_key, value, f"-> {stal_key} {_show(value)}" + (f" ({why})" if why else "")


def _special(key: str, value: Any, flat: dict) -> Result | None:
    """Keys whose value changes type or vocabulary on the way to stal."""
    if key == "TRAIN.MIXED_PRECISION":
        if isinstance(value, bool):  # PySlowFast: torch.cuda.amp autocast (float16) + GradScaler
            return _mapped(key, "fp16" if value else "fp32", "PySlowFast's mixed precision is float16 autocast")
    elif key == "MODEL.LOSS_FUNC":
        if value in _LOSSES:
            return _mapped(key, _LOSSES[value])
        return "unsupported", None, None, f"stal's losses are {sorted(set(_LOSSES.values()))}"
    elif key in ("TRAIN.DATASET", "TEST.DATASET"):
        if value in _DATASETS:
            return _mapped(key, _DATASETS[value])
        return "unsupported", None, None, "stal has no such dataset (ava, or its own: demo, synthesis, ucf24, jhmdb)"
    elif key == "DATA.TEST_CROP_SIZE":
        train = flat.get("DATA.TRAIN_CROP_SIZE", PYSLOWFAST_DEFAULTS["DATA.TRAIN_CROP_SIZE"])
        if value == train:
            return "implied", None, None, "the same as DATA.TRAIN_CROP_SIZE (stal's one DATA.CROP_SIZE)"
        return "unsupported", None, None, f"stal tests at DATA.CROP_SIZE too (TRAIN_CROP_SIZE {train})"
    elif key in ("TRAIN.CHECKPOINT_TYPE", "TEST.CHECKPOINT_TYPE"):
        path = str(flat.get(key.replace("TYPE", "FILE_PATH"), ""))
        if value == "pytorch" or (value == "caffe2" and (not path or path.lower().endswith(".pkl"))):
            return "implied", None, None, "stal reads a .pkl as Caffe2 blobs, other files as torch checkpoints"
        return "unsupported", None, None, "stal picks the Caffe2 reader by the .pkl extension of the file"
    elif key == "SOLVER.OPTIMIZING_METHOD":
        if value in ("sgd", "adamw"):
            return _mapped(key, value)
        return "unsupported", None, None, "stal's optimizers are sgd and adamw"
    elif key == "SOLVER.LR_POLICY":
        if value in ("cosine", "steps_with_relative_lrs"):
            return _mapped(key, value)
        return "unsupported", None, None, "stal's policies are cosine, steps_with_relative_lrs and constant"
    elif key == "SOLVER.CLIP_GRAD_L2NORM":
        return _mapped(key, 0.0 if value is None else float(value), "None: off")
    return None


def _convert_key(key: str, value: Any, flat: dict) -> Result:
    special = _special(key, value, flat)
    if special:
        return special
    if key in _SAME and value is not None:
        return _mapped(_SAME[key], value)
    if key in _OFF:
        off, reason = _OFF[key]
        if value == off or (isinstance(off, list) and list(value or []) == off):
            return "implied", None, None, "stal behaves so"
        return "unsupported", None, None, reason
    if key in _UNSUPPORTED:
        return "unsupported", None, None, _UNSUPPORTED[key]
    if key in ("AVA.FRAME_LIST_DIR", "AVA.TRAIN_LISTS", "AVA.TEST_LISTS"):
        return "implied", None, None, ("not needed: stal finds frames at AVA.FRAME_DIR/<video>/<video>_%06d.jpg, "
                                       "the layout PySlowFast's frame lists list")
    if key in _X3D_FIXED and value == _X3D_FIXED[key]:
        return "implied", None, None, "as stal's X3D-XS / S / M network (pytorchvideo create_x3d)"
    if key.startswith("NONLOCAL."):
        locations = flat.get("NONLOCAL.LOCATION", PYSLOWFAST_DEFAULTS["NONLOCAL.LOCATION"])
        if not any(loc for stage in locations for loc in stage):
            return "implied", None, None, "no non-local blocks in the file, as in stal's backbones"
        return "unsupported", None, None, _SECTION_REASONS["NONLOCAL"]
    if key == "DATA.INPUT_CHANNEL_NUM":
        if value and all(c == 3 for c in value):
            return "implied", None, None, "stal's models take one RGB clip (SlowFast builds both pathways from it)"
        return "unsupported", None, None, "stal's models take RGB clips (3 channels)"
    if key == "BN.NUM_BATCHES_PRECISE":
        on = flat.get("BN.USE_PRECISE_STATS", False)
        return ("unsupported", None, None, "no precise-BN pass in stal") if on else \
            ("implied", None, None, "only used with BN.USE_PRECISE_STATS, which is off")
    if key in ("AVA.TRAIN_PCA_JITTER_ONLY", "AVA.IMG_PROC_BACKEND"):
        return "implied", None, None, "only matters for colour augmentation / decoding, which stal does its own way"
    section = key.split(".")[0]
    return "unsupported", None, None, _SECTION_REASONS.get(section, "no equivalent in stal")


# ---------------------------------------------------------------------------- the model

# stal's 3D ResNets in PySlowFast's terms: (ARCH, RESNET.DEPTH, temporal res4 blocks) ->
# (registry name, SLOWFAST.FUSION_KERNEL_SZ); the layouts of stal.models.build.
_RESNETS = {("slow", 50, 6): ("slow_r50", None), ("slow", 101, 23): ("slow_r101", None),
            ("slowfast", 50, 6): ("slowfast_r50", 7), ("slowfast", 101, 23): ("slowfast_r101", 5),
            ("slowfast", 101, 6): ("slowfast_r101_16x8", 5)}
_FULL_STAGES = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
_X3D_BY_FRAMES = {4: "x3d_xs", 13: "x3d_s", 16: "x3d_m"}  # X3D-XS / S / M: one network, three inputs
_MODEL_NAMES = {"slowfast": ("SlowFast", "PTVSlowFast"), "slow": ("ResNet", "PTVResNet"),
                "x3d": ("X3D", "PTVX3D"), "mvit": ("MViT", "PTVMViT")}
# ResNet layout keys and the value every stal ResNet has (per stage, pathways equal).
_RESNET_FIXED = {"RESNET.WIDTH_PER_GROUP": 64, "RESNET.NUM_GROUPS": 1, "RESNET.TRANS_FUNC": "bottleneck_transform",
                 "RESNET.STRIDE_1X1": False, "SLOWFAST.BETA_INV": 8, "SLOWFAST.FUSION_CONV_CHANNEL_RATIO": 2,
                 "SLOWFAST.ALPHA": 4, "RESNET.SPATIAL_STRIDES": [1, 2, 2, 1], "RESNET.SPATIAL_DILATIONS": [1, 1, 1, 2],
                 "DETECTION.SPATIAL_SCALE_FACTOR": 16}
_MODEL_KEYS = ("MODEL.ARCH", "MODEL.MODEL_NAME", "RESNET.DEPTH", "RESNET.NUM_BLOCK_TEMP_KERNEL",
               "SLOWFAST.FUSION_KERNEL_SZ", "MODEL.HEAD_ACT", *_RESNET_FIXED)


def _per_stage(value: Any) -> Any:
    """PySlowFast's per-stage, per-pathway lists ([[3, 3], [4, 4], ...]) -> one value per stage
    when every pathway agrees; other values unchanged."""
    if isinstance(value, list) and value and all(isinstance(v, list) and v and len(set(map(str, v))) == 1
                                                 for v in value):
        return [v[0] for v in value]
    return value


def _resnet_name(get: Callable[[str], Any], arch: str) -> tuple[str | None, int | None, str]:
    """(stal model, its fusion kernel, why not) for a PySlowFast Slow / SlowFast layout."""
    depth, temporal = get("RESNET.DEPTH"), _per_stage(get("RESNET.NUM_BLOCK_TEMP_KERNEL"))
    full = _FULL_STAGES.get(depth)
    if full is None:
        return None, None, f"stal's 3D ResNets have depth 50 or 101, not {depth}"
    if not isinstance(temporal, list) or len(temporal) != 4 or [temporal[i] for i in (0, 1, 3)] != \
            [full[i] for i in (0, 1, 3)]:
        return None, None, f"RESNET.NUM_BLOCK_TEMP_KERNEL {temporal}: stal's ResNets are temporal in every res2, " \
                           f"res3 and res5 block"
    name, fusion = _RESNETS.get((arch, depth, temporal[2]), (None, None))
    why = "" if name else f"no stal {arch} R{depth} with {temporal[2]} temporal res4 blocks"
    return name, fusion, why


def _model_name(get: Callable[[str], Any]) -> tuple[str | None, int | None, str]:
    arch = get("MODEL.ARCH")
    if arch in ("slow", "slowfast"):
        return _resnet_name(get, arch)
    if arch == "x3d":
        frames = get("DATA.NUM_FRAMES")
        return _X3D_BY_FRAMES.get(frames, "x3d_xs"), None, ""
    if arch == "mvit":
        return "mvit_b_16x4", None, ""
    return None, None, f"no stal model for ARCH {arch} (choose one of stal.models.MODEL_REGISTRY)"


def _convert_model(flat: dict, conv: Conversion) -> None:
    """MODEL.ARCH + MODEL_NAME + RESNET.* + SLOWFAST.* -> one stal registry name; each key reported."""
    def get(key: str) -> Any:
        return flat.get(key, PYSLOWFAST_DEFAULTS.get(key))

    name, fusion, why = _model_name(get)
    arch = get("MODEL.ARCH")
    resnet, multipathway = arch in ("slow", "slowfast"), arch == "slowfast"
    loss = _LOSSES.get(get("MODEL.LOSS_FUNC"))
    expected = {**_RESNET_FIXED, "SLOWFAST.FUSION_KERNEL_SZ": fusion}
    for key in _MODEL_KEYS:
        default, value = key not in flat, get(key)
        if key == "MODEL.ARCH":
            result = (_mapped("MODEL.ARCH", name, "with RESNET.DEPTH, NUM_BLOCK_TEMP_KERNEL, FUSION_KERNEL_SZ")
                      if name else ("unsupported", None, None, why))
        elif key in ("RESNET.DEPTH", "RESNET.NUM_BLOCK_TEMP_KERNEL"):
            result = ("implied", None, None, f"part of MODEL.ARCH {name}") if name or not resnet else \
                ("unsupported", None, None, why)
        elif key == "MODEL.MODEL_NAME":
            ok = value in _MODEL_NAMES.get(arch, ())
            result = ("implied", None, None, "with MODEL.ARCH") if ok else \
                ("unsupported", None, None, f"not a {arch} model name ({', '.join(_MODEL_NAMES.get(arch, ()))})")
        elif key == "MODEL.HEAD_ACT":
            ok = {"bce": "sigmoid", "softmax": "softmax"}.get(loss) == value
            result = ("implied", None, None, "stal applies the activation of MODEL.LOSS_FUNC") if ok else \
                ("unsupported", None, None, "stal's activation follows MODEL.LOSS_FUNC (bce: sigmoid, softmax)")
        elif key.startswith("SLOWFAST.") and not multipathway or not resnet:
            result = ("implied", None, None, f"not used by ARCH {arch}")
        else:
            want = expected[key]
            ok = _per_stage(value) == want
            reason = (f"stal's {name or arch} has {want}" +
                      ("; the weights fit either way (res5 stride 1 with dilation 2 is PySlowFast's AVA layout)"
                       if key.startswith("RESNET.SPATIAL") else ""))
            result = ("implied", None, None, f"as stal's {name}") if ok else ("unsupported", None, None, reason)
        _apply(conv, key, value, result, default=default)


def _apply(conv: Conversion, key: str, value: Any, result: Result, *, default: bool = False) -> None:
    """Record ``result``; a PySlowFast default (absent from the file) only when it matters."""
    status, stal_key, stal_value, detail = result
    if default:
        if status == "implied" or (status == "mapped" and _stal_default(stal_key) == stal_value):
            return
    if status == "mapped":
        conv.set(stal_key, stal_value)
    conv.report(key, value, status, detail, default=default)


def _stal_default(stal_key: str) -> Any:
    node = get_cfg()
    for part in stal_key.split("."):
        node = node[part]
    return node


# ------------------------------------------------------------------------- the whole file


def convert_pyslowfast(data: dict, *, source: str) -> Conversion:
    """Convert a PySlowFast config (the YAML's mapping) into a stal one; ``source`` names it in errors.

    Raises :class:`ConfigError` when the converted values do not make a valid stal config.
    """
    flat = _flatten(data)
    conv = Conversion()
    _convert_model(flat, conv)
    handled = set(_MODEL_KEYS)
    for key, value in flat.items():
        if key not in handled:
            _apply(conv, key, value, _convert_key(key, value, flat))
    for key, value in PYSLOWFAST_DEFAULTS.items():
        if key not in flat and key not in handled:
            _apply(conv, key, value, _convert_key(key, value, flat), default=True)
    cfg = get_cfg()
    try:
        _merge_dict(cfg, conv.cfg, f"{source} (converted)")
        validate_cfg(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: the converted config is not valid: {exc}") from None
    # The values as stal's types (YAML 1.1 reads "1e-7" as a string; stal's loader makes it a float).
    conv.cfg = {k: ({kk: cfg[k][kk] for kk in v} if isinstance(v, dict) else cfg[k]) for k, v in conv.cfg.items()}
    return conv


def read_pyslowfast_yaml(path: str) -> Conversion:
    """Read a PySlowFast YAML (``_BASE_`` resolved) and convert it (:func:`convert_pyslowfast`)."""
    return convert_pyslowfast(_read_yaml(path), source=path)


def to_yaml(conv: Conversion, *, source: str) -> str:
    """The stal YAML: a header naming the source and every unsupported key, then the keys."""
    head = [f"# Converted from the PySlowFast config {source} by tools/convert_pyslowfast_cfg.py.",
            f"# {len(conv.unsupported)} PySlowFast keys have no stal equivalent (see the report):"]
    head += [f"#   {line}" for line in conv.lines if line.startswith("unsupported")]
    body = []
    for key, value in conv.cfg.items():  # stal's sections are one level deep
        if isinstance(value, dict):
            body.append(f"{key}:")
            body += [f"  {k}: {_show(v)}" for k, v in value.items()]
        else:
            body.append(f"{key}: {_show(value)}")
    return "\n".join(head + body) + "\n"
