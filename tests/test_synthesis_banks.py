"""Tube and background banks, their builders, background subtraction and bad-input errors."""

import json
import os

import numpy as np
import pytest

from stal.errors import DataError
from stal.io.video import read_video_frames
from stal.synthesis.backgrounds import BackgroundBank, CameraMotion
from stal.synthesis.extraction import SubtractionSpec, extract_tubes
from stal.synthesis.generated import encode_video, static_camera_frames
from stal.synthesis.paste import ArrayBackgrounds, PasteSynthesizer
from stal.synthesis.placement import PlacementSpec
from stal.synthesis.tube_bank import TubeBank, TubeBankWriter

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


@pytest.fixture(scope="module")
def walking_video(tmp_path_factory):
    """A generated static-camera mp4 (PyAV, H.264) with two walking figures and their true masks."""
    frames, background, masks = static_camera_frames(num_frames=24)
    path = str(tmp_path_factory.mktemp("video") / "walk.mp4")
    encode_video(path, frames)
    return path, background, masks


def _dilate(mask, r):
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, -2), dx, -1)
    return out


def _builder(args):
    from stal.cli import build_tube_bank

    return build_tube_bank.main(args)


def test_tubes_from_a_static_camera_video_cover_the_moving_figures(walking_video, tmp_path, capsys):
    path, _, masks = walking_video
    out = str(tmp_path / "bank")
    assert _builder(["--out", out, "--videos", path, "--min-area", "60", "--segment", "12"]) == 0
    assert "tubes" in capsys.readouterr().out
    bank = TubeBank(out)
    assert len(bank) >= 2
    figures = masks.any(0)  # (T, H, W) union of the true figure masks
    # H.264's half-resolution chroma smears a figure's colour about one pixel into the scene.
    near = _dilate(figures, 1)
    covered = np.zeros_like(figures)
    for i in range(len(bank)):
        tube, src = bank[i], bank.entries[i]["source"]
        y0, y1, x0, x1 = src["canvas_yyxx"]
        alpha = tube.rgba[..., 3] > 0
        truth = near[src["start"]:src["start"] + len(alpha), y0:y1, x0:x1]
        # Tube masks lie on the figures (not the static background) ...
        assert (alpha & truth).sum() >= 0.97 * alpha.sum()
        covered[src["start"]:src["start"] + len(alpha), y0:y1, x0:x1] |= alpha
    # ... and together cover the figures in the frames where the tracks were kept.
    frames = covered.any((1, 2))
    assert frames.sum() >= 18
    assert (covered & figures)[frames].sum() >= 0.9 * figures[frames].sum()
    # Resumable: a second run finds the video done and adds nothing.
    assert _builder(["--out", out, "--videos", path, "--min-area", "60", "--segment", "12"]) == 0
    assert "0 new, 1 inputs already done" in capsys.readouterr().out
    assert len(TubeBank(out)) == len(bank)


@pytest.mark.skipif(not os.path.isfile(VTEST), reason="vtest.avi (Debian opencv-doc) is not installed")
def test_tubes_from_vtest_are_people_not_background():
    spec = SubtractionSpec(segment=12, min_frames=6, min_area=400)
    import itertools

    from stal.io.video import decode_with_times

    # The median of every 8th of the first 200 frames (20 s of walking) is the empty scene.
    frames = [f for _, f in itertools.islice(decode_with_times(VTEST), 0, 200, 8)]
    plate = np.median(np.stack(frames), 0).round().astype(np.uint8)
    tubes = list(extract_tubes(VTEST, spec, max_frames=24, plate=plate))
    assert len(tubes) >= 3
    for t in tubes:
        alpha = t["alpha"] > 0
        y0, y1, x0, x1 = t["box"]
        diff = np.abs(t["rgb"].astype(int) - plate[y0:y1, x0:x1].astype(int)).max(-1)
        # Masked pixels differ from the empty scene (a person is there); the rest of the canvas mostly does not.
        assert np.median(diff[alpha]) > 30
        assert alpha.mean() < 0.9
        heights = (y1 - y0)
        assert 20 <= heights <= 400  # pedestrians at 768x576, not the whole frame


def test_background_bank_from_video_plate_and_ranges(walking_video, tmp_path, capsys):
    from stal.cli import build_background_bank

    path, background, _ = walking_video
    out = str(tmp_path / "bg")
    assert build_background_bank.main(["--out", out, "--videos", path, "--min-length", "1"]) == 0
    assert "background bank" in capsys.readouterr().out
    bank = BackgroundBank(out, motion=CameraMotion(prob=1.0, pan=0.2, zoom=0.2))
    plate = bank.frames(0, 0, 1)[0]
    assert np.abs(plate.astype(int) - background.astype(int)).mean() < 4  # people removed
    a = bank.clip(np.random.default_rng(3), num_frames=5, height=32, width=40)
    b = bank.clip(np.random.default_rng(3), num_frames=5, height=32, width=40)
    assert a.shape == (5, 32, 40, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[-1])  # the camera moved


