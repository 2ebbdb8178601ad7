"""Dataset builders: the config's TRAIN/TEST.DATASET mapped onto the dataset classes of this package.

Like every ``build_*`` module this reads the config and passes explicit keyword arguments on.
A dataset kind is one builder and one line in :data:`TRAIN_DATASETS` / :data:`TEST_DATASETS`
(config validation takes its allowed values from those dicts). Train builders return a
``torch.utils.data.Dataset`` of training items (layout of :mod:`stal.data.batch`); test builders
return the evaluated split ``{"dataset", "gt", "labelmap", "excluded"}`` (frame-mAP) or, for
the image tasks, ``{metric prefix: WsolEvalDataset}``.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable

import numpy as np
from fvcore.common.config import CfgNode

from stal.data import images
from stal.data.act import act_keyframe_dataset, index_paths
from stal.data.ava import AvaKeyframeDataset
from stal.data.cub import CubDataset, read_cub
from stal.data.synthesized import SynthesisDataset
from stal.data.weak import RegionWeakDataset, WeakSynthesisDataset
from stal.demo import banks
from stal.demo.images import ensure_image_demo, load_image_demo
from stal.demo.video import DemoPaths, ensure_demo_data
from stal.errors import ConfigError, DataError
from stal.formats.ava import AvaTable, read_ava_csv, read_box_list, read_excluded, read_labelmap
from stal.io.images import read_image
from stal.synthesis import backgrounds as bgs, mixing, paste, placement, transforms, tube_bank

_TABLE_FIELDS = ("video", "timestamp", "boxes", "action", "extra")


def counterfactual_enabled(cfg: CfgNode) -> bool:
    """Whether training items must carry the background-swapped rendering ``clip_cf``."""
    return bool(cfg.GUIDANCE.ENABLE and cfg.GUIDANCE.MODE == "counterfactual")


# --- the embedded demos -------------------------------------------------------------------

def demo_data(cfg: CfgNode) -> DemoPaths:
    """Generate (first use) or find the demo evaluation splits of DEMO.SEED."""
    return ensure_demo_data(
        root=cfg.DEMO.ROOT, seed=cfg.DEMO.SEED, size=cfg.DATA.CROP_SIZE, tubes_per_class=cfg.DEMO.TUBES_PER_CLASS,
        test_videos=cfg.DEMO.TEST_VIDEOS, test_keyframes=cfg.DEMO.TEST_KEYFRAMES, fps=cfg.DEMO.FPS,
        max_actors=cfg.SYNTHESIS.ACTORS_MAX, pose_randomness=cfg.DEMO.POSE_RANDOMNESS)


def build_synthesis_dataset(cfg: CfgNode, *, seed: int, length: int, counterfactual: bool = False,
                            scene_bias: float | None = None) -> SynthesisDataset:
    """Clips of the SYNTHESIS.* synthesizer (the demo's sources where no bank is set), drawn
    with generator seed ``seed``; ``scene_bias`` overrides SYNTHESIS.SCENE_BIAS (0: the
    unbiased held-out clips). With ``counterfactual`` each item also carries ``clip_cf``."""
    synth, steps = build_synthesizer(cfg, scene_bias=scene_bias)
    return SynthesisDataset(synthesizer=synth, transforms=steps, length=length, seed=seed, mean=cfg.DATA.MEAN,
                            std=cfg.DATA.STD, counterfactual=counterfactual)


def image_demo_path(cfg: CfgNode) -> str:
    """The image demo file of DEMO.SEED (generated on first use, see stal.demo.images). The
    partner-scene benchmark's file draws its val split like the test split (held-out crops)."""
    i = cfg.IMAGE
    partner = "image_partner" in (cfg.TRAIN.DATASET, cfg.TEST.DATASET)
    return ensure_image_demo(root=cfg.DEMO.ROOT, seed=cfg.DEMO.SEED, size=cfg.DATA.CROP_SIZE,
                             num_classes=cfg.MODEL.NUM_CLASSES, scenes_per_class=i.DEMO_SCENES_PER_CLASS,
                             val_images=i.DEMO_VAL_IMAGES, test_images=i.DEMO_TEST_IMAGES, held_out_val=partner)


# --- synthesis from banks -----------------------------------------------------------------

# Frames of the demo's training actors and scenes (a clip shows a random window of them).
DEMO_SOURCE_FRAMES = 16


def _bank_sources(cfg: CfgNode):
    """(tube source, background source): the SYNTHESIS.* banks, or the demo's procedural
    training actors (DEMO.TUBES_PER_CLASS) / scenes (DEMO.BACKGROUNDS_PER_SCENE) where a bank
    path is empty."""
    s, d, T = cfg.SYNTHESIS, cfg.DEMO, cfg.DATA.NUM_FRAMES
    frames = max(T, DEMO_SOURCE_FRAMES)
    tubes = (tube_bank.TubeBank(s.TUBE_BANK) if s.TUBE_BANK else
             banks.ProceduralActors(seed=d.SEED, stream=banks.TRAIN_ACTORS, per_class=d.TUBES_PER_CLASS,
                                    num_frames=frames, pose_randomness=d.POSE_RANDOMNESS))
    motion = bgs.CameraMotion(prob=s.CAMERA_MOTION_PROB, pan=s.CAMERA_PAN, zoom=s.CAMERA_ZOOM)
    backgrounds = (bgs.BackgroundBank(s.BACKGROUND_BANK, min_scale=s.BACKGROUND_MIN_SCALE, motion=motion)
                   if s.BACKGROUND_BANK else
                   banks.DemoScenes(seed=d.SEED, stream=banks.TRAIN_SCENES, per_scene=d.BACKGROUNDS_PER_SCENE,
                                    num_frames=frames, size=cfg.DATA.CROP_SIZE))
    return tubes, backgrounds


def _paste_synthesizer(cfg: CfgNode, tubes, backgrounds, *, spec: placement.PlacementSpec,
                       scene_bias: float) -> paste.PasteSynthesizer:
    """A PasteSynthesizer of the SYNTHESIS.* edge / colour / label settings with placement ``spec``."""
    s, size = cfg.SYNTHESIS, cfg.DATA.CROP_SIZE
    return paste.PasteSynthesizer(
        tubes=tubes, backgrounds=backgrounds, placement=spec, num_frames=cfg.DATA.NUM_FRAMES, height=size,
        width=size, num_classes=cfg.MODEL.NUM_CLASSES, multi_label=s.MULTI_LABEL, edge=s.EDGE,
        feather_radius=s.FEATHER_RADIUS, colour_match=s.COLOUR_MATCH, interpolation=s.INTERPOLATION,
        clip_dtype="uint8", scene_bias=scene_bias)


def build_partner_synthesizer(cfg: CfgNode) -> mixing.HalfFramePartnerMix:
    """TRAIN.DATASET demo_weak: the partner-scene BatchMix pairs (stal.synthesis.mixing.HalfFramePartnerMix)
    over the demo's sources. Each source clip has one actor inside its half of the frame; the
    first clip's scene is uniform, the partner's goes with the first clip's label with probability
    SYNTHESIS.SCENE_BIAS. The other SYNTHESIS placement keys apply to both clips."""
    s = cfg.SYNTHESIS
    tubes, backgrounds = _bank_sources(cfg)
    if s.TUBE_BANK:
        _check_bank_classes(cfg, tubes)

    def half(side: int, scene_bias: float) -> paste.PasteSynthesizer:
        spec = placement.PlacementSpec(
            actors_min=1, actors_max=1, scale_min=s.SCALE_MIN, scale_max=s.SCALE_MAX, trajectory=s.TRAJECTORY,
            max_drift=s.MAX_DRIFT, partial_prob=s.PARTIAL_PROB, keep_inside=True, flip_prob=s.FLIP_PROB,
            strict_length=s.STRICT_LENGTH, x_range=(0.5 * side, 0.5 * side + 0.5))
        return _paste_synthesizer(cfg, tubes, backgrounds, spec=spec, scene_bias=scene_bias)

    return mixing.HalfFramePartnerMix(halves=(half(0, 0.0), half(1, 0.0)),
                                      partners=(half(0, s.SCENE_BIAS), half(1, s.SCENE_BIAS)))


def _synthesis_transforms(cfg: CfgNode) -> list:
    """The provenance-aligned clip transforms of SYNTHESIS.CROP_SCALE_MIN / HFLIP_PROB."""
    s, size = cfg.SYNTHESIS, cfg.DATA.CROP_SIZE
    steps = []
    if s.CROP_SCALE_MIN < 1.0:
        steps.append(lambda x, rng: transforms.random_resized_crop(x, rng, size=(size, size),
                                                                   scale=(s.CROP_SCALE_MIN, 1.0)))
    if s.HFLIP_PROB > 0:
        steps.append(lambda x, rng: transforms.hflip(x, rng, prob=s.HFLIP_PROB))
    return steps


def labelmap_path(cfg: CfgNode) -> str:
    """The label map of TEST.DATASET (the names of the model's classes, in id order)."""
    if cfg.TEST.DATASET == "demo":
        return demo_data(cfg).test.labelmap
    if cfg.TEST.DATASET == "ava":
        return _ava_path(cfg, cfg.AVA.LABEL_MAP_FILE)
    if cfg.TEST.DATASET in _ACT_DATASETS:
        return _act_paths(cfg, cfg.TEST.DATASET)["labelmap"]
    raise ConfigError(f"TEST.DATASET {cfg.TEST.DATASET} has no label map of action classes (an image task)")


def _test_labelmap_path(cfg: CfgNode) -> str | None:
    """The label map the test split scores classes with (None: no test, or the demo's own)."""
    if not cfg.TEST.ENABLE or cfg.TEST.DATASET not in ("ava", *_ACT_DATASETS):
        return None
    return labelmap_path(cfg)


def _check_bank_classes(cfg: CfgNode, tubes: tube_bank.TubeBank) -> None:
    """Model output j is scored as the test label map's j-th id (sorted), so the bank's class j
    must be that class: a bank built with another label order would train and report a
    meaningless frame-mAP."""
    path = _test_labelmap_path(cfg)
    if path is None:
        return
    labelmap = read_labelmap(path)
    names = [labelmap[i] for i in sorted(labelmap)]
    if tubes.classes != names:
        pairs = list(itertools.zip_longest(tubes.classes, names))
        j = next(j for j, (ours, theirs) in enumerate(pairs) if ours != theirs)
        raise DataError(f"{tubes.index_path}: the tube bank's classes do not match the test label map {path} "
                        f"({len(tubes.classes)} vs {len(names)} classes; class {j}: {pairs[j][0]!r} vs "
                        f"{pairs[j][1]!r}); rebuild the bank with that label map")


def build_synthesizer(cfg: CfgNode, *, scene_bias: float | None = None):
    """(synthesizer, transforms): the SYNTHESIS.* synthesizer (tube bank over background bank,
    optionally mixed) and its provenance-aligned transforms; ``scene_bias`` overrides
    SYNTHESIS.SCENE_BIAS (used by scene-labelled backgrounds only: the demo's)."""
    s = cfg.SYNTHESIS
    tubes, backgrounds = _bank_sources(cfg)
    if s.TUBE_BANK:
        _check_bank_classes(cfg, tubes)
    spec = placement.PlacementSpec(
        actors_min=s.ACTORS_MIN, actors_max=s.ACTORS_MAX, scale_min=s.SCALE_MIN, scale_max=s.SCALE_MAX,
        trajectory=s.TRAJECTORY, max_drift=s.MAX_DRIFT, partial_prob=s.PARTIAL_PROB, keep_inside=s.KEEP_INSIDE,
        flip_prob=s.FLIP_PROB, occlusion=s.OCCLUSION, strict_length=s.STRICT_LENGTH)
    synth = _paste_synthesizer(cfg, tubes, backgrounds, spec=spec,
                               scene_bias=s.SCENE_BIAS if scene_bias is None else scene_bias)
    if s.MIXER != "none":
        dur = (1.0, 1.0) if s.MIXER == "cutmix" else (s.MIX_DURATION_MIN, s.MIX_DURATION_MAX)
        # Weak supervision (MIL) labels clips from their actors, so every actor stays a source.
        mixer = mixing.CuboidMix(area_min=s.MIX_AREA_MIN, area_max=s.MIX_AREA_MAX, duration_min=dur[0],
                                 duration_max=dur[1], num_classes=cfg.MODEL.NUM_CLASSES,
                                 keep_sources=bool(cfg.MODEL.MIL_POOLING))
        synth = mixing.MixingSynthesizer(source=synth, mixer=mixer)
    return synth, _synthesis_transforms(cfg)


# --- AVA and the ACT-derived datasets -----------------------------------------------------

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
    paths = _act_paths(cfg, name)
    return act_keyframe_dataset(
        frame_dir=paths["frames"], table=read_ava_csv(paths["train" if train else "boxes"]),
        num_frames=cfg.DATA.NUM_FRAMES, sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE,
        mean=cfg.DATA.MEAN, std=cfg.DATA.STD, num_classes=cfg.MODEL.NUM_CLASSES if train else None)


def _ava_dataset(cfg: CfgNode, csv_names: list[str], *, with_labels: bool, score_thresh: float):
    """AVA keyframes over the box lists ``csv_names`` (training ground truth, or test person boxes
    kept above ``score_thresh``)."""
    # read_box_list: CSVs, or mmaction2 proposal pickles (.pkl) for the test person boxes.
    tables = [read_box_list(_ava_path(cfg, n)) for n in csv_names]
    table = AvaTable(**{f: np.concatenate([getattr(t, f) for t in tables]) for f in _TABLE_FIELDS})
    if not with_labels:
        keep = table.extra >= score_thresh
        table = AvaTable(**{f: getattr(table, f)[keep] for f in _TABLE_FIELDS})
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


# --- image tasks (one-frame clips) --------------------------------------------------------

def _image_train_source(cfg: CfgNode):
    """The labelled images of TRAIN.DATASET image_demo / image_partner / cub / imagefolder."""
    name, size = cfg.TRAIN.DATASET, cfg.DATA.CROP_SIZE
    if name in ("image_demo", "image_partner"):  # partner: the targets' own photos are uniform
        return images.DemoImageSource(scenes=load_image_demo(image_demo_path(cfg))["train_scenes"],
                                      scene_bias=cfg.SYNTHESIS.SCENE_BIAS if name == "image_demo" else 0.0)
    if name == "cub":
        classes, items = read_cub(cfg.IMAGE.ROOT)
        train = [im for im in items if im.is_train]
        paths = [os.path.join(cfg.IMAGE.ROOT, "images", im.path) for im in train]
        labels = [im.label for im in train]
    else:
        classes, paths, labels = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "train"))
    return images.FileImageSource(paths=paths, labels=labels, num_classes=len(classes), size=size,
                                  hflip_prob=cfg.IMAGE.HFLIP_PROB)


