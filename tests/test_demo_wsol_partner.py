"""Partner-scene CutMix WSOL benchmark (issue 18): the rectangle beside the target, rho, the
held-out val split, DEMO.SEED."""

import os

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from stal.config.load import load_cfg
from stal.data.build import build_image_eval_splits, build_train_dataset
from stal.data.images import CutMixImageDataset, DemoImageSource, PartnerScenePairs, rect_beside
from stal.demo.images import ensure_image_demo, load_image_demo
from stal.errors import ConfigError

K, SIZE = 4, 32
# Constant photos: every pixel of photo k is SCENE_VALUE[k], so a pixel tells its photo.
SCENE_VALUE = np.array([11, 77, 143, 209], np.uint8)


def _flat_scenes():
    return np.broadcast_to(SCENE_VALUE[:, None, None, None, None], (K, 2, SIZE, SIZE, 3)).copy()


def _pairs_dataset(bias, *, length=2000, area=(0.25, 0.5)):
    source = DemoImageSource(scenes=_flat_scenes(), scene_bias=0.0)
    pairs = PartnerScenePairs(source=source, partner_bias=bias, area_min=area[0], area_max=area[1])
    return CutMixImageDataset(source=source, length=length, seed=3, mix_prob=1.0, area_min=area[0], area_max=area[1],
                              provenance="region", counterfactual=False, mean=[0.0] * 3, std=[1.0] * 3, pairs=pairs)


def _scene_of(image, object_mask, region):
    """The photo index under ``region`` minus the object (constant photos)."""
    pix = image[region & ~object_mask]
    assert len(pix) and (pix == pix[0]).all()
    return int(np.flatnonzero(SCENE_VALUE == pix[0, 0])[0])


def test_rect_beside_by_hand():
    # Box x 4..9, y 0..9 of a 10 x 10 image: only the left strip (4 x 10 = 40 px) is free.
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, y1, x0, x1 = rect_beside(rng, np.array([4, 0, 9, 9]), size=10, area_min=0.3, area_max=0.3)
        assert 0 <= x0 < x1 <= 4 and 0 <= y0 < y1 <= 10
        assert 30 <= (y1 - y0) * (x1 - x0) <= 30 + (y1 - y0)  # width rounded up: at most one column more
    assert rect_beside(rng, np.array([4, 0, 9, 9]), size=10, area_min=0.5, area_max=0.5) is None


def test_partner_rectangle_never_covers_the_target_object_and_has_its_area():
    ds = _pairs_dataset(0.9, length=500)
    areas = []
    for i in range(len(ds)):
        sample, (target, partner) = ds.mixed(i)
        t0, t1, y0, y1, x0, x1 = sample.info["cuboid_tyx"]
        rect = np.zeros((SIZE, SIZE), bool)
        rect[y0:y1, x0:x1] = True
        assert not (rect & target.object_mask).any()
        assert np.array_equal(sample.clip[0][target.object_mask], target.image[target.object_mask])
        assert np.array_equal(sample.clip[0][rect], partner.image[rect])  # the pasted pixels: the partner's
        assert np.array_equal(sample.provenance.alpha[1, 0] > 0, rect)
        assert (rect & partner.object_mask).any()  # the partner's object is centred in the rectangle
        areas.append(rect.mean())
    assert 0.25 <= min(areas) and max(areas) <= 0.5 + 1 / SIZE
    assert max(areas) - min(areas) > 0.2  # drawn over the whole range


@pytest.mark.parametrize("bias", [0.9, 0.0])
def test_rho_sets_the_partner_scene_label_association_only(bias):
    ds = _pairs_dataset(bias)
    partner_is_target, target_own, partner_own = [], [], []
    for i in range(len(ds)):
        sample, (target, partner) = ds.mixed(i)
        rect = sample.provenance.alpha[1, 0] > 0
        partner_scene = _scene_of(sample.clip[0], partner.object_mask, rect)
        target_scene = _scene_of(sample.clip[0], target.object_mask, ~rect)
        partner_is_target.append(partner_scene == target.label)
        target_own.append(target_scene == target.label)
        partner_own.append(partner_scene == partner.label)
    # P(partner photo = target class) = rho + (1 - rho) / K; no source has a scene bias of its own.
    assert abs(np.mean(partner_is_target) - (bias + (1 - bias) / K)) < 0.03
    assert abs(np.mean(target_own) - 1 / K) < 0.04
    assert abs(np.mean(partner_own) - 1 / K) < 0.04  # rho / K + (1 - rho) / K: the partner's label is uniform