def test_video_entries_and_frame_folders_read_the_same_frames(walking_video, tmp_path):
    from PIL import Image

    path, _, _ = walking_video
    frames = read_video_frames(path, np.array([2, 3, 4]), backend="pyav")
    assert frames.shape == (3, 96, 128, 3)
    try:
        import decord  # noqa: F401
        np.testing.assert_allclose(read_video_frames(path, np.array([2, 3, 4]), backend="decord").astype(int),
                                   frames.astype(int), atol=12)
    except ImportError:
        pass
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.png")
    (tmp_path / "bank").mkdir()
    index = {"format": "stal.background_bank", "version": 1, "done": [], "backgrounds": [
        {"kind": "frames", "path": str(folder), "start": 0, "stop": 3}]}
    (tmp_path / "bank" / "index.json").write_text(json.dumps(index))
    np.testing.assert_array_equal(BackgroundBank(str(tmp_path / "bank")).frames(0, 0, 3), frames)
    # A video range entry: clips are decoded at synthesis time, from a random start in range.
    index["backgrounds"] = [{"kind": "video", "path": path, "start": 4, "stop": 20}]
    (tmp_path / "bank" / "index.json").write_text(json.dumps(index))
    clip = BackgroundBank(str(tmp_path / "bank"), backend="pyav").clip(
        np.random.default_rng(0), num_frames=6, height=48, width=64)
    assert clip.shape == (6, 48, 64, 3) and not np.array_equal(clip[0], clip[-1])  # the figures walk


def _write_bank(root, tubes, classes=("a",)):
    w = TubeBankWriter(str(root), classes=list(classes))
    for rgb, alpha in tubes:
        w.add(rgb=rgb, alpha=alpha, labels=[0], source={"input": "test"})
    w.finish_input("test")


def _tube(T=4, h=10, w=6):
    rgb = np.full((T, h, w, 3), 100, np.uint8)
    alpha = np.zeros((T, h, w), np.uint8)
    alpha[:, 1:-1, 1:-1] = 255
    return rgb, alpha


def test_tube_bank_loads_lazily_and_names_bad_files(tmp_path):
    _write_bank(tmp_path / "bank", [_tube(), _tube(T=3)])
    bank = TubeBank(str(tmp_path / "bank"), cache_size=1)
    assert len(bank) == 2 and not bank._cache
    assert bank[1].rgba.shape == (3, 10, 6, 4) and list(bank._cache) == [1]
    bank[0]
    assert list(bank._cache) == [0]  # LRU of one: tube 1 was dropped
    # The index points at a missing array file.
    os.remove(tmp_path / "bank" / "tubes" / "0000001.npz")
    with pytest.raises(DataError, match=r"index\.json.*0000001\.npz.*does not exist"):
        TubeBank(str(tmp_path / "bank"))[1]
    # Mask and frame size mismatch inside a tube file.
    rgb, alpha = _tube()
    np.savez_compressed(tmp_path / "bank" / "tubes" / "0000000.npz", rgb=rgb, alpha=alpha[:, :-1])
    with pytest.raises(DataError, match=r"0000000\.npz: mask and frame size mismatch"):
        TubeBank(str(tmp_path / "bank"))[0]
    # An empty tube is refused when it is written and when it is read.
    with pytest.raises(DataError, match="empty tube"):
        _write_bank(tmp_path / "other", [(rgb, np.zeros_like(alpha))])
    np.savez_compressed(tmp_path / "bank" / "tubes" / "0000000.npz", rgb=rgb, alpha=np.zeros_like(alpha))
    with pytest.raises(DataError, match=r"0000000\.npz: empty tube"):
        TubeBank(str(tmp_path / "bank"))[0]
    (tmp_path / "bank" / "index.json").write_text("{not json")
    with pytest.raises(DataError, match=r"index\.json: not a valid JSON"):
        TubeBank(str(tmp_path / "bank"))


def _synth(root, *, size=(24, 24), strict=False, T=4, scale=(0.5, 0.5)):
    bank = TubeBank(str(root))
    bgs = ArrayBackgrounds(np.zeros((1, T, *size, 3), np.uint8))
    spec = PlacementSpec(actors_min=1, actors_max=1, scale_min=scale[0], scale_max=scale[1], strict_length=strict)
    return PasteSynthesizer(tubes=bank, backgrounds=bgs, placement=spec, num_frames=T, height=size[0],
                            width=size[1], num_classes=1, interpolation="nearest")


def test_long_tubes_are_cropped_or_refused_and_large_actors_refused(tmp_path):
    _write_bank(tmp_path / "bank", [_tube(T=9)])
    s = _synth(tmp_path / "bank", T=4)(np.random.default_rng(0))
    assert not np.isnan(s.boxes[0, :, 0]).any()  # a 4-frame window of the 9-frame tube
    with pytest.raises(DataError, match=r"0000000\.npz: tube has 9 frames, longer than the 4-frame clip"):
        _synth(tmp_path / "bank", T=4, strict=True)(np.random.default_rng(0))
    with pytest.raises(DataError, match=r"0000000\.npz: actor canvas scaled to .* larger than the 24x24 frame"):
        _synth(tmp_path / "bank", T=4, scale=(1.0, 1.0))(np.random.default_rng(0))


def test_corrupt_videos_are_errors_naming_the_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    for backend in ("pyav", "auto"):
        with pytest.raises(DataError, match="broken.mp4"):
            read_video_frames(str(bad), np.array([0]), backend=backend)
    with pytest.raises(DataError, match="broken.mp4"):
        list(extract_tubes(str(bad), SubtractionSpec()))
    from stal.cli import build_tube_bank

    assert build_tube_bank.main(["--out", str(tmp_path / "b"), "--videos", str(bad)]) == 2
