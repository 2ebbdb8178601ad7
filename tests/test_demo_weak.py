"""The partner-scene BatchMix weak STAL benchmark (TRAIN.DATASET demo_weak, issue 18 part 2b):
the half-frame partner pairs, their weak items with region provenance, the scene bias of the
pasted half, DEMO.SEED, the fixed layout keys, and the three configs through tools/train_net.py."""

import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

from stal.cli import train_net
from stal.config import load_cfg
from stal.data.build import build_train_dataset
from stal.data.synthesized import sample_rng
from stal.data.weak import clip_label
from stal.demo import banks
from stal.errors import ConfigError, DataError
from stal.synthesis.placement import PlacementSpec, column_range, place_actors

SIZE, T = 32, 4
SMALL = ["DATA.CROP_SIZE", str(SIZE), "DATA.NUM_FRAMES", str(T), "DEMO.TUBES_PER_CLASS", "4",
         "DEMO.BACKGROUNDS_PER_SCENE", "1"]


def _dataset(repo_root, *opts, name="demo_weak_batchmix", size=SIZE):
    opts = SMALL + ["DATA.CROP_SIZE", str(size)] + list(opts)
    cfg = load_cfg(os.path.join(repo_root, "configs", f"{name}.yaml"), opts)
    return cfg, build_train_dataset(cfg)


def _parts(ds, index):
    """The draw of item ``index`` replayed by hand: (side, first clip, partner clip)."""
    rng = sample_rng(ds.seed, ds.epoch, index)
    side = int(rng.integers(0, 2))
    first = ds.synthesizer.halves[side](rng)
    second = ds.synthesizer.partners[1 - side](rng, scene_class=int(first.labels[0]))
    return side, first, second


def _scene_of(cfg, background, cols):
    """The demo training scene whose (only) background clip shows ``background[:, :, cols]``
    (a window of T of its 16 frames): the scene is read back from the pixels."""
    scenes = banks.DemoScenes(seed=cfg.DEMO.SEED, stream=banks.TRAIN_SCENES, per_scene=1, num_frames=16, size=SIZE)
    found = []
    for k in range(scenes.num_scenes):
        full = scenes.clip(np.random.default_rng(0), num_frames=16, height=SIZE, width=SIZE, scene=k)
        for t0 in range(16 - T + 1):
            if np.array_equal(full[t0:t0 + T, :, cols], background[:, :, cols]):
                found.append(k)
                break
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("size", [SIZE, 35])  # odd: the halves are [0, W // 2) and [W // 2, W)
def test_partner_item_layout_label_mix_and_region_provenance(repo_root, size):
    _, ds = _dataset(repo_root, size=size)
    SIZE, half, partner_larger = size, size // 2, 0
    for i in range(24):
        item, s = ds[i], ds.sample(i)
        side, first, second = _parts(ds, i)
        assert item["clip"].shape == (3, T, SIZE, SIZE) and item["boxes"].shape == (2, 4)
        assert item["labels"].shape == (1,) and item["labels"].dtype == torch.int64
        assert item["mask"].shape == (T, SIZE, SIZE) and item["source_masks"].shape == (1, T, SIZE, SIZE)
        label = int(first.labels[0])
        assert int(item["labels"][0]) == label and s.labels.tolist() == [label, int(second.labels[0])]
        # The partner's half (every frame) comes from the partner clip, the rest from the first clip.
        ours, theirs = (slice(0, half), slice(half, SIZE)) if side == 0 else (slice(half, SIZE), slice(0, half))
        assert s.info["cuboid_tyx"] == [0, T, 0, SIZE, theirs.start, theirs.stop]
        assert np.array_equal(s.clip[:, :, theirs], second.clip[:, :, theirs])
        assert np.array_equal(s.clip[:, :, ours], first.clip[:, :, ours])
        # Each actor lies wholly in its own half; the proposals are both actors' keyframe boxes.
        assert first.provenance.alpha[:, :, :, theirs].max() == 0 and first.provenance.alpha.max() > 0
        assert second.provenance.alpha[:, :, :, ours].max() == 0 and second.provenance.alpha.max() > 0
        both = np.concatenate([first.boxes[:, first.keyframe], second.boxes[:, second.keyframe]]) * SIZE
        np.testing.assert_allclose(item["boxes"].numpy(), both)
        # The target: exactly the label-carrying halves (both when the partner has the same class).
        want = np.zeros((T, SIZE, SIZE), np.float32)
        want[:, :, ours] = 1.0
        if int(second.labels[0]) == label:
            want[:, :, theirs] = 1.0
        assert np.array_equal(item["mask"].numpy(), want) and np.array_equal(item["source_masks"][0].numpy(), want)
        weights = s.provenance.source_totals()
        partner_larger += int(weights[1] > weights[0] and s.labels[1] != label)
        if weights[1] > weights[0] and s.labels[1] != label:  # the most visible actor is not the label
            assert int(clip_label(s, num_classes=4)[0]) != label
    assert partner_larger > 0  # the label follows the first clip, not the most visible actor


@pytest.mark.parametrize("bias", [1.0, 0.0])
def test_pasted_half_scene_follows_the_first_label_with_the_scene_bias(repo_root, bias):
    cfg, ds = _dataset(repo_root, "SYNTHESIS.SCENE_BIAS", str(bias))
    half, partner_hits, first_hits, n = SIZE // 2, 0, 0, 80
    for i in range(n):
        s = ds.sample(i)
        x0, x1 = s.info["cuboid_tyx"][4:]
        theirs = slice(x0, x1)
        ours = slice(half, SIZE) if x0 == 0 else slice(0, half)
        label = int(s.labels[0])
        partner_hits += _scene_of(cfg, s.background, theirs) == label
        first_hits += _scene_of(cfg, s.background, ours) == label
    if bias == 1.0:
        assert partner_hits == n
    else:  # independent of the label: about n / 4 (binomial sd 3.9)
        assert 8 <= partner_hits <= 32
    assert 8 <= first_hits <= 32  # the first clip's own scene is uniform in both


