"""The only place (besides tools/) that reads the config: maps keys onto explicit arguments."""

from __future__ import annotations

import os

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader

from stal.errors import ConfigError, DataError
from stal.guidance.penalty import GuidanceSpec
from stal.io.images import read_image
from stal.models import build_detector, load_pretrained
from stal.objective import Objective


def build_model(cfg: CfgNode) -> torch.nn.Module:
    """The detector named by MODEL.ARCH; the differentiable RoIAlign only when exact guidance needs it."""
    kwargs = {"roi_output_size": (cfg.MODEL.ROI_SIZE, cfg.MODEL.ROI_SIZE),
              "dropout": cfg.MODEL.DROPOUT_RATE,
              "double_backward": bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "exact")}
    if cfg.MODEL.ARCH == "small3d":  # the *_tiny test variants keep their own sizes
        kwargs.update(width=cfg.MODEL.WIDTH, spatial_stride=cfg.MODEL.SPATIAL_STRIDE)
    model = build_detector(cfg.MODEL.ARCH, num_classes=cfg.MODEL.NUM_CLASSES,
                           mil_pooling=cfg.MODEL.MIL_POOLING or None, **kwargs)
    if cfg.MODEL.PRETRAINED:  # logs the missing / unexpected key report
        load_pretrained(model, cfg.MODEL.PRETRAINED)
    return model


def build_objective(cfg: CfgNode) -> Objective:
    spec = None
    if cfg.GUIDANCE.ENABLE:
        g = cfg.GUIDANCE
        spec = GuidanceSpec(score=g.SCORE, norm=g.NORM, p=g.P, region=g.REGION, mode=g.MODE, penalty=g.PENALTY,
                            tolerance=g.TOLERANCE, tolerance_frames=g.TOLERANCE_FRAMES, lowpass=g.LOWPASS,
                            temporal_decay=g.TEMPORAL_DECAY, absent_frames_off_target=g.ABSENT_FRAMES_OFF_TARGET,
                            fd_step=g.FD_STEP, fd_freeze_kinks=g.FD_FREEZE_KINKS, max_ratio=g.MAX_RATIO)
    return Objective(loss_func=cfg.MODEL.LOSS_FUNC, guidance=spec)


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.SOLVER.OPTIMIZING_METHOD == "sgd":
        return torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                               weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    return torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def demo_data(cfg: CfgNode):
    """Generate (first use) or find the demo dataset of DEMO.SEED; returns its DemoPaths."""
    from stal.demo.video import ensure_demo_data

    return ensure_demo_data(
        root=cfg.DEMO.ROOT, seed=cfg.DEMO.SEED, size=cfg.DATA.CROP_SIZE,
        tubes_per_class=cfg.DEMO.TUBES_PER_CLASS, backgrounds_per_scene=cfg.DEMO.BACKGROUNDS_PER_SCENE,
        test_videos=cfg.DEMO.TEST_VIDEOS, test_keyframes=cfg.DEMO.TEST_KEYFRAMES, fps=cfg.DEMO.FPS,
        max_actors=cfg.SYNTHESIS.ACTORS_MAX, pose_randomness=cfg.DEMO.POSE_RANDOMNESS)


def build_synthesis_dataset(cfg: CfgNode, *, seed: int, length: int, counterfactual: bool = False):
    """Demo clips synthesized from the bank with the training synthesis policy; with
    ``counterfactual`` each item also carries the background-swapped rendering ``clip_cf``."""
    from stal.data.synthesized import DemoSynthesisDataset

    return DemoSynthesisDataset(
        bank_path=demo_data(cfg).bank, length=length, seed=seed, num_frames=cfg.DATA.NUM_FRAMES,
        actors_min=cfg.SYNTHESIS.ACTORS_MIN, actors_max=cfg.SYNTHESIS.ACTORS_MAX,
        scene_bias=cfg.SYNTHESIS.SCENE_BIAS, mean=cfg.DATA.MEAN, std=cfg.DATA.STD,
        counterfactual=counterfactual)


