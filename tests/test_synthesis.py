import numpy as np

from stal.demo.video import DemoBank, synthesize_sample
from stal.data.synthesized import DemoSynthesisDataset
from stal.synthesis.compose import PlacedTube, composite, tube_boxes


def _random_tube(rng, T, h, w):
    rgba = rng.uniform(size=(T, h, w, 4)).astype(np.float32)
    rgba[..., 3] = np.where(rng.uniform(size=(T, h, w)) < 0.3, 0.0, rgba[..., 3])
    return rgba


def test_composite_is_exact_and_records_provenance():
    rng = np.random.default_rng(0)
    bg = rng.uniform(size=(3, 20, 24, 3)).astype(np.float32)
    tubes = [PlacedTube(_random_tube(rng, 3, 8, 6), 2, -2), PlacedTube(_random_tube(rng, 3, 10, 9), 5, 3),
             PlacedTube(_random_tube(rng, 3, 4, 4), 18, 22)]  # partly outside the clip
    clip, prov = composite(bg, tubes)
    # Rebuild every voxel from provenance: (1 - sum w) * background + sum w_k * colour_k.
    fg = np.zeros((3,) + bg.shape, np.float32)
    for k, t in enumerate(tubes):
        h, w = t.rgba.shape[1:3]
        canvas = np.zeros(bg.shape, np.float32)
        y0, x0 = max(t.top, 0), max(t.left, 0)
        y1, x1 = min(t.top + h, 20), min(t.left + w, 24)
        canvas[:, y0:y1, x0:x1] = t.rgba[:, y0 - t.top:y1 - t.top, x0 - t.left:x1 - t.left, :3]
        fg[k] = canvas
    rebuilt = (1 - prov.alpha.sum(0))[..., None] * bg + (prov.alpha[..., None] * fg).sum(0)
    np.testing.assert_allclose(clip, rebuilt, atol=1e-6)
    untouched = prov.alpha.sum(0) == 0
    assert untouched.any() and (prov.ids[untouched] == 0).all()
    np.testing.assert_array_equal(clip[untouched], bg[untouched])
    assert set(np.unique(prov.ids)) <= {0, 1, 2, 3}
    assert prov.alpha.min() >= 0 and prov.target_mask().max() <= 1


def test_tube_boxes_follow_alpha():
    rgba = np.zeros((2, 6, 5, 4), np.float32)
    rgba[0, 1:4, 2:4, 3] = 1.0
    boxes = tube_boxes(PlacedTube(rgba, top=10, left=20), height=40, width=50)
    np.testing.assert_allclose(boxes[0], [22 / 50, 11 / 40, 24 / 50, 14 / 40])
    assert np.isnan(boxes[1]).all()


def test_demo_is_deterministic_for_a_seed(tiny_demo, tmp_path):
    from stal.demo.video import ensure_demo_data

    paths, kwargs = tiny_demo
    again = ensure_demo_data(**{**kwargs, "root": str(tmp_path)})
    a, b = np.load(paths.bank), np.load(again.bank)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert open(paths.gt_csv).read() == open(again.gt_csv).read()
    other = ensure_demo_data(**{**kwargs, "root": str(tmp_path), "seed": kwargs["seed"] + 1})
    assert open(paths.gt_csv).read() != open(other.gt_csv).read()


def test_demo_samples_have_exact_provenance(tiny_demo):
    paths, _ = tiny_demo
    bank = DemoBank(paths.bank)
    for i in range(5):
        sample = synthesize_sample(bank, np.random.default_rng(i), num_frames=6, num_actors=2, scene_bias=0.9)
        prov = sample.provenance
        untouched = prov.alpha.sum(0) == 0
        # Untouched voxels are bit-identical to one of the bank's background clips.
        matches = [np.array_equal(sample.clip[untouched], bg[s:s + 6][untouched])
                   for bg in bank.backgrounds for s in range(bank.backgrounds.shape[1] - 5)]
        assert any(matches)
        key = sample.boxes[:, sample.keyframe]
        assert np.all((key >= 0) & (key <= 1))
        # Each source's keyframe box encloses the voxels it owns there.
        H, W = prov.ids.shape[1:]
        for k in range(prov.num_sources):
            ys, xs = np.nonzero(prov.alpha[k, sample.keyframe] >= 0.5)
            if len(ys):
                x1, y1, x2, y2 = key[k] * [W, H, W, H]
                assert xs.min() >= x1 - 1e-4 and xs.max() + 1 <= x2 + 1e-4


def test_sample_index_is_reproducible_per_epoch(tiny_demo):
    paths, _ = tiny_demo
    ds = DemoSynthesisDataset(bank_path=paths.bank, length=4, seed=1, num_frames=6, actors_min=1,
                              actors_max=2, scene_bias=0.9, mean=[0.5] * 3, std=[0.2] * 3)
    first = ds[2]["clip"]
    ds.set_epoch(1)
    assert not np.array_equal(ds[2]["clip"].numpy(), first.numpy())
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[2]["clip"].numpy(), first.numpy())


def test_scene_bias_is_respected(tiny_demo):
    paths, _ = tiny_demo
    bank = DemoBank(paths.bank)
    for bias, lo, hi in ((1.0, 1.0, 1.0), (0.0, 0.1, 0.45)):
        hits = 0
        for i in range(200):
            rng = np.random.default_rng(i)
            s = synthesize_sample(bank, rng, num_frames=4, num_actors=1, scene_bias=bias)
            bg_scene = _scene_of(bank, s)
            hits += bg_scene == s.labels[0]
        assert lo <= hits / 200 <= hi


def _scene_of(bank, sample):
    untouched = sample.provenance.alpha.sum(0) == 0
    for j, bg in enumerate(bank.backgrounds):
        for s in range(bank.backgrounds.shape[1] - sample.clip.shape[0] + 1):
            if np.array_equal(sample.clip[untouched], bg[s:s + sample.clip.shape[0]][untouched]):
                return bank.scenes[j]
    raise AssertionError("background not found in the bank")