def test_partner_item_rows_masks_and_counterfactual():
    ds = _pairs_dataset(0.9, length=4)
    ds.counterfactual = True
    item = ds[1]
    sample, (target, partner) = ds.mixed(1)
    lam = sample.provenance.alpha.reshape(2, -1).mean(1)
    assert np.isclose(float(item["labels"][0, target.label]), 2 * lam[0])  # row k: 2 lam_k onehot(y_k)
    assert np.isclose(float(item["labels"][1, partner.label]), 2 * lam[1])
    assert np.allclose(item["source_masks"].numpy(), sample.provenance.alpha)
    rect = sample.provenance.alpha[1, 0] > 0
    cf = item["clip_cf"][:, 0].permute(1, 2, 0).numpy() * 255  # same objects, same rectangle, other photos
    assert np.allclose(cf[target.object_mask], target.image[target.object_mask])
    assert not np.allclose(cf[rect & ~partner.object_mask], sample.clip[0][rect & ~partner.object_mask])


def _cfg(root, *opts):
    return load_cfg(None, ["TRAIN.DATASET", "image_partner", "TEST.DATASET", "image_partner", "DATA.NUM_FRAMES", "1",
                           "DATA.CROP_SIZE", str(SIZE), "MODEL.ARCH", "vgg16_gap_tiny", "DEMO.ROOT", str(root),
                           "SYNTHESIS.MIX_AREA_MIN", "0.25", "SYNTHESIS.MIX_AREA_MAX", "0.5",
                           "IMAGE.DEMO_SCENES_PER_CLASS", "3", "IMAGE.DEMO_VAL_IMAGES", "400",
                           "IMAGE.DEMO_TEST_IMAGES", "400", *opts])


def _on_training_crops(data, split):
    """How many images of ``split`` have, outside their object's box, the pixels of a training crop."""
    found = 0
    for image, box, scene in zip(data[f"{split}_images"], data[f"{split}_boxes"], data[f"{split}_scenes"]):
        outside = np.ones(image.shape[:2], bool)
        outside[box[1]:box[3] + 1, box[0]:box[2] + 1] = False
        found += any(np.array_equal(crop[outside], image[outside]) for crop in data["train_scenes"][scene])
    return found


def test_val_and_test_scenes_are_independent_of_the_labels(tmp_path):
    cfg = _cfg(tmp_path)
    splits = build_image_eval_splits(cfg)
    assert sorted(splits) == ["", "val_"]
    path = ensure_image_demo(root=str(tmp_path), seed=0, size=SIZE, num_classes=K, scenes_per_class=3,
                             val_images=400, test_images=400, held_out_val=True)
    data = load_image_demo(path)
    for split in ("val", "test"):
        counts = np.zeros((K, K))
        np.add.at(counts, (data[f"{split}_labels"], data[f"{split}_scenes"]), 1)
        assert chi2_contingency(counts).pvalue > 0.01, counts  # scene independent of the class
        assert (counts > 0).all()
    # val is drawn like test, over its own crops; the training and test crops are the image demo's.
    plain = load_image_demo(ensure_image_demo(root=str(tmp_path / "plain"), seed=0, size=SIZE, num_classes=K,
                                              scenes_per_class=3, val_images=400, test_images=400))
    assert all(np.array_equal(data[k], plain[k]) for k in ("train_scenes", "test_scenes", "test_images"))
    assert _on_training_crops(plain, "val") == 400 and _on_training_crops(plain, "test") == 0
    assert _on_training_crops(data, "val") == 0
    assert splits["val_"].labels == data["val_labels"].tolist()


def test_demo_seed_changes_the_data_and_the_same_seed_reproduces_it(tmp_path):
    files, items = {}, {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = _cfg(tmp_path / name, "DEMO.SEED", str(seed), "IMAGE.DEMO_VAL_IMAGES", "8",
                   "IMAGE.DEMO_TEST_IMAGES", "8")
        ds = build_train_dataset(cfg)
        assert isinstance(ds.pairs, PartnerScenePairs) and ds.pairs.partner_bias == 0.9
        items[name] = [ds[i] for i in range(3)]
        (path,) = [os.path.join(tmp_path, name, f) for f in os.listdir(tmp_path / name)]
        files[name] = open(path, "rb").read()
    assert files["a"] == files["b"] and files["a"] != files["c"]
    same = [all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(items["a"], items["b"])]
    assert all(same)
    assert not any(np.array_equal(x["clip"], y["clip"]) for x, y in zip(items["a"], items["c"]))


@pytest.mark.parametrize("opts, match", [
    (["IMAGE.PARTNER_SCENE_BIAS", "1.5"], "PARTNER_SCENE_BIAS must be in"),
    (["SYNTHESIS.MIX_AREA_MAX", "0.6"], "image_partner needs 0 < SYNTHESIS.MIX_AREA_MIN"),
])
def test_partner_config_errors(tmp_path, opts, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(tmp_path, *opts)