def build_image_train_dataset(cfg: CfgNode):
    """CutMix training items over the TRAIN.DATASET images (layout of stal.data.images);
    image_partner: the partner-scene pairs (stal.data.images.PartnerScenePairs)."""
    source, s = _image_train_source(cfg), cfg.SYNTHESIS
    if source.num_classes != cfg.MODEL.NUM_CLASSES:
        raise DataError(f"{cfg.TRAIN.DATASET} has {source.num_classes} classes but MODEL.NUM_CLASSES is "
                        f"{cfg.MODEL.NUM_CLASSES}")
    pairs = None
    if cfg.TRAIN.DATASET == "image_partner":
        pairs = images.PartnerScenePairs(source=source, partner_bias=cfg.IMAGE.PARTNER_SCENE_BIAS,
                                         area_min=s.MIX_AREA_MIN, area_max=s.MIX_AREA_MAX)
    return images.CutMixImageDataset(
        source=source, length=s.CLIPS_PER_EPOCH, seed=cfg.RNG_SEED, mix_prob=cfg.IMAGE.MIX_PROB,
        area_min=s.MIX_AREA_MIN, area_max=s.MIX_AREA_MAX, provenance=cfg.IMAGE.PROVENANCE,
        counterfactual=counterfactual_enabled(cfg), mean=cfg.DATA.MEAN, std=cfg.DATA.STD, pairs=pairs)


