"""Broken input files, in the real formats, through the commands users run.

One parametrized test over the corpus: each case writes its fixtures under ``in/``, runs a tool's
``main`` in-process and checks the exit status, that the error is ONE line naming the file
(and the line, where one applies), that no traceback is printed, that the files already there
are byte-identical afterwards and that nothing from an input ran (pickle / YAML payloads try to
create ``in/ran``). Cases of the data-preparation tools and of the evaluator's warnings live in
tests/test_bad_inputs_data_prep.py and tests/test_bad_inputs_eval.py.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from stal.cli import build_background_bank
from stal.cli import eval_frame_map
from stal.cli import test_net
from stal.cli import train_net
from stal.cli import ucf24_from_act
from stal.synthesis.tube_bank import TubeBankWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANT = os.path.join(REPO, "configs", "instant.yaml")
LABELMAP = 'item {\n  name: "walk"\n  id: 1\n}\nitem {\n  name: "wave"\n  id: 2\n}\n'
GT = "vid,0902,0.1,0.1,0.5,0.5,1\nvid,0902,0.1,0.1,0.5,0.5,2\n"
DET = "vid,0902,0.1,0.1,0.5,0.5,1,0.9\n"


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@dataclass
class Case:
    """``make(d)`` writes fixtures under folder ``d`` and returns the tool's argv."""

    tool: object
    make: Callable[[str], list[str]]
    expect: tuple[str, ...]  # substrings of the error line
    code: int = 2


