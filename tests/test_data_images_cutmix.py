"""CutMix with provenance on one-frame clips: pixels per source, labels by area, bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _data_fixtures import write_jpegs
from stal.data.images import (CutMixImageDataset, DemoImageSource, FileImageSource, SourceImage,
                              read_image_folder)
from stal.data.batch import collate_train
from stal.errors import ConfigError, DataError

MEAN, STD = [0.0] * 3, [1.0] * 3


class SolidSource:
    """Solid images: draw n has colour (10 n, 20 n, 30 n) and class n % 3; object = the left half."""

    num_classes = 3

    def __init__(self, size=16):
        self.size, self.n = size, 0

    def draw(self, rng):
        self.n += 1
        image = np.zeros((self.size, self.size, 3), np.uint8) + np.array([10, 20, 30], np.uint8) * self.n
        obj = np.zeros((self.size, self.size), bool)
        obj[:, : self.size // 2] = True
        return SourceImage(image=image, label=self.n % 3, object_mask=obj,
                           redraw=lambda r, n=self.n: np.full((self.size, self.size, 3), 200 + n, np.uint8))


def _dataset(provenance="region", counterfactual=False, mix_prob=1.0):
    return CutMixImageDataset(source=SolidSource(), length=8, seed=0, mix_prob=mix_prob, area_min=0.2,
                              area_max=0.5, provenance=provenance, counterfactual=counterfactual, mean=MEAN, std=STD)


def test_cutmix_pixels_come_from_their_source_and_labels_mix_by_area():
    ds = _dataset()
    for i in range(4):
        ds.source.n = 0  # draws 1 and 2 of this item
        item = ds[i]
        clip, masks = item["clip"][:, 0] * 255, item["source_masks"][:, 0]  # (3, H, W), (2, H, W)
        assert item["clip"].shape == (3, 1, 16, 16) and masks.shape == (2, 16, 16)
        assert torch.equal(masks.sum(0), torch.ones(16, 16))  # every pixel has exactly one source
        for k, colour in enumerate(([10, 20, 30], [20, 40, 60])):
            pix = clip[:, masks[k] > 0]
            assert pix.shape[1] > 0 and torch.allclose(pix, torch.tensor(colour, dtype=torch.float32)[:, None])
        area = masks.flatten(1).mean(1)
        assert torch.allclose(item["labels"].sum(1), 2 * area)  # row k: 2 lam_k onehot(y_k)
        assert item["labels"][0, 1] > 0 and item["labels"][1, 2] > 0  # classes 1 % 3 and 2 % 3
        # The mean of the two rows' soft cross-entropies is CutMix's lam CE(y1) + (1 - lam) CE(y2).
        logits = torch.randn(1, 3).expand(2, 3)
        mixed = area[0] * F.cross_entropy(logits[:1], torch.tensor([1])) + area[1] * F.cross_entropy(
            logits[:1], torch.tensor([2]))
        assert torch.allclose(F.cross_entropy(logits, item["labels"]), mixed, atol=1e-6)
        assert item["boxes"].tolist() == [[0, 0, 16, 16]] * 2


def test_object_provenance_and_counterfactual_rendering():
    ds = _dataset(provenance="object", counterfactual=True)
    ds.source.n = 0
    item = ds[0]
    region = _dataset()
    region.source.n = 0
    plain = region[0]
    obj = torch.zeros(16, 16)
    obj[:, :8] = 1
    assert torch.equal(item["source_masks"][:, 0], plain["source_masks"][:, 0] * obj)
    assert torch.equal(item["mask"][0], obj) and torch.equal(item["clip"], plain["clip"])
    cf = item["clip_cf"][:, 0] * 255  # the same CutMix rectangle over the re-rendered sources
    region_masks = plain["source_masks"][:, 0]
    assert torch.allclose(cf[:, region_masks[0] > 0], torch.tensor(201.0))
    assert torch.allclose(cf[:, region_masks[1] > 0], torch.tensor(202.0))


def test_unmixed_image_has_two_equal_rows_and_mix_is_deterministic():
    ds = _dataset(mix_prob=0.0)
    item = ds[3]
    assert torch.equal(item["source_masks"], torch.ones(2, 1, 16, 16))
    assert torch.allclose(item["labels"].sum(1), torch.ones(2))
    demo = CutMixImageDataset(source=DemoImageSource(scenes=np.random.default_rng(0).integers(
        0, 255, (3, 2, 16, 16, 3), dtype=np.uint8), scene_bias=1.0), length=4, seed=5, mix_prob=1.0,
        area_min=0.2, area_max=0.5, provenance="object", counterfactual=True, mean=MEAN, std=STD)
    a, b = demo[2], demo[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    batch = collate_train([demo[0], demo[1]])
    assert batch["rois"][:, 0].tolist() == [0, 0, 1, 1] and batch["labels"].shape == (4, 3)
    assert batch["source_masks"].shape == (4, 1, 16, 16) and batch["clip_cf"].shape == (2, 3, 1, 16, 16)


def test_counterfactual_and_object_provenance_need_a_demo_source(tmp_path):
    write_jpegs(tmp_path / "a", ["1.jpg"], size=(20, 10), values=[50])
    files = FileImageSource(paths=[str(tmp_path / "a" / "1.jpg")], labels=[0], num_classes=2, size=8)
    for kwargs in ({"provenance": "object", "counterfactual": False},
                   {"provenance": "region", "counterfactual": True}):
        ds = CutMixImageDataset(source=files, length=2, seed=0, mix_prob=1.0, area_min=0.2, area_max=0.5,
                                mean=MEAN, std=STD, **kwargs)
        with pytest.raises(ConfigError):
            ds[0]


def test_images_of_different_sizes_are_resized_into_one_batch(tmp_path):
    write_jpegs(tmp_path / "x", ["big.jpg"], size=(40, 30), values=[50])
    write_jpegs(tmp_path / "x", ["small.jpg"], size=(7, 11), values=[90])
    files = FileImageSource(paths=[str(tmp_path / "x" / n) for n in ("big.jpg", "small.jpg")], labels=[0, 1],
                            num_classes=2, size=12)
    ds = CutMixImageDataset(source=files, length=4, seed=0, mix_prob=1.0, area_min=0.2, area_max=0.5,
                            provenance="region", counterfactual=False, mean=MEAN, std=STD)
    batch = collate_train([ds[i] for i in range(4)])
    assert batch["clip"].shape == (4, 3, 1, 12, 12) and batch["mask"].shape == (4, 1, 12, 12)


def test_class_id_outside_the_label_set_is_an_error(tmp_path):
    write_jpegs(tmp_path / "train" / "cat", ["1.jpg"], size=(8, 8), values=[50])
    write_jpegs(tmp_path / "val" / "dog", ["1.jpg"], size=(8, 8), values=[50])
    with pytest.raises(DataError, match="class id 3 outside the label set 0..1"):
        FileImageSource(paths=["a.jpg"], labels=[3], num_classes=2, size=8)
    classes, _, _ = read_image_folder(str(tmp_path / "train"))
    with pytest.raises(DataError, match=r"val/dog: class folder outside the label set \['cat'\]"):
        read_image_folder(str(tmp_path / "val"), classes=classes)


def test_cub_negative_width_and_unknown_class_are_errors(tmp_path):
    from test_data_cub import make_cub
    from stal.data.cub import read_cub

    make_cub(tmp_path)
    (tmp_path / "bounding_boxes.txt").write_text("1 10.0 5.0 -20.0 10.0\n2 0 0 40 20\n3 30 10 10 10\n")
    with pytest.raises(DataError, match=r"image id 1: box .* w, h > 0"):
        read_cub(str(tmp_path))
    make_cub(tmp_path)
    (tmp_path / "image_class_labels.txt").write_text("1 1\n2 1\n3 7\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt: image id 3 has class 7; classes.txt has 1..2"):
        read_cub(str(tmp_path))
