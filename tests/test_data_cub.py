"""CUB-200-2011 text files + JPEGs -> CubDataset one-frame clips; boxes normalized by hand."""

import numpy as np
import pytest

from _data_fixtures import write_jpegs
from stal.data.cub import CubDataset, read_cub, wsol_gt_box
from stal.errors import DataError


def make_cub(root):
    write_jpegs(root / "images" / "001.Albatross", ["a_1.jpg", "a_2.jpg"], size=(40, 20), values=[50, 60])
    write_jpegs(root / "images" / "002.Auklet", ["b_1.jpg"], size=(40, 20), values=[70])
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    (root / "images.txt").write_text("1 001.Albatross/a_1.jpg\n2 001.Albatross/a_2.jpg\n3 002.Auklet/b_1.jpg\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (root / "bounding_boxes.txt").write_text("1 10.0 5.0 20.0 10.0\n2 0.0 0.0 40.0 20.0\n3 30.0 10.0 10.0 10.0\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")


def test_cub_items_by_hand(tmp_path):
    make_cub(tmp_path)
    data = CubDataset(root=str(tmp_path), train=True, crop_size=8, mean=[0.0] * 3, std=[1.0] * 3)
    assert data.classes == ["001.Albatross", "002.Auklet"] and len(data) == 2
    item = data[1]
    assert item["clip"].shape == (3, 1, 8, 8) and item["labels"].tolist() == [1]
    # (30, 10, w 10, h 10) on 40x20: x1 = 30/40, y1 = 10/20, x2 = 40/40, y2 = 20/20.
    np.testing.assert_allclose(item["boxes_norm"].numpy(), [[0.75, 0.5, 1.0, 1.0]])
    np.testing.assert_allclose(item["boxes"].numpy(), [[6, 4, 8, 8]])
    # the WSOL box as wsolevaluation rounds it: int(v * 8 / W) of x, y, x + w, y + h, the end inclusive
    assert item["gt_boxes"].dtype == np.int64 and item["gt_boxes"].tolist() == [[6, 4, 8, 8]]
    assert item["mask"].sum() == 8 and abs(float(item["clip"].mean()) * 255 - 70) < 3


def test_cub_bad_files_name_file_and_line(tmp_path):
    make_cub(tmp_path)
    (tmp_path / "bounding_boxes.txt").write_text("1 10.0 5.0 20.0 10.0\n2 0.0 0.0 40.0\n")
    with pytest.raises(DataError, match=r"bounding_boxes.txt:2: expected 5"):
        read_cub(str(tmp_path))
    make_cub(tmp_path)
    (tmp_path / "images" / "002.Auklet" / "b_1.jpg").write_bytes(b"broken")
    data = CubDataset(root=str(tmp_path), train=True, crop_size=8, mean=[0.0] * 3, std=[1.0] * 3)
    with pytest.raises(DataError, match="cannot read image .*b_1.jpg"):
        data[1]


def test_wsol_box_rounding_keeps_exact_integers(tmp_path):
    # y = 31 on a 112-row image at 224: 31 * 224 / 112 = 62.0; the float32 route gave 61.999996 -> 61
    assert wsol_gt_box((10.0, 31.0, 20.0, 50.0), 40, 112, 224).tolist() == [[56, 62, 168, 162]]
    make_cub(tmp_path)
    (tmp_path / "bounding_boxes.txt").write_text("1 10.0 31.0 20.0 50.0\n2 0.0 0.0 40.0 20.0\n3 30.0 10.0 10.0 10.0\n")
    write_jpegs(tmp_path / "images" / "001.Albatross", ["a_1.jpg"], size=(40, 112), values=[50])
    data = CubDataset(root=str(tmp_path), train=True, crop_size=224, mean=[0.0] * 3, std=[1.0] * 3)
    assert data[0]["gt_boxes"].tolist() == [[56, 62, 168, 162]]