def build_synthesizer(cfg: CfgNode):
    """The SYNTHESIS.* synthesizer (tube bank over background bank, optionally mixed) and its
    provenance-aligned transforms; empty bank paths use the demo's procedural actors/scenes."""
    from stal.demo import banks
    from stal.synthesis import backgrounds as bgs, mixing, paste, placement, transforms, tube_bank

    s, T, size = cfg.SYNTHESIS, cfg.DATA.NUM_FRAMES, cfg.DATA.CROP_SIZE
    tubes = (tube_bank.TubeBank(s.TUBE_BANK) if s.TUBE_BANK else
             banks.demo_tubes(seed=cfg.DEMO.SEED, per_class=4, num_frames=max(T, 16), pose_randomness=cfg.DEMO.POSE_RANDOMNESS))
    backgrounds = (bgs.BackgroundBank(s.BACKGROUND_BANK, min_scale=s.BACKGROUND_MIN_SCALE, motion=bgs.CameraMotion(
        prob=s.CAMERA_MOTION_PROB, pan=s.CAMERA_PAN, zoom=s.CAMERA_ZOOM)) if s.BACKGROUND_BANK else
        banks.demo_backgrounds(seed=cfg.DEMO.SEED, per_scene=2, num_frames=T, size=size))
    spec = placement.PlacementSpec(
        actors_min=s.ACTORS_MIN, actors_max=s.ACTORS_MAX, scale_min=s.SCALE_MIN, scale_max=s.SCALE_MAX,
        trajectory=s.TRAJECTORY, max_drift=s.MAX_DRIFT, partial_prob=s.PARTIAL_PROB, keep_inside=s.KEEP_INSIDE,
        flip_prob=s.FLIP_PROB, occlusion=s.OCCLUSION, strict_length=s.STRICT_LENGTH)
    synth = paste.PasteSynthesizer(
        tubes=tubes, backgrounds=backgrounds, placement=spec, num_frames=T, height=size, width=size,
        num_classes=cfg.MODEL.NUM_CLASSES, multi_label=s.MULTI_LABEL, edge=s.EDGE, feather_radius=s.FEATHER_RADIUS,
        colour_match=s.COLOUR_MATCH, interpolation=s.INTERPOLATION, clip_dtype="uint8")
    if s.MIXER != "none":
        dur = (1.0, 1.0) if s.MIXER == "cutmix" else (s.MIX_DURATION_MIN, s.MIX_DURATION_MAX)
        # Weak supervision (MIL) labels clips from their actors, so every actor stays a source.
        mixer = mixing.CuboidMix(area_min=s.MIX_AREA_MIN, area_max=s.MIX_AREA_MAX, duration_min=dur[0],
                                 duration_max=dur[1], num_classes=cfg.MODEL.NUM_CLASSES,
                                 keep_sources=bool(cfg.MODEL.MIL_POOLING))
        synth = mixing.MixingSynthesizer(source=synth, mixer=mixer)
    steps = []
    if s.CROP_SCALE_MIN < 1.0:
        steps.append(lambda x, rng: transforms.random_resized_crop(x, rng, size=(size, size), scale=(s.CROP_SCALE_MIN, 1.0)))
    if s.HFLIP_PROB > 0:
        steps.append(lambda x, rng: transforms.hflip(x, rng, prob=s.HFLIP_PROB))
    return synth, steps


def _ava_path(cfg: CfgNode, name: str) -> str:
    path = os.path.join(cfg.AVA.ANNOTATION_DIR, name)
    if not os.path.isfile(path):
        raise DataError(f"AVA file not found: {path}. Put the AVA v2.2 annotation files in AVA.ANNOTATION_DIR "
                        f"(docs/datasets.md), or make an AVA-format dataset from your own videos with "
                        f"python data_prep/videos_to_ava.py --videos DIR --annotations BOXES.csv --out ROOT")
    return path


# TRAIN/TEST.DATASET names read from an ACT index (stal.data.act): config section, preparing tool.
_ACT_DATASETS = {"ucf24": ("UCF24", "data_prep/ucf24_from_act.py"), "jhmdb": ("JHMDB", "data_prep/jhmdb_from_act.py")}


def _act_paths(cfg: CfgNode, name: str) -> dict[str, str]:
    """Index files of the ACT-derived dataset ``name``; a missing one names the tool that writes it."""
    from stal.data.act import index_paths

    section, tool = _ACT_DATASETS[name]
    root, split = cfg[section].ROOT, cfg[section].SPLIT
    paths = index_paths(root, split)
    for key in ("frames", "train", "test", "labelmap"):
        if not os.path.exists(paths[key]):
            raise DataError(f"{name} data not found: {paths[key]}. Prepare it with python {tool} --root {root} "
                            f"--split {split} (docs/datasets.md)")
    return paths