def _image_demo_eval(cfg: CfgNode) -> dict:
    path, mean, std = image_demo_path(cfg), cfg.DATA.MEAN, cfg.DATA.STD
    return {"val_": images.demo_eval_dataset(path, split="val", mean=mean, std=std),
            "": images.demo_eval_dataset(path, split="test", mean=mean, std=std)}


def _cub_eval(cfg: CfgNode) -> dict:
    size, mean, std = cfg.DATA.CROP_SIZE, cfg.DATA.MEAN, cfg.DATA.STD
    cub = CubDataset(root=cfg.IMAGE.ROOT, train=False, crop_size=size, mean=mean, std=std)
    root = os.path.join(cfg.IMAGE.ROOT, "images")
    return {"": images.WsolEvalDataset(
        images=lambda i: read_image(os.path.join(root, cub.images[i].path), size=size),
        labels=[im.label for im in cub.images], mean=mean, std=std,
        boxes=[cub[i]["gt_boxes"] for i in range(len(cub))])}


def _image_folder_eval(cfg: CfgNode) -> dict:
    """An image folder's val/ split: classification only (no boxes)."""
    classes, _, _ = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "train"))
    _, paths, labels = images.read_image_folder(os.path.join(cfg.IMAGE.ROOT, "val"), classes=classes)
    return {"": images.WsolEvalDataset(images=lambda i: read_image(paths[i], size=cfg.DATA.CROP_SIZE),
                                       labels=labels, boxes=[np.zeros((0, 4), np.int64)] * len(paths),
                                       mean=cfg.DATA.MEAN, std=cfg.DATA.STD)}


