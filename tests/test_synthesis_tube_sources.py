"""Tube sources of build_tube_bank.py: labelme / COCO polygons, AVA boxes, demo actors."""

import json

import numpy as np
import pytest
from PIL import Image

from stal.synthesis.tube_bank import TubeBank


def _image(path, h=40, w=50):
    img = np.zeros((h, w, 3), np.uint8)
    img[10:30, 20:30] = (200, 50, 50)
    Image.fromarray(img).save(path)
    return img


def test_labelme_polygons_become_one_frame_tubes(tmp_path, capsys):
    from stal.cli import build_tube_bank

    _image(tmp_path / "a.png")
    doc = {"imagePath": "a.png", "imageHeight": 40, "imageWidth": 50, "shapes": [
        {"label": "person", "points": [[20, 10], [29, 10], [29, 29], [20, 29]], "shape_type": "polygon"},
        {"label": "dog", "points": [[0, 0], [5, 0], [5, 5]], "shape_type": "polygon"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    out = tmp_path / "bank"
    assert build_tube_bank.main(["--out", str(out), "--labelme", str(tmp_path / "a.json")]) == 0
    bank = TubeBank(str(out))
    assert len(bank) == 1 and bank[0].rgba.shape == (1, 20, 10, 4) and bank[0].labels == [0]
    assert (bank[0].rgba[0, ..., 3] == 255).all() and (bank[0].rgba[0, ..., 0] == 200).all()
    # Declared size differs from the image: an error naming the JSON file.
    doc["imageHeight"] = 41
    (tmp_path / "b.json").write_text(json.dumps(doc))
    assert build_tube_bank.main(["--out", str(tmp_path / "bank2"), "--labelme", str(tmp_path / "b.json")]) == 2
    assert "b.json: mask and frame size mismatch" in capsys.readouterr().err


def test_coco_polygons(tmp_path):
    from stal.cli import build_tube_bank

    _image(tmp_path / "a.png")
    doc = {"images": [{"id": 7, "file_name": "a.png", "height": 40, "width": 50}],
           "categories": [{"id": 1, "name": "person"}],
           "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "segmentation": [[20, 10, 29, 10, 29, 29, 20, 29]]}]}
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    out = tmp_path / "bank"
    assert build_tube_bank.main(["--out", str(out), "--coco", str(tmp_path / "coco.json"), "--images", str(tmp_path)]) == 0
    assert TubeBank(str(out))[0].rgba.shape == (1, 20, 10, 4)


@pytest.mark.parametrize("feather", [0, 3])
def test_ava_boxes_become_box_tubes_with_multi_labels(tmp_path, feather):
    from stal.cli import build_tube_bank
    from stal.formats.ava import write_labelmap

    frames = tmp_path / "frames" / "vid1"
    frames.mkdir(parents=True)
    for i in range(1, 80):
        Image.fromarray(np.full((30, 40, 3), i, np.uint8)).save(frames / f"vid1_{i:06d}.jpg")
    (tmp_path / "gt.csv").write_text("vid1,902,0.25,0.2,0.75,0.8,2,0\nvid1,902,0.25,0.2,0.75,0.8,3,0\n")
    write_labelmap(str(tmp_path / "map.pbtxt"), {1: "stand", 2: "walk", 3: "talk"})
    out = tmp_path / "bank"
    assert build_tube_bank.main(["--out", str(out), "--ava-csv", str(tmp_path / "gt.csv"), "--frames",
                                 str(tmp_path / "frames"), "--labelmap", str(tmp_path / "map.pbtxt"),
                                 "--fps", "30", "--num-frames", "8", "--feather", str(feather)]) == 0
    bank = TubeBank(str(out))
    tube = bank[0]
    assert bank.classes == ["stand", "walk", "talk"] and tube.labels == [1, 2]
    assert tube.rgba.shape == (8, 18, 20, 4)
    alpha = tube.rgba[..., 3]
    assert alpha[:, 9, 10].min() == 255 and (alpha[:, 0, 0].max() == 255) == (feather == 0)


def test_demo_actors_bank(tmp_path):
    from stal.cli import build_tube_bank

    assert build_tube_bank.main(["--out", str(tmp_path / "bank"), "--demo", "1", "--num-frames", "6"]) == 0
    bank = TubeBank(str(tmp_path / "bank"))
    assert len(bank) == 4 and sorted(bank[i].labels[0] for i in range(4)) == [0, 1, 2, 3]
