"""AVA: a tiny native-format dataset from PyAV-encoded videos, through every AVA data_prep tool,
loaded by AvaKeyframeDataset; keyframe indices, frame counts and boxes checked by hand; then
tools/train_net.py trains and evaluates on it with configs/ava_guided.yaml."""

import json
import os
import pickle

import numpy as np
import pytest

from stal.cli import ava_frame_lists
from stal.cli import extract_frames
from stal.cli import train_net
from stal.cli import videos_to_ava
from _data_fixtures import grey, write_video
from stal.data.ava import AvaKeyframeDataset
from stal.formats.ava import read_ava_csv, read_box_list, read_frame_list, read_labelmap
from stal.errors import DataError

MEAN, STD = [0.0] * 3, [1.0] * 3


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    """Two 906 s movies at 1 fps; AVA extraction over [900, 905) s at 4 fps (20 frames each)."""
    root = tmp_path_factory.mktemp("ava")
    (root / "videos").mkdir()
    for name in ("movA", "movB"):
        write_video(root / "videos" / f"{name}.mp4", frames=906, fps=1)
    assert extract_frames.main(["--videos", str(root / "videos"), "--out", str(root / "frames"), "--fps", "4",
                                "--start", "900", "--duration", "5", "--workers", "1"]) == 0
    ann = root / "annotations"
    ann.mkdir()
    (ann / "gt.csv").write_text(
        "movA,0902,0.125,0.250,0.500,1.000,3,0\n"
        "movA,0902,0.125,0.250,0.500,1.000,1,0\n"   # same person, second action
        "movA,0902,0.500,0.000,1.000,0.500,2,1\n"
        "movA,0903,0.000,0.000,0.250,0.250,2,0\n"
        "movB,0904,0.250,0.250,0.750,0.750,1,0\n")
    (ann / "labelmap.pbtxt").write_text('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 2\n}\n'
                                        'item {\n  name: "c"\n  id: 3\n}\n')
    return root


def _dataset(root, table, **kw):
    args = dict(frame_dir=str(root / "frames"), table=table, fps=4, num_frames=3, sampling_rate=2,
                crop_size=16, mean=MEAN, std=STD)
    return AvaKeyframeDataset(**{**args, **kw})


def test_keyframe_index_clip_and_boxes_by_hand(ava_root):
    table = read_ava_csv(ava_root / "annotations" / "gt.csv")
    data = _dataset(ava_root, table, num_classes=3, excluded={("movA", 903)})
    assert [(v, s) for v, s, _ in data.keyframes] == [("movA", 902), ("movB", 904)]
    assert data.keyframe_index(902) == 8 and data._frame_count("movA") == 20
    item = data[0]
    # Clip indices 8 + (-1, 0, 1) * 2 = 6, 8, 10 -> times 901.5, 902, 902.5 -> nearest 1-fps
    # source frames 901 (tie: earlier), 902, 902 (tie: earlier).
    values = (item["clip"].mean(dim=(0, 2, 3)) * 255).numpy()
    np.testing.assert_allclose(values, [grey(901), grey(902), grey(902)], atol=4)
    np.testing.assert_allclose(item["boxes_norm"].numpy(), [[0.125, 0.25, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5]])
    np.testing.assert_allclose(item["boxes"].numpy(), [[2, 4, 8, 16], [8, 0, 16, 8]])
    np.testing.assert_array_equal(item["labels"].numpy(), [[1, 0, 1], [0, 1, 0]])
    assert item["source_masks"].shape == (2, 3, 16, 16) and item["mask"][0, 4:16, 2:8].min() == 1
    # Keyframe near the end: indices 16 + (-2, 0, 2) clamp to the last frame (19).
    last = _dataset(ava_root, table, num_frames=3, sampling_rate=4)
    assert last.load_clip("movB", 904).shape == (3, 16, 16, 3)


def test_frame_lists_tool(ava_root):
    out = ava_root / "frame_lists"
    assert ava_frame_lists.main(["--frames", str(ava_root / "frames"), "--annotations",
                                 str(ava_root / "annotations"), "--out", str(out), "--split", "train=gt.csv"]) == 0
    lines = (out / "train.csv").read_text().splitlines()
    assert lines[0] == "original_vido_id video_id frame_id path labels"
    assert lines[1] == 'movA 0 0 movA/movA_000001.jpg ""' and lines[21] == 'movB 1 0 movB/movB_000001.jpg ""'
    assert {v: len(p) for v, p in read_frame_list(out / "train.csv").items()} == {"movA": 20, "movB": 20}


