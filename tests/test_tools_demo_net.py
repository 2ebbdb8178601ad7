"""tools/demo_net.py end to end on a generated video: detections, annotated video, timeline, bad input."""

import os

import numpy as np
import pytest
import torch

from stal.cli import demo_net
from stal.cli import train_net
from _data_fixtures import write_video
from stal.config import load_cfg
from stal.engine.builders import build_model
from stal.formats.ava import read_ava_csv
from stal.io.video import decode_with_times


@pytest.fixture(scope="module")
def trained(repo_root, tmp_path_factory):
    """An instant-config run (tiny demo data, two epochs): its options and a video of 3 s at 8 fps."""
    root = tmp_path_factory.mktemp("demo_net")
    opts = ["OUTPUT_DIR", str(root / "run"), "DEMO.ROOT", str(root / "data"), "TEST.ENABLE", "False"]
    cfg = os.path.join(repo_root, "configs", "instant.yaml")
    assert train_net.main(["--cfg", cfg] + opts) == 0
    write_video(root / "walk.mp4", frames=24, fps=8, size=(48, 32))
    (root / "boxes.csv").write_text("video,time,x1,y1,x2,y2\nwalk,1,0.1,0.2,0.5,0.9\nwalk,1,0.5,0.1,0.9,0.8\n"
                                    "walk,2,0.2,0.2,0.6,0.9,0.95\nother,1,0,0,1,1\n")
    return root, cfg, opts


def _run(trained, *extra):
    root, cfg, opts = trained
    return demo_net.main(["--cfg", cfg, "--video", str(root / "walk.mp4"), "--out", str(root / "out"), *extra] + opts)


def test_detections_video_and_timeline(trained):
    root, cfg, opts = trained
    assert _run(trained, "--boxes", str(root / "boxes.csv")) == 0
    det = read_ava_csv(root / "out" / "detections.csv")
    classes = load_cfg(cfg, opts).MODEL.NUM_CLASSES
    # Keyframes at 1 s and 2 s (the video is 3 s), every box once per class, other videos' rows ignored.
    assert sorted(set(det.timestamp.tolist())) == [1, 2] and len(det) == 3 * classes
    assert (det.timestamp == 1).sum() == 2 * classes and set(det.video) == {"walk"}
    assert ((det.extra >= 0) & (det.extra <= 1)).all()
    frames = [f for _, f in decode_with_times(str(root / "out" / "walk_annotated.mp4"))]
    assert len(frames) == 24 and frames[0].shape == (32, 48, 3)
    assert (root / "out" / "timeline.png").stat().st_size > 0 and (root / "out" / "walk_keyframe.png").exists()


def test_scores_equal_the_model_on_the_same_clip(trained):
    """The tool's score is the model's probability on the clip sampled as the AVA datasets do."""
    from stal.engine import inference
    from stal.engine.state import load_trained_weights
    from stal.losses import class_probabilities

    root, cfg, opts = trained
    c = load_cfg(cfg, opts)
    model = build_model(c)
    load_trained_weights(c, model)
    model.eval()
    video = inference.decode_video(str(root / "walk.mp4"))
    clip = inference.keyframe_clip(video, 2, num_frames=c.DATA.NUM_FRAMES, sampling_rate=c.DATA.SAMPLING_RATE,
                                   crop_size=c.DATA.CROP_SIZE, mean=c.DATA.MEAN, std=c.DATA.STD)
    rois = torch.tensor([[0, 0.2, 0.2, 0.6, 0.9]]) * torch.tensor([1.0] + [c.DATA.CROP_SIZE] * 4)
    with torch.no_grad():
        probs = class_probabilities(model(clip[None], rois), loss_func=c.MODEL.LOSS_FUNC)[0].numpy()
    assert _run(trained, "--boxes", str(root / "boxes.csv")) == 0
    det = read_ava_csv(root / "out" / "detections.csv")
    at_2 = det.timestamp == 2  # rows of a keyframe are written by descending score: match by class id
    np.testing.assert_allclose(det.extra[at_2], probs[det.action[at_2] - 1], atol=1e-6)


def test_background_subtraction_boxes_the_moving_person(trained):
    """Static camera, one bright block moving right: one box per keyframe, around the block."""
    import av

    root, cfg, opts = trained
    with av.open(str(root / "cam.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt, stream.options = 48, 32, "yuv420p", {"qscale": "1"}
        for k in range(24):
            frame = np.full((32, 48, 3), 60, np.uint8)
            frame[8:24, 4 + k:12 + k] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert demo_net.main(["--cfg", cfg, "--video", str(root / "cam.mp4"), "--out", str(root / "cam_out")] + opts) == 0
    det = read_ava_csv(root / "cam_out" / "detections.csv")
    for second in (1, 2):
        box = np.unique(det.boxes[det.timestamp == second], axis=0)
        x = 4 + 8 * second  # the block's left column at that keyframe
        assert len(box) == 1
        np.testing.assert_allclose(box[0], [x / 48, 8 / 32, (x + 8) / 48, 24 / 32], atol=2 / 32)


@pytest.mark.parametrize("case,expected", [
    ("bad_row", "bad.csv:2: expected video,time,x1,y1,x2,y2[,score]"),
    ("bad_box", "bad.csv:2: box"),
    ("truncated", "cut.mp4"),
    ("no_detector", "fasterrcnn_resnet50_fpn_coco"),
    ("other_arch", "model.pyth"),
    ("labelmap", "label map has"),
])
def test_bad_input_is_one_line(trained, capsys, case, expected):
    root, cfg, opts = trained
    flags, overrides, video = [], [], root / "walk.mp4"
    if case in ("bad_row", "bad_box"):
        row = "walk,1,0.1\n" if case == "bad_row" else "walk,1,0.5,0.2,0.1,0.9\n"
        (root / "bad.csv").write_text("video,time,x1,y1,x2,y2\n" + row)
        flags = ["--boxes", str(root / "bad.csv")]
    elif case == "truncated":
        data = video.read_bytes()
        video = root / "cut.mp4"
        video.write_bytes(data[: len(data) // 2])
    elif case == "no_detector":
        flags = ["--detector", str(root / "missing.pth")]
    elif case == "other_arch":
        torch.save({"model_state": {"w": torch.zeros(2)}}, root / "model.pyth")
        overrides = ["TEST.CHECKPOINT_FILE_PATH", str(root / "model.pyth")]
    elif case == "labelmap":
        overrides = ["MODEL.NUM_CLASSES", "3"]  # the demo label map has ids 1..4: id 4 has no output
    code = demo_net.main(["--cfg", cfg, "--video", str(video), "--out", str(root / "bad_out"), *flags]
                         + opts + overrides)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0]


def test_local_detector_checkpoint_is_loaded_weights_only(trained):
    """A fasterrcnn_resnet50_fpn state dict (random weights here: the real file is not shipped)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    root, cfg, opts = trained
    torch.manual_seed(0)
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), root / "frcnn.pth")
    assert _run(trained, "--detector", str(root / "frcnn.pth"), "--stride", "2") == 0
    det = read_ava_csv(root / "out" / "detections.csv")
    assert set(det.timestamp.tolist()) <= {2} and ((det.boxes >= 0) & (det.boxes <= 1)).all()
