"""ACT ground-truth pickles: round trip, Python-2 style latin1 load, clear errors."""

import pickle

import numpy as np
import pytest

from stal.formats.act import ActAnnotations, ActFormatError, read_act_pickle, write_act_pickle


def _annotations() -> ActAnnotations:
    tube = np.array([[1, 10, 20, 50, 80], [2, 11, 21, 51, 81]], dtype=np.float32)
    return ActAnnotations(
        labels=["Run", "Jump"],
        train_videos=[["Run/a"]], test_videos=[["Jump/b"]],
        nframes={"Run/a": 3, "Jump/b": 2},
        resolution={"Run/a": (120, 160), "Jump/b": (120, 160)},
        gttubes={"Run/a": {0: [tube]}, "Jump/b": {1: [tube]}},
    )


def test_round_trip(tmp_path):
    path = tmp_path / "GT.pkl"
    write_act_pickle(path, _annotations())
    act = read_act_pickle(path)
    assert act.labels == ["Run", "Jump"]
    assert act.videos(split=1, train=True) == ["Run/a"]
    assert act.video_label("Jump/b") == 1
    np.testing.assert_array_equal(act.gttubes["Run/a"][0][0][:, 0], [1, 2])
    assert act.resolution["Run/a"] == (120, 160)


def test_wrong_structure_names_file_and_key(tmp_path):
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump([1, 2, 3], f, protocol=2)
    with pytest.raises(ActFormatError, match="bad.pkl: top level is list"):
        read_act_pickle(path)
    data = {"labels": ["a"], "gttubes": {"v": {0: [np.zeros((2, 4))]}}, "nframes": {"v": 2},
            "resolution": {"v": (10, 10)}, "train_videos": [["v"]], "test_videos": [[]]}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(ActFormatError, match=r"gttubes\['v'\]\[0\]\[0\] has shape \(2, 4\)"):
        read_act_pickle(path)
    del data["nframes"]
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(ActFormatError, match="missing keys \\['nframes'\\]"):
        read_act_pickle(path)