def test_missing_frames_and_unreadable_jpeg_are_clear_errors(ava_root, tmp_path):
    table = read_ava_csv(ava_root / "annotations" / "gt.csv")
    frames = tmp_path / "frames"
    (frames / "movA").mkdir(parents=True)
    for i in range(1, 21):
        (frames / "movA" / f"movA_{i:06d}.jpg").write_bytes(b"not a jpeg")
    data = _dataset(ava_root, table, frame_dir=str(frames))
    with pytest.raises(DataError, match="cannot read frame .*movA_000007.jpg"):
        data[0]
    with pytest.raises(DataError, match="movB.*does not exist"):
        data[2]


def _own_videos(root):
    """Your own videos: 3 s at 10 fps, 40x20 pixels, and a box file in pixels."""
    (root / "videos").mkdir()
    for name in ("cam1", "cam2", "cam3"):
        write_video(root / "videos" / f"{name}.mp4", frames=30, fps=10, size=(40, 20))
    (root / "boxes.csv").write_text(
        "video,time,x1,y1,x2,y2,action\n"
        "cam1,1,10,5,30,20,wave\n"
        "cam1,1,10,5,30,20,talk\n"
        "cam1,2,0,0,20,10,talk\n"
        "cam2,1,20,0,40,20,wave\n"
        "cam3,1,4,2,36,18,talk\n")


def test_videos_to_ava_by_hand(tmp_path):
    _own_videos(tmp_path)
    out = tmp_path / "mine"
    assert videos_to_ava.main(["--videos", str(tmp_path / "videos"), "--annotations", str(tmp_path / "boxes.csv"),
                               "--out", str(out), "--fps", "10", "--val-videos", "cam3", "--workers", "1"]) == 0
    ann = out / "annotations"
    assert read_labelmap(ann / videos_to_ava.FILES["labelmap"]) == {1: "talk", 2: "wave"}
    train = read_ava_csv(ann / "ava_train_v2.2.csv")
    assert train.timestamp.tolist() == [901, 901, 902, 901]
    np.testing.assert_allclose(train.boxes, [[0.25, 0.25, 0.75, 1.0]] * 2 + [[0, 0, 0.5, 0.5], [0.5, 0, 1, 1]])
    assert train.action.tolist() == [2, 1, 1, 2]
    val = read_ava_csv(ann / "ava_val_predicted_boxes.csv")
    np.testing.assert_allclose(val.boxes, [[0.1, 0.1, 0.9, 0.9]])
    assert len(os.listdir(out / "frames" / "cam1")) == 31  # 3 s x 10 fps + marker
    assert list(read_frame_list(out / "frame_lists" / "val.csv")) == ["cam3"]
    data = AvaKeyframeDataset(frame_dir=str(out / "frames"), table=train, fps=10, num_frames=1, sampling_rate=1,
                              crop_size=8, mean=MEAN, std=STD, num_classes=2)
    # AVA second 902 of cam1 is video time 2 s: frame index 20, source frame 20.
    np.testing.assert_allclose(float(data[1]["clip"].mean()) * 255, grey(20), atol=4)


def test_videos_to_ava_bad_box_file(tmp_path, capsys):
    _own_videos(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("video,time,x1,y1,x2,y2,action\ncam1,1,10,5,30,20,wave\ncam1,1.5,10,5,30,20\n")
    args = ["--videos", str(tmp_path / "videos"), "--annotations", str(bad), "--out", str(tmp_path / "o")]
    assert videos_to_ava.main(args) == 2
    assert "bad.csv:3: expected 7 or 8 columns" in capsys.readouterr().err
    bad.write_text("video,time,x1,y1,x2,y2,action\ncam1,1,10,5,50,20,wave\n")
    assert videos_to_ava.main(args) == 2
    assert "bad.csv:2: box" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_ava_guided_config_trains_and_evaluates(repo_root, tmp_path):
    """The acceptance run: configs/ava_guided.yaml on a videos_to_ava dataset, 1 iteration."""
    _own_videos(tmp_path)
    out = tmp_path / "mine"
    videos_to_ava.main(["--videos", str(tmp_path / "videos"), "--annotations", str(tmp_path / "boxes.csv"),
                        "--out", str(out), "--fps", "10", "--val-videos", "cam3", "--workers", "1"])
    # Person boxes for the test split from an mmaction2-style proposal pickle.
    with open(out / "annotations" / "proposals.pkl", "wb") as f:
        pickle.dump({"cam3,0901": np.array([[0.1, 0.1, 0.9, 0.9, 0.95], [0.0, 0.0, 0.2, 0.2, 0.5]])}, f)
    opts = ["AVA.FRAME_DIR", str(out / "frames"), "AVA.ANNOTATION_DIR", str(out / "annotations"), "AVA.FPS", "10",
            "AVA.TEST_PREDICT_BOX_LISTS", "['proposals.pkl']",
            "OUTPUT_DIR", str(tmp_path / "run"), "MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2",
            "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "2", "DATA.SAMPLING_RATE", "2", "TRAIN.BATCH_SIZE", "2",
            "TRAIN.MAX_ITERS", "1", "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "2"]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", "ava_guided.yaml")] + opts) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and set(metrics["per_class_AP"]) == {"1", "2"}
    det = read_ava_csv(tmp_path / "run" / "detections.csv")
    assert len(det) == 2  # one box above DETECTION_SCORE_THRESH 0.9, x 2 classes


