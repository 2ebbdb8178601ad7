"""UCF101-24 / JHMDB: ACT pickles + rgb-images -> data_prep index -> per-frame dataset (by hand)."""

import pickle

import numpy as np

from stal.cli import jhmdb_from_act
from stal.cli import ucf24_from_act
from _data_fixtures import grey, write_jpegs
from stal.data.act import act_keyframe_dataset, act_table, index_paths
from stal.formats.act import ActAnnotations, write_act_pickle
from stal.formats.ava import read_ava_csv, read_labelmap

MEAN, STD = [0.0] * 3, [1.0] * 3


def _tube(frames, box):
    return np.array([[f, *box] for f in frames], np.float32)


def _make(root, *, splits=1, missing=()):
    act = ActAnnotations(
        labels=["Run", "Jump"],
        train_videos=[["Run/v1", "Jump/v2"]] * splits, test_videos=[["Run/v3"]] * splits,
        nframes={"Run/v1": 6, "Jump/v2": 6, "Run/v3": 6},
        resolution={v: (24, 32) for v in ("Run/v1", "Jump/v2", "Run/v3")},
        gttubes={"Run/v1": {0: [_tube(range(1, 7), (8, 6, 24, 18))]},
                 "Jump/v2": {1: [_tube(range(2, 5), (0, 0, 16, 12)), _tube([3], (16, 12, 40, 24))]},
                 "Run/v3": {0: [_tube(range(1, 7), (4, 3, 12, 9))]}},
    )
    for video in act.nframes:
        if video not in missing:
            write_jpegs(root / "rgb-images" / video, [f"{i:05d}.jpg" for i in range(1, 7)])
    name = "UCF101v2-GT.pkl" if splits == 1 else "JHMDB-GT.pkl"
    write_act_pickle(root / name, act)
    return act


def test_ucf24_index_and_dataset_by_hand(tmp_path):
    _make(tmp_path)
    assert ucf24_from_act.main(["--root", str(tmp_path), "--train-every", "2"]) == 0
    paths = index_paths(str(tmp_path), 1)
    train = read_ava_csv(paths["train"])
    # every 2nd frame (1, 3, 5): v1 frames 1, 3, 5; v2 tube 0 frame 3, tube 1 frame 3 (clipped box).
    assert list(zip(train.video, train.timestamp.tolist())) == [
        ("Run/v1", 1), ("Run/v1", 3), ("Run/v1", 5), ("Jump/v2", 3), ("Jump/v2", 3)]
    np.testing.assert_allclose(train.boxes[0], [0.25, 0.25, 0.75, 0.75])
    np.testing.assert_allclose(train.boxes[4], [0.5, 0.5, 1.0, 1.0])
    assert train.action.tolist() == [1, 1, 1, 2, 2] and train.extra.tolist() == [0, 0, 0, 0, 1]
    assert len(read_ava_csv(paths["test"])) == 6 and read_labelmap(paths["labelmap"]) == {1: "Run", 2: "Jump"}
    data = act_keyframe_dataset(frame_dir=paths["frames"], table=train, num_frames=3, sampling_rate=1,
                                crop_size=16, mean=MEAN, std=STD, num_classes=2)
    assert len(data) == 4
    item = data[3]  # Jump/v2 frame 3: clip frames 2, 3, 4 = files 00002..00004 (grey(1..3))
    assert item["key"] == ("Jump/v2", 3) and item["labels"].tolist() == [1, 1]
    np.testing.assert_allclose((item["clip"].mean(dim=(0, 2, 3)) * 255).numpy(), [grey(1), grey(2), grey(3)], atol=4)
    np.testing.assert_allclose(item["boxes"].numpy(), [[0, 0, 8, 8], [8, 8, 16, 16]])


def test_jhmdb_split_and_missing_frames_are_reported(tmp_path, capsys):
    _make(tmp_path, splits=3, missing=("Jump/v2",))
    assert jhmdb_from_act.main(["--root", str(tmp_path), "--split", "3"]) == 2
    out = capsys.readouterr().out
    assert "skipped" in out and "Jump/v2: frame folder missing" in out
    assert set(read_ava_csv(index_paths(str(tmp_path), 3)["train"]).video) == {"Run/v1"}
    assert jhmdb_from_act.main(["--root", str(tmp_path), "--split", "4"]) == 2
    assert "split 4 requested; the file has splits 1..3" in capsys.readouterr().err


def test_wrong_pickle_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "rgb-images").mkdir()
    with open(tmp_path / "UCF101v2-GT.pkl", "wb") as f:
        pickle.dump({"labels": ["a"], "gttubes": []}, f, protocol=2)
    assert ucf24_from_act.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "UCF101v2-GT.pkl: missing keys ['nframes', 'resolution', 'train_videos', 'test_videos']" in err


def test_frames_past_nframes_are_not_training_rows():
    """The parser keeps a tube running past nframes (as ACT's evaluator does); the dataset rows
    stop at the last frame that exists."""
    act = ActAnnotations(labels=["Run"], train_videos=[["Run/v1"]], test_videos=[[]], nframes={"Run/v1": 4},
                         resolution={"Run/v1": (24, 32)}, gttubes={"Run/v1": {0: [_tube(range(2, 8), (8, 6, 24, 18))]}})
    assert act_table(act, videos=["Run/v1"]).timestamp.tolist() == [2, 3, 4]
    assert act_table(act, videos=["Run/v1"], every=2).timestamp.tolist() == [3]
