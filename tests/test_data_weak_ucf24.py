"""Weakly supervised UCF101-24 with BatchMix (configs/ucf24_weak_guided.yaml): box tubes and
actor-free backgrounds from a tiny UCF101-24 in the ACT format, the weak batch layout (one
label row per clip, proposals = the actors' boxes), and the real entry point end to end."""

import json
import os

import numpy as np
import pytest
import torch

from stal.cli import build_background_bank
from stal.cli import build_tube_bank
from stal.cli import train_net
from stal.cli import ucf24_from_act
from _data_fixtures import grey, write_jpegs
from stal.formats.act import ActAnnotations, write_act_pickle
from stal.data.batch import collate_train
from stal.data.weak import WeakSynthesisDataset, clip_label
from stal.synthesis import CuboidMix, MixingSynthesizer, PasteSynthesizer, PlacementSpec
from stal.synthesis.paste import ArrayBackgrounds
from stal.synthesis.tube_bank import MemoryTubeBank, TubeBank

NFRAMES = {"Run/v1": 10, "Jump/v2": 10, "Run/v3": 8, "Jump/v4": 8}


def _tube(frames, box):
    return np.array([[f, *box] for f in frames], np.float32)


def _make_ucf24(root, *, v1_box=(8, 6, 24, 18)):
    """Two training videos whose tubes leave 4 frames free each, two test videos; 32x24 frames,
    frame i of every video uniformly grey(i - 1)."""
    act = ActAnnotations(
        labels=["Run", "Jump"], train_videos=[["Run/v1", "Jump/v2"]], test_videos=[["Run/v3", "Jump/v4"]],
        nframes=NFRAMES, resolution={v: (24, 32) for v in NFRAMES},
        gttubes={"Run/v1": {0: [_tube(range(1, 7), v1_box)]},
                 "Jump/v2": {1: [_tube(range(5, 11), (4, 2, 20, 22))]},
                 "Run/v3": {0: [_tube(range(1, 9), (4, 3, 12, 9))]},
                 "Jump/v4": {1: [_tube(range(2, 8), (10, 4, 30, 20))]}})
    for video, n in NFRAMES.items():
        write_jpegs(root / "rgb-images" / video, [f"{i:05d}.jpg" for i in range(1, n + 1)])
    write_act_pickle(root / "UCF101v2-GT.pkl", act)
    assert ucf24_from_act.main(["--root", str(root)]) == 0


def test_banks_from_ucf24_and_weak_config_end_to_end(repo_root, tmp_path):
    root = tmp_path / "ucf24"
    _make_ucf24(root)
    tubes, bg = tmp_path / "tubes", tmp_path / "bg"
    assert build_tube_bank.main(["--ucf24", str(root), "--out", str(tubes), "--num-frames", "4", "--every", "2",
                                 "--feather", "1"]) == 0
    bank = TubeBank(str(tubes))
    assert bank.classes == ["Run", "Jump"] and len(bank) == 6
    # Run/v1 (frames 1-6, label 0): centres at frames 2, 4, 6 (every 2nd, from the 2nd); the
    # window of 4 around a centre stays within the annotated frames. Frame template %05d.jpg.
    sources = [(e["source"]["video"], e["source"]["first_frame"], e["frames"], e["labels"]) for e in bank.entries]
    assert sources == [("Jump/v2", 5, 3, [1]), ("Jump/v2", 6, 4, [1]), ("Jump/v2", 8, 3, [1]),
                       ("Run/v1", 1, 3, [0]), ("Run/v1", 2, 4, [0]), ("Run/v1", 4, 3, [0])]
    run = bank[4].rgba  # Run/v1 frames 2-5, box (8, 6, 24, 18) px: a 12 x 16 canvas
    assert run.shape == (4, 12, 16, 4)
    np.testing.assert_allclose(run[:, 6, 8, 0], [grey(1), grey(2), grey(3), grey(4)], atol=3)
    assert run[:, 6, 8, 3].min() == 255 and run[:, 0, 0, 3].max() < 255  # feathered edge
    # Backgrounds: the frames no tube spans (v1 7-10, v2 1-4), as 0-based [start, stop).
    assert build_background_bank.main(["--ucf24", str(root), "--out", str(bg), "--min-length", "4"]) == 0
    entries = json.loads((bg / "index.json").read_text())["backgrounds"]
    assert [(os.path.basename(e["path"]), e["start"], e["stop"]) for e in entries] == [("v2", 0, 4), ("v1", 6, 10)]

    out = tmp_path / "run"
    opts = ["UCF24.ROOT", str(root), "SYNTHESIS.TUBE_BANK", str(tubes), "SYNTHESIS.BACKGROUND_BANK", str(bg),
            "OUTPUT_DIR", str(out), "MODEL.NUM_CLASSES", "2", "MODEL.ARCH", "small3d_tiny", "MODEL.ROI_SIZE", "2",
            "DATA.CROP_SIZE", "32", "DATA.NUM_FRAMES", "4", "TRAIN.BATCH_SIZE", "2", "SOLVER.MAX_EPOCH", "2",
            "SYNTHESIS.CLIPS_PER_EPOCH", "4", "TEST.BATCH_SIZE", "4", "LOG_PERIOD", "1",
            "SOLVER.WARMUP_EPOCHS", "0.0", "GUIDANCE.WARMUP_EPOCHS", "0.0"]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", "ucf24_weak_guided.yaml")] + opts) == 0
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss_task" in s]
    assert len(steps) == 4 and all(np.isfinite(s["loss"]) for s in steps)
    assert all(s["penalty"] > 0 and s["loss_guidance"] > 0 for s in steps)  # per-source guidance was on
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["frame_mAP"] <= 1.0 and set(metrics["per_class_AP"]) == {"1", "2"}
    # Every test box (8 + 6 frames) was scored on its own, for both classes.
    detections = (out / "detections.csv").read_text().splitlines()
    assert len(detections) == 14 * 2