# --- the dispatch -------------------------------------------------------------------------

def _synthesis_train(cfg: CfgNode):
    """TRAIN.DATASET synthesis and demo: the demo is synthesis over the demo's sources."""
    return build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                                   counterfactual=counterfactual_enabled(cfg))


def _ava_train(cfg: CfgNode):
    return _ava_dataset(cfg, list(cfg.AVA.TRAIN_GT_BOX_LISTS), with_labels=True, score_thresh=0.0)


def build_weak_train_dataset(cfg: CfgNode):
    """Clip-level labels for a MIL detector (MODEL.MIL_POOLING): synthesized clips in the weak
    layout of :mod:`stal.data.weak` (one label row per clip; the actors' boxes are proposals)."""
    if cfg.TRAIN.DATASET not in ("synthesis", "demo_weak"):
        raise ConfigError(f"MODEL.MIL_POOLING {cfg.MODEL.MIL_POOLING} trains on clip-level labels, which "
                          f"TRAIN.DATASET synthesis or demo_weak provides; TRAIN.DATASET {cfg.TRAIN.DATASET} "
                          f"labels boxes")
    if counterfactual_enabled(cfg):
        raise ConfigError("GUIDANCE.MODE counterfactual is not implemented for MODEL.MIL_POOLING; use exact or fd")
    if cfg.TRAIN.DATASET == "demo_weak":
        return _demo_weak_train(cfg)
    if cfg.TEST.ENABLE and cfg.TEST.DATASET in _ACT_DATASETS:
        _act_paths(cfg, cfg.TEST.DATASET)  # a missing test index fails now, not after training
    synth, steps = build_synthesizer(cfg)
    return WeakSynthesisDataset(synthesizer=synth, transforms=steps, length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                                seed=cfg.RNG_SEED, num_classes=cfg.MODEL.NUM_CLASSES, mean=cfg.DATA.MEAN,
                                std=cfg.DATA.STD)