def _act_dataset(cfg: CfgNode, name: str, *, train: bool):
    """Per-frame dataset of UCF101-24 / JHMDB: training ground truth, or the test boxes unlabelled."""
    from stal.data.act import act_keyframe_dataset
    from stal.formats.ava import read_ava_csv

    paths = _act_paths(cfg, name)
    return act_keyframe_dataset(
        frame_dir=paths["frames"], table=read_ava_csv(paths["train" if train else "boxes"]),
        num_frames=cfg.DATA.NUM_FRAMES, sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE,
        mean=cfg.DATA.MEAN, std=cfg.DATA.STD, num_classes=cfg.MODEL.NUM_CLASSES if train else None)


def _act_test_split(cfg: CfgNode, name: str) -> dict:
    from stal.formats.ava import read_ava_csv, read_labelmap

    paths = _act_paths(cfg, name)
    return {"dataset": _act_dataset(cfg, name, train=False), "gt": read_ava_csv(paths["test"]),
            "labelmap": read_labelmap(paths["labelmap"]), "excluded": set()}


def _ava_dataset(cfg: CfgNode, csv_names: list[str], *, with_labels: bool, score_thresh: float):
    import numpy as np
    from stal.data.ava import AvaKeyframeDataset
    from stal.formats.ava import AvaTable, read_box_list, read_excluded

    if with_labels and cfg.TRAIN.DATASET in _ACT_DATASETS:
        return _act_dataset(cfg, cfg.TRAIN.DATASET, train=True)
    # read_box_list: CSVs, or mmaction2 proposal pickles (.pkl) for the test person boxes.
    tables = [read_box_list(_ava_path(cfg, n)) for n in csv_names]
    table = AvaTable(**{f: np.concatenate([getattr(t, f) for t in tables])
                        for f in ("video", "timestamp", "boxes", "action", "extra")})
    if not with_labels:
        keep = table.extra >= score_thresh
        table = AvaTable(**{f: getattr(table, f)[keep] for f in ("video", "timestamp", "boxes", "action", "extra")})
    if not cfg.AVA.VIDEO_DIR and not os.path.isdir(cfg.AVA.FRAME_DIR):
        raise DataError(f"AVA frame directory not found: {cfg.AVA.FRAME_DIR}. Extract frames with "
                        f"python data_prep/extract_frames.py --videos VIDEO_DIR --out {cfg.AVA.FRAME_DIR}")
    excl = os.path.join(cfg.AVA.ANNOTATION_DIR, cfg.AVA.EXCLUSION_FILE)
    return AvaKeyframeDataset(
        frame_dir=cfg.AVA.FRAME_DIR, table=table, fps=cfg.AVA.FPS, num_frames=cfg.DATA.NUM_FRAMES,
        sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE, mean=cfg.DATA.MEAN,
        std=cfg.DATA.STD, num_classes=cfg.MODEL.NUM_CLASSES if with_labels else None,
        excluded=read_excluded(excl) if os.path.isfile(excl) and not with_labels else None,
        video_dir=cfg.AVA.VIDEO_DIR or None)


# TRAIN/TEST.DATASET values of the image tasks (one-frame clips, CutMix, CAM evaluation).
IMAGE_DATASETS = ("image_demo", "cub", "imagefolder")


def image_demo_path(cfg: CfgNode) -> str:
    """The image demo file of DEMO.SEED (generated on first use, see stal.demo.images)."""
    from stal.demo.images import ensure_image_demo

    i = cfg.IMAGE
    return ensure_image_demo(root=cfg.DEMO.ROOT, seed=cfg.DEMO.SEED, size=cfg.DATA.CROP_SIZE,
                             num_classes=cfg.MODEL.NUM_CLASSES, scenes_per_class=i.DEMO_SCENES_PER_CLASS,
                             val_images=i.DEMO_VAL_IMAGES, test_images=i.DEMO_TEST_IMAGES)