def _weak_dataset(num_classes=3, length=24):
    """Tubes of 3 classes (one-colour rectangles, class c = colour c), BatchMixed, weak layout."""
    rgbas, labels = [], []
    for c in range(num_classes):
        rgba = np.zeros((4, 10, 6, 4), np.uint8)
        rgba[..., c] = 200
        rgba[..., 3] = 255
        rgbas.append(rgba)
        labels.append([c])
    synth = PasteSynthesizer(
        tubes=MemoryTubeBank(rgbas, labels, classes=["a", "b", "c"][:num_classes]),
        backgrounds=ArrayBackgrounds(np.full((1, 4, 24, 24, 3), 30, np.uint8)),
        placement=PlacementSpec(actors_min=1, actors_max=1, scale_min=0.4, scale_max=0.6), num_frames=4,
        height=24, width=24, num_classes=num_classes, clip_dtype="uint8")
    mixed = MixingSynthesizer(source=synth, mixer=CuboidMix(area_min=0.3, area_max=0.7, num_classes=num_classes,
                                                            keep_sources=True))
    return WeakSynthesisDataset(synthesizer=mixed, length=length, seed=5, num_classes=num_classes,
                                mean=[0.0] * 3, std=[1.0] * 3)


def test_weak_batch_has_one_label_row_per_clip_and_masks_of_the_label_carrier():
    ds = _weak_dataset()
    batch = collate_train([ds[i] for i in range(len(ds))])
    B = len(ds)
    assert batch["labels"].shape == (B,) and batch["source_masks"].shape == (B, 4, 24, 24)
    assert torch.equal(batch["mask"], batch["source_masks"])
    assert set(batch["rois"][:, 0].long().tolist()) <= set(range(B))
    from_second = 0
    for b in range(B):
        s = ds.sample(b)
        alpha, ids = s.provenance.alpha, s.provenance.ids
        t0, t1, y0, y1, x0, x1 = s.info["cuboid_tyx"]
        inside = np.zeros(ids.shape, bool)
        inside[t0:t1, y0:y1, x0:x1] = True
        # Two actors (one per input): actor 1 only outside the cuboid, actor 2 only inside it.
        assert len(alpha) == 2 and not alpha[0][inside].any() and not alpha[1][~inside].any()
        label = int(batch["labels"][b])
        weight = np.bincount(s.labels, weights=alpha.sum(axis=(1, 2, 3)), minlength=3)
        assert weight[label] == weight.max() > 0  # the action with the most visible voxels
        carrier = np.isin(ids, [k + 1 for k in range(2) if s.labels[k] == label])
        # Hard edges: source mask b = exactly the voxels of the source(s) carrying clip b's label.
        assert torch.equal(batch["source_masks"][b] > 0, torch.from_numpy(carrier))
        assert clip_label(s, num_classes=3)[0] == label
        # Proposals: every actor visible at the keyframe, whatever its label.
        visible = int((~np.isnan(s.boxes[:, s.keyframe]).any(1)).sum())
        assert int((batch["rois"][:, 0] == b).sum()) == visible
        from_second += int(s.labels[1] == label and s.labels[0] != label)
    assert 0 < from_second < B  # both sides of the mix label clips in this draw


def test_mil_needs_the_synthesis_dataset(repo_root, tmp_path):
    from stal.config import load_cfg
    from stal.engine.builders import build_train_loader
    from stal.errors import ConfigError

    cfg = load_cfg(os.path.join(repo_root, "configs", "instant.yaml"), ["MODEL.MIL_POOLING", "max"])
    with pytest.raises(ConfigError, match="TRAIN.DATASET synthesis"):
        build_train_loader(cfg)


def test_bad_input_is_one_error_naming_the_file(repo_root, tmp_path, capsys):
    # No index yet: the tube builder names the missing file and the command that writes it.
    root = tmp_path / "ucf24"
    assert build_tube_bank.main(["--ucf24", str(root), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(root / "rgb-images") in err[0] and "ucf24_from_act.py" in err[0]
    # A zero-width tube box: the error names the index CSV, the video, frame and tube.
    _make_ucf24(root, v1_box=(8, 6, 8, 18))
    assert build_tube_bank.main(["--ucf24", str(root), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_split1.csv: Run/v1," in err[0] and "empty tube box" in err[0], err
    # The weak config without its data: the missing index and the command, before training.
    opts = ["UCF24.ROOT", str(tmp_path / "none"), "OUTPUT_DIR", str(tmp_path / "o")]
    assert train_net.main(["--cfg", os.path.join(repo_root, "configs", "ucf24_weak_guided.yaml")] + opts) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "none" / "rgb-images") in err[0] and "ucf24_from_act.py" in err[0], err


def test_clip_level_flag_is_read_through_a_ddp_style_wrapper():
    """Under torchrun the model is a DistributedDataParallel whose ``module`` is the MILDetector;
    the guidance rows must still be matched to clips, not to the proposals' batch indices."""
    import torch
    from torch import nn

    from stal.guidance.objective import Objective

    class Wrapper(nn.Module):  # what DDP looks like to the objective: the real model in .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    class ClipLevel(nn.Module):
        clip_level = True

    batch = {"rois": torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 2, 2], [1, 0, 0, 1, 1]], dtype=torch.float32)}
    rows = Objective._batch_index(Wrapper(ClipLevel()), batch, 2, torch.device("cpu"))
    assert rows.tolist() == [0, 1]
    per_box = Objective._batch_index(Wrapper(nn.Identity()), batch, 3, torch.device("cpu"))
    assert per_box.tolist() == [0, 0, 1]
