"""The embedded video demo: its procedural sources through the production synthesizer, and its
AVA-format evaluation splits (test, val, val_seen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stal.config import load_cfg
from stal.data import build
from stal.demo.banks import TRAIN_ACTORS, TRAIN_SCENES, DemoScenes, ProceduralActors
from stal.demo.video import SPLITS, ensure_demo_data
from stal.engine import builders
from stal.engine.evaluate import test as evaluate_test
from stal.errors import ConfigError
from stal.formats.ava import read_ava_csv
from stal.synthesis.paste import PasteSynthesizer


def _cfg(tmp_path, *opts):
    return load_cfg("configs/demo_baseline.yaml", ["DEMO.ROOT", str(tmp_path), "DATA.CROP_SIZE", "32",
                                                   "DATA.NUM_FRAMES", "4", "DEMO.TUBES_PER_CLASS", "3",
                                                   "DEMO.BACKGROUNDS_PER_SCENE", "2", *opts])


def _scene_of(cfg, sample) -> int:
    """The training scene whose clip (any window) the sample's untouched voxels are, bit for bit."""
    scenes = DemoScenes(seed=cfg.DEMO.SEED, stream=TRAIN_SCENES, per_scene=cfg.DEMO.BACKGROUNDS_PER_SCENE,
                        num_frames=build.DEMO_SOURCE_FRAMES, size=cfg.DATA.CROP_SIZE)
    T = sample.clip.shape[0]
    untouched = sample.provenance.weight_sum() == 0
    found = {s for s in range(scenes.num_scenes) for i in range(scenes.per_scene)
             for t in range(scenes.num_frames - T + 1)
             if np.array_equal(scenes._render(s, i)[t:t + T][untouched], sample.clip[untouched])}
    assert len(found) == 1, found
    return found.pop()


def test_demo_training_is_the_paste_synthesizer_over_the_demo_sources(tmp_path):
    data = build.build_train_dataset(_cfg(tmp_path))
    assert isinstance(data.synthesizer, PasteSynthesizer)
    assert isinstance(data.synthesizer.tubes, ProceduralActors) and isinstance(data.synthesizer.backgrounds, DemoScenes)
    s = data.sample(0)
    untouched = s.provenance.weight_sum() == 0
    assert untouched.any() and np.array_equal(s.clip[untouched], s.background[untouched])
    assert not np.array_equal(data.sample(1).clip, s.clip)
    data.set_epoch(1)
    assert not np.array_equal(data.sample(0).clip, s.clip)
    data.set_epoch(0)
    np.testing.assert_array_equal(data.sample(0).clip, s.clip)


@pytest.mark.parametrize("bias, lo, hi", [(1.0, 1.0, 1.0), (0.0, 0.1, 0.45)])
def test_scene_goes_with_the_bottom_actor_with_probability_scene_bias(tmp_path, bias, lo, hi):
    cfg = _cfg(tmp_path, "SYNTHESIS.SCENE_BIAS", str(bias), "SYNTHESIS.ACTORS_MAX", "1")
    data = build.build_train_dataset(cfg)
    n = 60
    hits = sum(_scene_of(cfg, s) == int(s.labels[0]) for s in (data.sample(i) for i in range(n)))
    assert lo <= hits / n <= hi


def test_counterfactual_keeps_the_actor_voxels_over_another_training_scene(tmp_path):
    cfg = _cfg(tmp_path, "GUIDANCE.ENABLE", "True", "GUIDANCE.MODE", "counterfactual", "DATA.MEAN", "[0.0, 0.0, 0.0]",
               "DATA.STD", "[1.0, 1.0, 1.0]")
    data = build.build_train_dataset(cfg)
    plain = build.build_synthesis_dataset(cfg, seed=cfg.RNG_SEED, length=4)
    for i in range(4):
        item = data[i]
        torch.testing.assert_close(item["clip"], plain[i]["clip"], rtol=0, atol=0)
        actor = item["mask"].numpy() == 1.0
        clip, swap = item["clip"].numpy(), item["clip_cf"].numpy()
        np.testing.assert_allclose(clip[:, actor], swap[:, actor], atol=1 / 255)
        assert not np.array_equal(clip[:, ~actor], swap[:, ~actor])


def test_actors_rendered_longer_are_the_same_actors():
    short = ProceduralActors(seed=4, stream=TRAIN_ACTORS, per_class=3, num_frames=16)
    long = ProceduralActors(seed=4, stream=TRAIN_ACTORS, per_class=3, num_frames=40)
    other = ProceduralActors(seed=4, stream=TRAIN_ACTORS + 1, per_class=3, num_frames=16)
    for i in (0, 5, 11):
        np.testing.assert_array_equal(long[i].rgba[:16], short[i].rgba)
        assert long[i].labels == short[i].labels == [i // 3]
        assert not np.array_equal(other[i].rgba, short[i].rgba)


def test_splits_are_ava_format_deterministic_and_seeded(tiny_demo, tmp_path):
    paths, kwargs = tiny_demo
    again = ensure_demo_data(**{**kwargs, "root": str(tmp_path)})
    other = ensure_demo_data(**{**kwargs, "root": str(tmp_path), "seed": kwargs["seed"] + 1})
    for name in SPLITS:
        split = paths.split(name)
        gt, boxes = read_ava_csv(split.gt_csv), read_ava_csv(split.person_boxes_csv)
        assert len(gt) > 0 and len(boxes) == len(gt)
        assert set(gt.action.tolist()) <= {1, 2, 3, 4} and (gt.boxes >= 0).all() and (gt.boxes <= 1).all()
        assert open(split.gt_csv).read() == open(again.split(name).gt_csv).read()
        assert open(split.gt_csv).read() != open(other.split(name).gt_csv).read()
    texts = {open(paths.split(n).gt_csv).read() for n in SPLITS}
    assert len(texts) == len(SPLITS)  # each split draws its own actors, scenes and layout


def test_metrics_have_val_and_seen_frame_map(tmp_path):
    cfg = _cfg(tmp_path, "MODEL.ARCH", "small3d_tiny", "DEMO.TEST_VIDEOS", "2", "DEMO.TEST_KEYFRAMES", "1",
               "TEST.NUM_ENERGY_CLIPS", "2", "TEST.BATCH_SIZE", "2")
    metrics = evaluate_test(cfg, builders.build_model(cfg), out_dir=None)
    for key in ("frame_mAP", "val_frame_mAP", "val_seen_frame_mAP", "synth_unbiased_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key


@pytest.mark.parametrize("key", ["DEMO.TUBES_PER_CLASS", "DEMO.BACKGROUNDS_PER_SCENE", "DEMO.TEST_VIDEOS"])
def test_demo_sizes_must_be_positive(key):
    with pytest.raises(ConfigError, match=f"{key} must be > 0, got 0"):
        load_cfg("configs/demo_baseline.yaml", [key, "0"])