def test_proposal_pickle_reader(tmp_path):
    path = tmp_path / "p.pkl"
    with open(path, "wb") as f:
        pickle.dump({"vid_1,0902": np.array([[0.1, 0.2, 0.3, 0.4, 0.9]]), "vid_1,0903": np.zeros((0, 5))}, f)
    table = read_box_list(path)
    assert table.video.tolist() == ["vid_1"] and table.timestamp.tolist() == [902]
    np.testing.assert_allclose(table.extra, [0.9]) and np.testing.assert_array_equal(table.action, [-1])
    with open(path, "wb") as f:
        pickle.dump({"vid_1,0902": np.zeros((2, 4))}, f)
    with pytest.raises(DataError, match=r"p.pkl: \['vid_1,0902'\] has shape \(2, 4\); expected \(N, 5\)"):
        read_box_list(path)


def test_action_ids_beyond_num_classes_are_an_error(ava_root):
    table = read_ava_csv(ava_root / "annotations" / "gt.csv")
    with pytest.raises(DataError, match=r"1 rows have action ids outside 1..2 \(first: movA,0902 action 3\)"):
        _dataset(ava_root, table, num_classes=2)


def test_clips_straight_from_the_videos_match_the_extracted_frames(ava_root):
    table = read_ava_csv(ava_root / "annotations" / "gt.csv")
    frames = _dataset(ava_root, table, num_frames=4, sampling_rate=3)
    videos = _dataset(ava_root, table, num_frames=4, sampling_rate=3, video_dir=str(ava_root / "videos"))
    for second in (902, 903):
        np.testing.assert_allclose(videos.load_clip("movA", second), frames.load_clip("movA", second), atol=3 / 255)
    # Indices before the first frame are clamped to it in both (8 - 2 * 6 < 0).
    early = dict(num_frames=3, sampling_rate=6)
    np.testing.assert_allclose(_dataset(ava_root, table, video_dir=str(ava_root / "videos"), **early).load_clip("movA", 902),
                               _dataset(ava_root, table, **early).load_clip("movA", 902), atol=3 / 255)
    with pytest.raises(DataError, match="no video file for 'movC'"):
        videos.load_clip("movC", 902)


def test_ava_config_reads_clips_from_the_videos(repo_root, ava_root, tmp_path):
    """AVA.VIDEO_DIR: no frame folder at all, clips decoded from the AVA movies."""
    ann = ava_root / "annotations"
    opts = ["AVA.VIDEO_DIR", str(ava_root / "videos"), "AVA.FRAME_DIR", str(tmp_path / "no_frames"),
            "AVA.ANNOTATION_DIR", str(ann), "AVA.FPS", "4", "AVA.TRAIN_GT_BOX_LISTS", "['gt.csv']",
            "AVA.GROUNDTRUTH_FILE", "gt.csv", "AVA.TEST_PREDICT_BOX_LISTS", "['gt.csv']",
            "AVA.LABEL_MAP_FILE", "labelmap.pbtxt", "AVA.DETECTION_SCORE_THRESH", "0.0",
            "OUTPUT_DIR", str(tmp_path / "run"), "MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2",
            "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "2", "TRAIN.BATCH_SIZE", "2", "TRAIN.MAX_ITERS", "1",
            "SOLVER.MAX_EPOCH", "1", "TEST.BATCH_SIZE", "2", "GUIDANCE.ENABLE", "False"]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", "ava_baseline.yaml")] + opts) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_class_AP"]) == {"1", "2", "3"}