def _w(d: str, name: str, content: str | bytes) -> str:
    path = os.path.join(d, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return path


def _ava_eval(det=DET, gt=GT, labelmap=LABELMAP, extra=()):
    def make(d):
        os.makedirs(os.path.join(d, "out"), exist_ok=True)
        return ["--gt", _w(d, "gt.csv", gt), "--det", _w(d, "det.csv", det), "--labelmap",
                _w(d, "labels.pbtxt", labelmap), "--out", os.path.join(d, "out", "result.json"), *extra]
    return make


def _act_dict(**changes) -> dict:
    data = {"labels": ["Run"], "gttubes": {"Run/a": {0: [np.array([[1, 0, 0, 5, 5.0]], np.float32)]}},
            "nframes": {"Run/a": 1}, "resolution": {"Run/a": (10, 10)}, "train_videos": [["Run/a"]],
            "test_videos": [["Run/a"]]}
    data.update(changes)
    return data


def _act_eval(pkl: Callable[[str], bytes], det="Run/a,1,0,0,5,5,0,0.9\n"):
    def make(d):
        os.makedirs(os.path.join(d, "out"), exist_ok=True)
        return ["--format", "ucf24", "--gt", _w(d, "GT.pkl", pkl(d)), "--det", _w(d, "det.csv", det),
                "--out", os.path.join(d, "out", "result.json")]
    return make


def _train(*opts, cfg=INSTANT):
    def make(d):
        return ["--cfg", cfg if not callable(cfg) else cfg(d), "OUTPUT_DIR", os.path.join(d, "out"),
                "DEMO.ROOT", os.path.join(d, "demo"), *[o(d) if callable(o) else o for o in opts]]
    return make


def _checkpoint(content: Callable[[str], bytes]):
    def make(d):
        path = _w(d, "model.pyth", content(d))
        return ["--cfg", INSTANT, "OUTPUT_DIR", os.path.join(d, "out"), "TEST.CHECKPOINT_FILE_PATH", path]
    return make


def _torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Foreign:  # pickled by reference: a weights-only load must refuse it
    pass


def _other_arch_checkpoint(d) -> bytes:
    return _torch_bytes({"model_state": {"conv.weight": torch.zeros(3, 3)}, "epoch": 1})


def _tube_bank(d, classes) -> str:
    root = os.path.join(d, "bank")
    writer = TubeBankWriter(root, classes=classes)
    writer.add(rgb=np.zeros((4, 8, 8, 3), np.uint8), alpha=np.ones((4, 8, 8), np.uint8) * 255, labels=[0],
               source={"video": "v", "start": 0})
    writer.finish_input("v")
    return root


def _ava_annotations(d) -> str:
    _w(d, "ava/ava_action_list_v2.2_for_activitynet_2019.pbtxt", LABELMAP)
    return os.path.join(d, "ava")


CASES = {
    # --- AVA CSV / label map through tools/eval_frame_map.py -----------------------------------
    "det_short_row": Case(eval_frame_map, _ava_eval(det="vid,0902,0.1,0.1,0.5\n"), ("det.csv:1",)),
    "det_text_in_box": Case(eval_frame_map, _ava_eval(det="vid,0902,0.1,abc,0.5,0.5,1,0.9\n"), ("det.csv:1",)),
    "det_box_reversed": Case(eval_frame_map, _ava_eval(det=DET + "vid,0902,0.6,0.1,0.5,0.5,1,0.8\n"),
                             ("det.csv:2",)),
    "det_box_outside": Case(eval_frame_map, _ava_eval(det="vid,0902,0.1,0.1,1.7,0.5,1,0.9\n"), ("det.csv:1",)),
    "det_score_nan": Case(eval_frame_map, _ava_eval(det="vid,0902,0.1,0.1,0.5,0.5,1,nan\n"), ("det.csv:1",)),
    "det_bad_timestamp": Case(eval_frame_map, _ava_eval(det="vid,09x2,0.1,0.1,0.5,0.5,1,0.9\n"), ("det.csv:1",)),
    "det_not_utf8": Case(eval_frame_map, _ava_eval(det="vid\xff\xfe,0902,0.1,0.1,0.5,0.5,1,0.9\n".encode("latin1")),
                         ("det.csv",)),
    "det_bom_inside_id": Case(eval_frame_map, _ava_eval(det=DET + "v\ufeffid,0902,0.1,0.1,0.5,0.5,1,0.9\n"),
                              ("det.csv:2",)),
    "gt_bad_action": Case(eval_frame_map, _ava_eval(gt="vid,0902,0.1,0.1,0.5,0.5,one\n"), ("gt.csv:1",)),
    "gt_too_many_columns": Case(eval_frame_map, _ava_eval(gt="vid,0902,0.1,0.1,0.5,0.5,1,2,3,4\n"), ("gt.csv:1",)),
    "labelmap_no_id": Case(eval_frame_map, _ava_eval(labelmap='item {\n  name: "walk"\n}\n'), ("labels.pbtxt",)),
    "labelmap_empty": Case(eval_frame_map, _ava_eval(labelmap=""), ("labels.pbtxt",)),
    "labelmap_bad_id": Case(eval_frame_map, _ava_eval(labelmap='item {\n  name: "walk"\n  id: x\n}\n'),
                            ("labels.pbtxt",)),
    "excluded_bad_row": Case(eval_frame_map, _ava_eval(extra=("--excluded", "EXCL")), ("excl.csv:1",)),
    "det_missing": Case(eval_frame_map, lambda d: _ava_eval()(d)[:3] + [os.path.join(d, "none.csv")]
                        + _ava_eval()(d)[4:], ("none.csv",)),
    "det_is_directory": Case(eval_frame_map, lambda d: _ava_eval()(d)[:3] + [d] + _ava_eval()(d)[4:],
                             ("directory",)),
    # --- ACT pickles -------------------------------------------------------------------------
    "act_payload_eval": Case(eval_frame_map, _act_eval(lambda d: pickle.dumps(_act_dict(
        nframes=_Payload(os.path.join(d, "ran"))), protocol=2)), ("GT.pkl", "refused")),
    "act_payload_prepare": Case(ucf24_from_act, lambda d: ["--root", d, "--pkl", _w(d, "GT.pkl", pickle.dumps(
        {"labels": _Payload(os.path.join(d, "ran"))}, protocol=0))], ("GT.pkl", "refused")),
    "act_truncated": Case(eval_frame_map, _act_eval(lambda d: pickle.dumps(_act_dict(), protocol=2)[:50]),
                          ("GT.pkl", "not a readable pickle")),
    "act_top_level_list": Case(eval_frame_map, _act_eval(lambda d: pickle.dumps([1, 2], protocol=2)),
                               ("GT.pkl", "top level is list")),
    "act_tube_shape": Case(eval_frame_map, _act_eval(lambda d: pickle.dumps(_act_dict(
        gttubes={"Run/a": {0: [np.zeros((1, 4))]}}), protocol=2)), ("GT.pkl", "shape")),
    "act_det_short_row": Case(eval_frame_map, _act_eval(lambda d: pickle.dumps(_act_dict(), protocol=2),
                                                        det="Run/a,1,0,0,5\n"), ("det.csv:1",)),
    # --- config files through tools/train_net.py ---------------------------------------------
    "yaml_python_tag": Case(train_net, lambda d: ["--cfg", _w(d, "evil.yaml", (
        f"OUTPUT_DIR: !!python/object/apply:os.mkdir [{os.path.join(d, 'ran')!r}]\n"))], ("evil.yaml",)),
    "yaml_not_mapping": Case(train_net, lambda d: ["--cfg", _w(d, "list.yaml", "- 1\n- 2\n")], ("list.yaml",)),
    "yaml_syntax": Case(train_net, lambda d: ["--cfg", _w(d, "broken.yaml", "TRAIN:\n  BATCH_SIZE: [2\n")],
                        ("broken.yaml",)),
    "yaml_unknown_key": Case(train_net, lambda d: ["--cfg", _w(d, "unknown.yaml", "TRAIN:\n  BATCH_SIZ: 2\n")],
                             ("BATCH_SIZ",)),
    "yaml_wrong_type": Case(train_net, _train("TRAIN.BATCH_SIZE", "two"), ("TRAIN.BATCH_SIZE",)),
    "yaml_missing": Case(train_net, lambda d: ["--cfg", os.path.join(d, "nothing.yaml")], ("nothing.yaml",)),
    "yaml_base_cycle": Case(train_net, lambda d: [_w(d, "b.yaml", "_BASE_: a.yaml\n"), "--cfg",
                                                  _w(d, "a.yaml", "_BASE_: b.yaml\n")][1:], ("a.yaml",)),
    "output_dir_is_file": Case(train_net, lambda d: ["--cfg", INSTANT, "OUTPUT_DIR", _w(d, "taken", "x")],
                               ("OUTPUT_DIR", "taken")),
    "pretrained_random": Case(train_net, _train("MODEL.PRETRAINED", lambda d: _w(d, "w.pyth", np.random.default_rng(256).bytes(256))),
                              ("w.pyth", "not a torch file")),
    "pretrained_foreign_global": Case(train_net, _train("MODEL.PRETRAINED", lambda d: _w(
        d, "w.pyth", _torch_bytes({"model_state": _Foreign()}))), ("w.pyth", "refuses")),
    "pretrained_other_arch": Case(train_net, _train("MODEL.PRETRAINED", lambda d: _w(
        d, "w.pyth", _other_arch_checkpoint(d))), ("w.pyth",)),
    "ava_annotations_missing": Case(train_net, _train("TRAIN.DATASET", "ava", "TEST.DATASET", "ava",
                                                      "AVA.ANNOTATION_DIR", lambda d: os.path.join(d, "no_ava")),
                                    ("no_ava",)),
    "tube_bank_other_classes": Case(train_net, _train(
        "TRAIN.DATASET", "synthesis", "TEST.DATASET", "ava", "SYNTHESIS.TUBE_BANK",
        lambda d: _tube_bank(d, ["run", "jump"]), "AVA.ANNOTATION_DIR", _ava_annotations,
        "AVA.LABEL_MAP_FILE", "ava_action_list_v2.2_for_activitynet_2019.pbtxt", "MODEL.NUM_CLASSES", "2"),
        ("index.json", "do not match the test label map", "'run' vs 'walk'")),
    "tube_bank_index_not_json": Case(train_net, _train(
        "TRAIN.DATASET", "synthesis", "SYNTHESIS.TUBE_BANK", lambda d: os.path.dirname(_w(d, "bank/index.json", "{"))),
        ("index.json",)),
    # --- images through data_prep/build_background_bank.py ----------------------------------
    "image_truncated_jpeg": Case(build_background_bank, lambda d: _background_images(d, "jpeg"),
                                 ("half.jpeg", "truncated")),
    "image_truncated_png": Case(build_background_bank, lambda d: _background_images(d, "png"),
                                ("half.png", "truncated")),
    "image_not_an_image": Case(build_background_bank, lambda d: ["--out", os.path.join(d, "out", "bg"), "--images",
                                                                 _w(d, "fake.jpg", b"GIF89a but not really")],
                               ("fake.jpg",)),
    # --- checkpoints through tools/test_net.py -----------------------------------------------
    "checkpoint_random": Case(test_net, _checkpoint(lambda d: np.random.default_rng(512).bytes(512)), ("model.pyth", "not a torch file")),
    "checkpoint_truncated": Case(test_net, _checkpoint(lambda d: _other_arch_checkpoint(d)[:300]),
                                 ("model.pyth", "truncated")),
    "checkpoint_plain_pickle": Case(test_net, _checkpoint(lambda d: pickle.dumps({"model_state": {}})),
                                    ("model.pyth",)),
    "checkpoint_payload": Case(test_net, _checkpoint(lambda d: _torch_bytes({"model_state": {}, "x": _Payload(
        os.path.join(d, "ran"))})), ("model.pyth", "refuses")),
    "checkpoint_other_arch": Case(test_net, _checkpoint(_other_arch_checkpoint), ("model.pyth",)),
    "checkpoint_not_a_zip_member": Case(test_net, _checkpoint(lambda d: _zip_without_data()), ("model.pyth",)),
}


def _background_images(d: str, fmt: str) -> list[str]:
    """A good image and one cut in half, for the background-bank builder."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    good, half = _w(d, f"good.{fmt}", buf.getvalue()), _w(d, f"half.{fmt}", buf.getvalue()[: len(buf.getvalue()) // 2])
    return ["--out", os.path.join(d, "out", "bg"), "--images", good, half]


def _zip_without_data() -> bytes:
    """A zip archive that is not a torch file (no data.pkl)."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    return buf.getvalue()


def _snapshot(folder: str) -> dict[str, bytes]:
    """Every input file's bytes (``out/``, where the tools write, is left out)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [x for x in dirs if os.path.join(root, x) != os.path.join(folder, "out")]
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return out


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_broken_input_is_one_line_error(tmp_path, capsys, name):
    case = CASES[name]
    d = str(tmp_path / "in")
    os.makedirs(d)
    argv = case.make(d)
    if "EXCL" in argv:  # the exclusions file of its case
        argv[argv.index("EXCL")] = _w(d, "excl.csv", "vid,0902,extra\n")
    before = _snapshot(d)
    try:
        code = case.tool.main(argv)
    except SystemExit as exc:  # argparse-level checks exit directly
        code = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == case.code, err
    assert "Traceback" not in err and len(errors) == 1, err
    for part in case.expect:
        assert part in errors[0], errors[0]
    assert _snapshot(d) == before, "an input file changed"
    assert not os.path.exists(os.path.join(d, "ran")), "code from an input file ran"
    written = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(d, "out")) for f in fs]
    assert not [p for p in written if p.endswith("config.yaml")], "a failed start wrote into OUTPUT_DIR"