def build_image_train_dataset(cfg: CfgNode):
    """CutMix training items over the TRAIN.DATASET images (layout of stal.data.images)."""
    from stal.data import images

    name, size = cfg.TRAIN.DATASET, cfg.DATA.CROP_SIZE
    if name == "image_demo":
        from stal.demo.images import load_image_demo

        source = images.DemoImageSource(scenes=load_image_demo(image_demo_path(cfg))["train_scenes"],
                                        scene_bias=cfg.SYNTHESIS.SCENE_BIAS)
    elif name == "cub":
        from stal.data.cub import read_cub

        classes, items = read_cub(cfg.IMAGE.ROOT)
        train = [im for im in items if im.is_train]
        source = images.FileImageSource(paths=[os.path.join(cfg.IMAGE.ROOT, "images", im.path) for im in train],
                                        labels=[im.label for im in train], num_classes=len(classes), size=size,
                                        hflip_prob=cfg.IMAGE.HFLIP_PROB)
    else:
        classes, paths, labels = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "train"))
        source = images.FileImageSource(paths=paths, labels=labels, num_classes=len(classes), size=size,
                                        hflip_prob=cfg.IMAGE.HFLIP_PROB)
    if source.num_classes != cfg.MODEL.NUM_CLASSES:
        raise DataError(f"{name} has {source.num_classes} classes but MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES}")
    return images.CutMixImageDataset(
        source=source, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH, seed=cfg.RNG_SEED, mix_prob=cfg.IMAGE.MIX_PROB,
        area_min=cfg.SYNTHESIS.MIX_AREA_MIN, area_max=cfg.SYNTHESIS.MIX_AREA_MAX, provenance=cfg.IMAGE.PROVENANCE,
        counterfactual=bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "counterfactual"),
        mean=cfg.DATA.MEAN, std=cfg.DATA.STD)


def build_image_eval_splits(cfg: CfgNode) -> dict:
    """{metric prefix: WsolEvalDataset}: the image demo's "val_" and "" (test) splits, CUB's test
    images, or an image folder's val/ (classification only: no boxes)."""
    import numpy as np

    from stal.data import images
    from stal.engine.evaluate_wsol import gt_boxes_inclusive

    name, size, mean, std = cfg.TEST.DATASET, cfg.DATA.CROP_SIZE, cfg.DATA.MEAN, cfg.DATA.STD
    if name == "image_demo":
        path = image_demo_path(cfg)
        return {"val_": images.demo_eval_dataset(path, split="val", mean=mean, std=std),
                "": images.demo_eval_dataset(path, split="test", mean=mean, std=std)}
    if name == "cub":
        from stal.data.cub import CubDataset

        cub = CubDataset(root=cfg.IMAGE.ROOT, train=False, crop_size=size, mean=mean, std=std)
        root = os.path.join(cfg.IMAGE.ROOT, "images")
        return {"": images.WsolEvalDataset(
            images=lambda i: read_image(os.path.join(root, cub.images[i].path), size=size),
            labels=[im.label for im in cub.images], mean=mean, std=std,
            boxes=[gt_boxes_inclusive(cub[i]["boxes"].numpy()) for i in range(len(cub))])}
    classes, _, _ = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "train"))
    _, paths, labels = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "val"), classes=classes)
    return {"": images.WsolEvalDataset(images=lambda i: read_image(paths[i], size=size), labels=labels,
                                       boxes=[np.zeros((0, 4), np.int64)] * len(paths), mean=mean, std=std)}


def build_weak_train_dataset(cfg: CfgNode):
    """Clip-level labels for a MIL detector (MODEL.MIL_POOLING): synthesized clips in the weak
    layout of :mod:`stal.data.weak` (one label row per clip; the actors' boxes are proposals)."""
    from stal.data.weak import WeakSynthesisDataset

    if cfg.TRAIN.DATASET != "synthesis":
        raise ConfigError(f"MODEL.MIL_POOLING {cfg.MODEL.MIL_POOLING} trains on clip-level labels, which "
                          f"TRAIN.DATASET synthesis provides; TRAIN.DATASET {cfg.TRAIN.DATASET} labels boxes")
    if cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "counterfactual":
        raise ConfigError("GUIDANCE.MODE counterfactual is not implemented for MODEL.MIL_POOLING; use exact or fd")
    if cfg.TEST.ENABLE and cfg.TEST.DATASET in _ACT_DATASETS:
        _act_paths(cfg, cfg.TEST.DATASET)  # a missing test index fails now, not after training
    synth, steps = build_synthesizer(cfg)
    return WeakSynthesisDataset(synthesizer=synth, transforms=steps, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                                seed=cfg.RNG_SEED, num_classes=cfg.MODEL.NUM_CLASSES, mean=cfg.DATA.MEAN,
                                std=cfg.DATA.STD)


