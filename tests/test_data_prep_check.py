"""data_prep/check_dataset.py on tiny prepared datasets: clean ones pass, each defect is named."""

from stal.cli import check_dataset
from stal.cli import ucf24_from_act
from stal.cli import videos_to_ava
from test_data_act import _make
from test_data_ava import _own_videos
from test_data_cub import make_cub


def test_ava_clean_then_each_defect(tmp_path, capsys):
    _own_videos(tmp_path)
    root = tmp_path / "mine"
    videos_to_ava.main(["--videos", str(tmp_path / "videos"), "--annotations", str(tmp_path / "boxes.csv"),
                        "--out", str(root), "--fps", "10", "--val-videos", "cam3", "--workers", "1"])
    capsys.readouterr()
    args = ["ava", "--root", str(root), "--fps", "10"]
    assert check_dataset.main(args) == 0
    out = capsys.readouterr().out
    assert "keyframes: 4" in out and "frames: 90" in out and "0 errors, 0 warnings" in out

    train = root / "annotations" / "ava_train_v2.2.csv"
    train.write_text(train.read_text() + "cam1,0901,0.1,0.1,0.5,0.5,1\ncam2,0950,0.1,0.1,0.5,0.5,1,0\n")
    (root / "frames" / "cam1" / "cam1_000011.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "frames" / "cam2" / "cam2_000030.jpg").unlink()  # the last: cam2 is shorter
    (root / "frames" / "cam3" / "cam3_000005.jpg").unlink()  # a gap
    assert check_dataset.main(args) == 1
    out = capsys.readouterr().out
    assert "ava_train_v2.2.csv:5: 7 columns" in out
    assert "keyframe cam2,0950 is frame index 500; cam2 has 29 frames" in out
    assert "frame_lists/train.csv: cam2 lists 30 frames; its folder has 29" in out
    assert "cam3_000005.jpg is missing" in out
    assert "cam1_000011.jpg: unreadable image" in out

    (root / "annotations" / videos_to_ava.FILES["labelmap"]).unlink()
    assert check_dataset.main(args) == 1
    assert "error: label map:" in capsys.readouterr().out


def test_ucf24_and_cub(tmp_path, capsys):
    _make(tmp_path / "ucf")
    args = ["ucf24", "--root", str(tmp_path / "ucf")]
    assert check_dataset.main(args) == 1
    assert "run python data_prep/ucf24_from_act.py" in capsys.readouterr().out
    ucf24_from_act.main(["--root", str(tmp_path / "ucf")])
    capsys.readouterr()
    assert check_dataset.main(args) == 0
    assert "annotated frames: 15" in capsys.readouterr().out
    make_cub(tmp_path / "cub")
    (tmp_path / "cub" / "bounding_boxes.txt").write_text("1 10.0 5.0 20.0 10.0\n2 0.0 0.0 40.0 20.0\n3 30.0 10.0 20.0 10.0\n")
    assert check_dataset.main(["cub", "--root", str(tmp_path / "cub")]) == 1
    out = capsys.readouterr().out
    assert "train images: 2" in out and "image id 3 box (30.0, 10.0, 20.0, 10.0) exceeds the 40x20 image" in out