def _demo_weak_train(cfg: CfgNode) -> RegionWeakDataset:
    """TRAIN.DATASET demo_weak: partner-scene BatchMix pairs in the weak layout with region
    provenance (stal.data.weak.region_weak_item; docs/weak_demo.md). MODEL.MIL_POOLING is
    required by the config check (stal.config.load._validate_demo_weak)."""
    return RegionWeakDataset(synthesizer=build_partner_synthesizer(cfg), length=cfg.SYNTHESIS.CLIPS_PER_EPOCH,
                             seed=cfg.RNG_SEED, num_classes=cfg.MODEL.NUM_CLASSES, mean=cfg.DATA.MEAN,
                             std=cfg.DATA.STD)


def _demo_split(cfg: CfgNode, name: str) -> dict:
    split = demo_data(cfg).split(name)
    dataset = AvaKeyframeDataset(
        frame_dir=split.frames, table=read_ava_csv(split.person_boxes_csv), fps=cfg.DEMO.FPS,
        num_frames=cfg.DATA.NUM_FRAMES, sampling_rate=cfg.DATA.SAMPLING_RATE, crop_size=cfg.DATA.CROP_SIZE,
        mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    return {"dataset": dataset, "gt": read_ava_csv(split.gt_csv),
            "labelmap": read_labelmap(split.labelmap), "excluded": set()}


def _demo_test(cfg: CfgNode) -> dict:
    return _demo_split(cfg, "test")


def _act_test(cfg: CfgNode) -> dict:
    paths = _act_paths(cfg, cfg.TEST.DATASET)
    return {"dataset": _act_dataset(cfg, cfg.TEST.DATASET, train=False), "gt": read_ava_csv(paths["test"]),
            "labelmap": read_labelmap(paths["labelmap"]), "excluded": set()}


def _ava_test(cfg: CfgNode) -> dict:
    dataset = _ava_dataset(cfg, list(cfg.AVA.TEST_PREDICT_BOX_LISTS), with_labels=False,
                           score_thresh=cfg.AVA.DETECTION_SCORE_THRESH)
    excl = os.path.join(cfg.AVA.ANNOTATION_DIR, cfg.AVA.EXCLUSION_FILE)
    return {"dataset": dataset, "gt": read_ava_csv(_ava_path(cfg, cfg.AVA.GROUNDTRUTH_FILE)),
            "labelmap": read_labelmap(_ava_path(cfg, cfg.AVA.LABEL_MAP_FILE)),
            "excluded": read_excluded(excl) if os.path.isfile(excl) else set()}


# TRAIN.DATASET -> builder of the training dataset (MODEL.MIL_POOLING wraps "synthesis" instead;
# "demo_weak" is weak only).
TRAIN_DATASETS: dict[str, Callable[[CfgNode], object]] = {
    "demo": _synthesis_train,
    "demo_weak": _demo_weak_train,
    "ava": _ava_train,
    "ucf24": lambda cfg: _act_dataset(cfg, "ucf24", train=True),
    "jhmdb": lambda cfg: _act_dataset(cfg, "jhmdb", train=True),
    "synthesis": _synthesis_train,
    "image_demo": build_image_train_dataset,
    "image_partner": build_image_train_dataset,
    "cub": build_image_train_dataset,
    "imagefolder": build_image_train_dataset,
}
# TEST.DATASET -> builder of the evaluated split (frame-mAP splits).
FRAME_MAP_TEST_DATASETS: dict[str, Callable[[CfgNode], dict]] = {
    "demo": _demo_test, "ava": _ava_test, "ucf24": _act_test, "jhmdb": _act_test}
# TEST.DATASET -> {metric prefix: WsolEvalDataset} (image tasks: CAM localization metrics).
IMAGE_TEST_DATASETS: dict[str, Callable[[CfgNode], dict]] = {
    "image_demo": _image_demo_eval, "image_partner": _image_demo_eval, "cub": _cub_eval,
    "imagefolder": _image_folder_eval}
TEST_DATASETS = {**FRAME_MAP_TEST_DATASETS, **IMAGE_TEST_DATASETS}
# TRAIN/TEST.DATASET values of the image tasks (one-frame clips, CutMix, CAM evaluation).
IMAGE_DATASETS = tuple(IMAGE_TEST_DATASETS)


def build_train_dataset(cfg: CfgNode):
    """The training dataset of TRAIN.DATASET (the weak layout when MODEL.MIL_POOLING is set)."""
    if cfg.MODEL.MIL_POOLING:
        return build_weak_train_dataset(cfg)
    return TRAIN_DATASETS[cfg.TRAIN.DATASET](cfg)


def build_test_split(cfg: CfgNode) -> dict:
    """The evaluated frame-mAP split: keyframe dataset over person boxes, ground truth, label map, exclusions."""
    return FRAME_MAP_TEST_DATASETS[cfg.TEST.DATASET](cfg)


def build_val_splits(cfg: CfgNode) -> dict:
    """{metric prefix: split} of the frame-mAP validation splits evaluated beside the test split:
    the demo's "val_" (generated like the test split) and "val_seen_" (the training actors)."""
    if cfg.TEST.DATASET != "demo":
        return {}
    return {"val_": _demo_split(cfg, "val"), "val_seen_": _demo_split(cfg, "val_seen")}


def build_image_eval_splits(cfg: CfgNode) -> dict:
    """{metric prefix: WsolEvalDataset}: the image demos' "val_" and "" (test) splits, CUB's test
    images, or an image folder's val/ (classification only: no boxes)."""
    return IMAGE_TEST_DATASETS[cfg.TEST.DATASET](cfg)