def build_train_loader(cfg: CfgNode, *, ctx=None) -> DataLoader:
    """This process's training micro-batches (layout of :mod:`stal.data.batch`).

    The loader's ``batch_sampler`` is a :class:`stal.engine.distributed.GlobalBatchSampler`
    (call its ``set_epoch``); ``ctx`` is the process's DistContext (default: one process).
    """
    from stal.data.batch import collate_train
    from stal.engine.distributed import DistContext, GlobalBatchSampler

    if cfg.MODEL.MIL_POOLING:
        dataset = build_weak_train_dataset(cfg)
    elif cfg.TRAIN.DATASET in IMAGE_DATASETS:
        dataset = build_image_train_dataset(cfg)
    elif cfg.TRAIN.DATASET == "demo":
        counterfactual = bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "counterfactual")
        dataset = build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                                          counterfactual=counterfactual)
    elif cfg.TRAIN.DATASET == "synthesis":
        from stal.data.synthesized import SynthesisDataset

        synth, steps = build_synthesizer(cfg)
        dataset = SynthesisDataset(synthesizer=synth, transforms=steps, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                                   seed=cfg.RNG_SEED, mean=cfg.DATA.MEAN, std=cfg.DATA.STD,
                                   counterfactual=bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "counterfactual"))
    else:
        dataset = _ava_dataset(cfg, list(cfg.AVA.TRAIN_GT_BOX_LISTS), with_labels=True, score_thresh=0.0)
    sampler = GlobalBatchSampler(length=len(dataset), global_batch=cfg.TRAIN.BATCH_SIZE,
                                 accum_steps=cfg.TRAIN.GRAD_ACCUM_STEPS, seed=cfg.RNG_SEED,
                                 ctx=ctx or DistContext())
    # Own generator: worker seeds never draw from (and so never shift) the global torch RNG.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATA_LOADER.NUM_WORKERS,
                      collate_fn=collate_train, generator=torch.Generator().manual_seed(cfg.RNG_SEED),
                      pin_memory=cfg.NUM_GPUS > 0)


def build_lr_schedule(cfg: CfgNode, *, iters_per_epoch: int):
    """iteration -> learning rate (SOLVER.*, see :func:`stal.engine.trainer.lr_at`)."""
    from functools import partial

    from stal.engine.trainer import lr_at

    s = cfg.SOLVER
    return partial(lr_at, iters_per_epoch=iters_per_epoch, max_epoch=s.MAX_EPOCH, policy=s.LR_POLICY,
                   base_lr=s.BASE_LR, warmup_epochs=s.WARMUP_EPOCHS, warmup_start_lr=s.WARMUP_START_LR,
                   cosine_end_lr=s.COSINE_END_LR, steps=tuple(s.STEPS), lrs=tuple(s.LRS))


def build_guidance_schedule(cfg: CfgNode, *, iters_per_epoch: int):
    """iteration -> guidance weight: GUIDANCE.LAMBDA ramped linearly over GUIDANCE.WARMUP_EPOCHS."""
    lam, warmup = cfg.GUIDANCE.LAMBDA, round(cfg.GUIDANCE.WARMUP_EPOCHS * iters_per_epoch)
    return lambda it: lam * min(1.0, (it + 1) / warmup) if warmup else lam


def build_precision(cfg: CfgNode, *, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """(autocast dtype or None, gradient scaler enabled only for fp16) from TRAIN.MIXED_PRECISION."""
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.TRAIN.MIXED_PRECISION]
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)


def build_test_split(cfg: CfgNode) -> dict:
    """The evaluated split: keyframe dataset over person boxes, ground truth, label map, exclusions."""
    from stal.data.ava import AvaKeyframeDataset
    from stal.formats.ava import read_ava_csv, read_excluded, read_labelmap

    if cfg.TEST.DATASET == "demo":
        paths = demo_data(cfg)
        boxes = read_ava_csv(paths.person_boxes_csv)
        dataset = AvaKeyframeDataset(
            frame_dir=paths.frames, table=boxes, fps=cfg.DEMO.FPS, num_frames=cfg.DATA.NUM_FRAMES,
            sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE,
            mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
        return {"dataset": dataset, "gt": read_ava_csv(paths.gt_csv),
                "labelmap": read_labelmap(paths.labelmap), "excluded": set()}
    if cfg.TEST.DATASET in _ACT_DATASETS:
        return _act_test_split(cfg, cfg.TEST.DATASET)
    dataset = _ava_dataset(cfg, list(cfg.AVA.TEST_PREDICT_BOX_LISTS), with_labels=False,
                           score_thresh=cfg.AVA.DETECTION_SCORE_THRESH)
    excl = os.path.join(cfg.AVA.ANNOTATION_DIR, cfg.AVA.EXCLUSION_FILE)
    return {"dataset": dataset, "gt": read_ava_csv(_ava_path(cfg, cfg.AVA.GROUNDTRUTH_FILE)),
            "labelmap": read_labelmap(_ava_path(cfg, cfg.AVA.LABEL_MAP_FILE)),
            "excluded": read_excluded(excl) if os.path.isfile(excl) else set()}