def test_demo_seed_changes_the_training_data_and_the_same_seed_reproduces_it(repo_root):
    clips = {}
    for key, seed in (("a", 0), ("b", 0), ("c", 1)):
        _, ds = _dataset(repo_root, "DEMO.SEED", str(seed))
        clips[key] = torch.stack([ds[i]["clip"] for i in range(4)])
    assert torch.equal(clips["a"], clips["b"]) and not torch.equal(clips["a"], clips["c"])


@pytest.mark.parametrize("opts, match", [
    (["MODEL.MIL_POOLING", ""], "MODEL.MIL_POOLING"),
    (["SYNTHESIS.MIX_AREA_MAX", "0.4"], "SYNTHESIS.MIX_AREA_MAX 0.5"),
    (["SYNTHESIS.HFLIP_PROB", "0.5"], "SYNTHESIS.HFLIP_PROB 0.0"),
    (["SYNTHESIS.ACTORS_MIN", "1"], "SYNTHESIS.ACTORS_MIN 2"),
])
def test_the_benchmark_layout_keys_are_checked_at_load(repo_root, opts, match):
    with pytest.raises(ConfigError, match=match) as err:
        _dataset(repo_root, *opts)
    assert "\n" not in str(err.value)


def test_counterfactual_guidance_is_refused_for_the_weak_benchmark(repo_root):
    with pytest.raises(ConfigError, match="counterfactual is not implemented for MODEL.MIL_POOLING"):
        _dataset(repo_root, "GUIDANCE.MODE", "counterfactual", "GUIDANCE.LAMBDA_RULE", "fixed", name="demo_weak_guided")


def test_placement_x_range_keeps_the_canvas_in_its_columns():
    tubes = [(8, 28, 24, 28, "t")]
    spec = PlacementSpec(actors_min=3, actors_max=3, scale_min=0.4, scale_max=0.5, trajectory="linear",
                         x_range=(0.5, 1.0))
    for i in range(50):
        for p in place_actors(np.random.default_rng(i), spec, tubes=tubes, num_frames=T, height=64, width=64):
            assert p.left.min() >= 32 and (p.left + p.width).max() <= 64
    with pytest.raises(DataError, match="larger than"):
        wide = PlacementSpec(actors_min=1, actors_max=1, scale_min=0.9, scale_max=0.9, x_range=(0.0, 0.25))
        place_actors(np.random.default_rng(0), wide, tubes=tubes, num_frames=T, height=64, width=64)
    for width in (32, 35):  # the halves meet at W // 2, where the partner's cuboid starts or ends
        assert column_range(PlacementSpec(x_range=(0.0, 0.5)), width) == (0, width // 2)
        assert column_range(PlacementSpec(x_range=(0.5, 1.0)), width) == (width // 2, width)
    with pytest.raises(ValueError, match="x_range"):
        PlacementSpec(x_range=(0.6, 0.5))


TINY = ["MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2", "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "4",
        "SYNTHESIS.CLIPS_PER_EPOCH", "4", "TRAIN.BATCH_SIZE", "2", "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "4",
        "DEMO.TUBES_PER_CLASS", "4", "DEMO.BACKGROUNDS_PER_SCENE", "1", "DEMO.TEST_VIDEOS", "2",
        "DEMO.TEST_KEYFRAMES", "1", "LOG_PERIOD", "1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("weak_demo_data"))  # one generated dataset for the three configs


@pytest.mark.parametrize("name, bias, guided", [
    ("demo_weak_batchmix", 0.9, False), ("demo_weak_guided", 0.9, True), ("demo_weak_unbiased", 0.0, False)])
def test_weak_demo_config_trains_and_reports_frame_map(repo_root, tmp_path, data_root, name, bias, guided):
    out = tmp_path / "run"
    cfg = os.path.join(repo_root, "configs", f"{name}.yaml")
    assert train_net.main(["--cfg", cfg, "OUTPUT_DIR", str(out), "DEMO.ROOT", data_root] + TINY) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert (resolved["TRAIN"]["DATASET"], resolved["TEST"]["DATASET"]) == ("demo_weak", "demo")
    assert resolved["SYNTHESIS"]["SCENE_BIAS"] == bias and resolved["MODEL"]["MIL_POOLING"] == "max"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("frame_mAP", "val_frame_mAP", "val_seen_frame_mAP"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, key
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if "loss_task" in r]
    assert len(train) == 2 and all(math.isfinite(r["loss_task"]) for r in train)
    g = resolved["GUIDANCE"]
    if guided:  # the paper's form, as demo_wsol_partner_guided.yaml
        assert (g["MODE"], g["REGION"], g["SCORE"], g["NORM"]) == ("exact", "per_source", "logit", "share")
        assert g["MERGE_SAME_CLASS"] and g["INNER_BN"] == "batch_constant" and g["LAMBDA_RULE"] == "balance_init"
        assert all(math.isfinite(r["loss_guidance"]) for r in train) and train[0]["guidance_lambda"] > 0
        assert train[-1]["loss_guidance"] > 0
    else:
        assert not g["ENABLE"] and all(r.get("loss_guidance") in (None, 0.0) for r in train)
