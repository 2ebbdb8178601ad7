"""stal.io.safe_pickle: every pickle reader refuses code, and real ACT / mmaction2 pickles load."""

import os
import pickle

import numpy as np
import pytest

from stal.cli import eval_frame_map
from stal.cli import ucf24_from_act
from stal.errors import DataError
from stal.formats.act import ActFormatError, read_act_pickle
from stal.formats.ava import AvaFormatError, read_box_list, read_proposals_pickle
from stal.io.safe_pickle import load_pickle


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _act_dict(extra=None):
    data = {"labels": ["Run"], "gttubes": {"Run/a": {0: [np.array([[1, 0, 0, 5, 5.0]], np.float32)]}},
            "nframes": {"Run/a": 1}, "resolution": {"Run/a": (10, 10)}, "train_videos": [["Run/a"]],
            "test_videos": [["Run/a"]]}
    data.update(extra or {})
    return data


def _write(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def _readers(tmp_path):
    """name -> call(path) for every place that reads a pickle a user passes in."""
    gt_csv = tmp_path / "det.csv"
    gt_csv.write_text("Run/a,1,0,0.0,0.0,0.5,0.5,0.9\n")
    return {
        "load_pickle": lambda p: load_pickle(p),
        "read_act_pickle": read_act_pickle,
        "read_proposals_pickle": read_proposals_pickle,
        "read_box_list": read_box_list,  # AVA.TEST_PREDICT_BOX_LISTS entries ending in .pkl
        "ucf24_from_act": lambda p: ucf24_from_act.main(["--root", str(tmp_path), "--pkl", p]),
        "eval_frame_map": lambda p: eval_frame_map.main(["--format", "ucf24", "--gt", p, "--det", str(gt_csv),
                                                        "--out", str(tmp_path / "result.json")]),
    }


@pytest.mark.parametrize("reader", ["load_pickle", "read_act_pickle", "read_proposals_pickle", "read_box_list",
                                    "ucf24_from_act", "eval_frame_map"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_payload_is_refused_and_nothing_runs(tmp_path, capsys, reader, protocol):
    marker = tmp_path / "created-by-the-pickle"
    path = _write(tmp_path / "evil.pkl", _act_dict({"nframes": _Payload(marker)}), protocol)
    call = _readers(tmp_path)[reader]
    try:
        status = call(path)
    except DataError as exc:
        message = str(exc)
    else:  # the command-line tools print the error and exit 2
        assert status == 2
        message = capsys.readouterr().err.strip()
    assert not marker.exists(), "code from the pickle ran"
    assert "evil.pkl" in message and "refused" in message and "mkdir" in message
    assert "\n" not in message.strip() and "Traceback" not in message


def test_act_pickle_written_by_numpy1_and_protocol2_loads(tmp_path):
    """numpy 1 names its array rebuilders numpy.core.*; bytes come through _codecs.encode."""
    raw = pickle.dumps(_act_dict({"extra_bytes": b"\x00\xff"}), protocol=2).replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray" in raw and b"_codecs" in raw
    (tmp_path / "GT.pkl").write_bytes(raw)
    act = read_act_pickle(tmp_path / "GT.pkl")
    np.testing.assert_array_equal(act.gttubes["Run/a"][0][0], [[1, 0, 0, 5, 5]])
    assert load_pickle(tmp_path / "GT.pkl")["extra_bytes"] == b"\x00\xff"


def test_python2_str_pickle_loads_as_latin1(tmp_path):
    """A Python 2 pickle: str as SHORT_BINSTRING bytes (here 'caf\\xe9'), read as latin1 text."""
    raw = b"\x80\x02}q\x00(U\x06labelsq\x01]q\x02U\x04caf\xe9q\x03aU\x01nK\x07u."
    (tmp_path / "py2.pkl").write_bytes(raw)
    assert load_pickle(tmp_path / "py2.pkl") == {"labels": ["caf\xe9"], "n": 7}


def test_proposals_with_numpy_scalars_load(tmp_path):
    boxes = np.array([[0.1, 0.1, 0.5, 0.5, 0.9]], np.float32)
    path = _write(tmp_path / "props.pkl", {"vid,0902": boxes, "vid,0903": list(boxes)}, protocol=4)
    table = read_proposals_pickle(path)
    assert len(table) == 2 and np.allclose(table.extra, 0.9)
    assert load_pickle(_write(tmp_path / "s.pkl", {"s": np.float64(2.5), "d": np.dtype("f4")}, 5)) == \
        {"s": 2.5, "d": np.dtype("f4")}


@pytest.mark.parametrize("content,expected", [
    (b"", "not a readable pickle"),
    (pickle.dumps(_act_dict(), protocol=2)[:40], "not a readable pickle"),
    (b"not a pickle at all", "not a readable pickle"),
])
def test_broken_pickles_are_one_line_errors(tmp_path, content, expected):
    (tmp_path / "broken.pkl").write_bytes(content)
    with pytest.raises(ActFormatError, match=f"broken.pkl: {expected}") as info:
        read_act_pickle(tmp_path / "broken.pkl")
    assert "\n" not in str(info.value)
    with pytest.raises(AvaFormatError, match="missing.pkl: file not found"):
        read_proposals_pickle(tmp_path / "missing.pkl")
