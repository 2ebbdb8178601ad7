"""Exactness of layered compositing, placement, transforms and mixers on generated data."""

from dataclasses import replace

import numpy as np
import pytest

from stal.synthesis.compose import Layer, _ids_from_weights, boxes_from_ids, composite_layers
from stal.synthesis.mixing import CuboidMix, CutMix, DifferenceMask
from stal.synthesis.paste import ArrayBackgrounds, PasteSynthesizer
from stal.synthesis.placement import PlacementSpec
from stal.synthesis.transforms import crop_resize, hflip, random_resized_crop, temporal_subsample
from stal.synthesis.tube_bank import MemoryTubeBank
from stal.structures import Sample


def _random_layer(rng, T, H, W, dtype):
    n, h, w = int(rng.integers(2, 5)), int(rng.integers(3, 12)), int(rng.integers(3, 12))
    alpha = rng.choice([0, 255, 128, 37], size=(n, h, w), p=[0.3, 0.4, 0.2, 0.1]).astype(np.uint8)
    rgba = np.concatenate([rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), alpha[..., None]], -1)
    if dtype == np.float32:
        rgba = rgba.astype(np.float32) / 255
    frames = rng.integers(-1, n, T)
    top = rng.integers(-h, H, T) if rng.uniform() < 0.5 else np.full(T, rng.integers(-h, H))
    left = rng.integers(-w, W, T)
    if rng.uniform() < 0.5:  # a flipped view: non-contiguous source pixels
        rgba = rgba[:, :, ::-1]
    if rng.uniform() < 0.3:  # channels not contiguous (as a permuted torch tensor's numpy view)
        rgba = np.moveaxis(np.ascontiguousarray(np.moveaxis(rgba, -1, 0)), 0, -1)
    return Layer(rgba=rgba, frames=frames, top=top, left=left)


def _naive(background, layers):
    """Reference: per frame and layer, full-frame canvases and the textbook over operator."""
    T, H, W, _ = background.shape
    scale = 255.0 if background.dtype == np.uint8 else 1.0
    out = background.astype(np.float64)
    weights = np.zeros((len(layers), T, H, W))
    colours = np.zeros((len(layers), T, H, W, 3))
    for k, layer in enumerate(layers):
        for t in range(T):
            if layer.frames[t] < 0:
                continue
            src = layer.rgba[layer.frames[t]].astype(np.float64) / (255.0 if layer.rgba.dtype == np.uint8 else 1.0)
            h, w = src.shape[:2]
            for y in range(h):
                for x in range(w):
                    yy, xx = layer.top[t] + y, layer.left[t] + x
                    if 0 <= yy < H and 0 <= xx < W:
                        a = src[y, x, 3]
                        weights[:k, t, yy, xx] *= 1 - a
                        weights[k, t, yy, xx] = a
                        colours[k, t, yy, xx] = src[y, x, :3] * scale
                        out[t, yy, xx] = a * colours[k, t, yy, xx] + (1 - a) * out[t, yy, xx]
    return out, weights, colours


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_layers_are_exact_against_a_naive_compositor(dtype):
    rng = np.random.default_rng(0)
    T, H, W = 5, 14, 17
    for trial in range(8):
        bg = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
        bg = bg if dtype == np.uint8 else bg.astype(np.float32) / 255
        layers = [_random_layer(rng, T, H, W, dtype) for _ in range(3)]
        clip, prov = composite_layers(bg, layers)
        _, weights, colours = _naive(bg, layers)
        assert clip.dtype == bg.dtype and prov.ids.dtype == np.int16
        np.testing.assert_allclose(prov.alpha, weights, atol=1e-6)
        np.testing.assert_array_equal(prov.ids, _ids_from_weights(prov.alpha))
        # No alpha anywhere: the background, bit for bit.
        untouched = prov.alpha.sum(0) == 0
        assert untouched.any()
        np.testing.assert_array_equal(clip[untouched], bg[untouched])
        # Alpha 1 on top (nothing above it with alpha > 0): the tube pixel, bit for bit.
        for k in range(3):
            on_top = prov.alpha[k] == 1
            expected = colours[k][on_top]
            got = clip[on_top].astype(np.float64)
            np.testing.assert_array_equal(got, expected if dtype == np.uint8 else expected.astype(np.float32))
        # Everything else: the provenance identity, to uint8 rounding per layer.
        rebuilt = (1 - prov.alpha.sum(0))[..., None] * bg.astype(np.float64) + (prov.alpha[..., None] * colours).sum(0)
        tol = 0.5 * 3 + 1e-3 if dtype == np.uint8 else 1e-5
        np.testing.assert_allclose(clip.astype(np.float64), rebuilt, atol=tol)


def _assert_boxes_enclose_ids(boxes, ids):
    T, H, W = ids.shape
    for k in range(boxes.shape[0]):
        for t in range(T):
            ys, xs = np.nonzero(ids[t] == k + 1)
            if ys.size == 0:
                assert np.isnan(boxes[k, t]).all()
                continue
            np.testing.assert_array_equal(boxes[k, t], np.array(
                [xs.min() / W, ys.min() / H, (xs.max() + 1) / W, (ys.max() + 1) / H], np.float32))


def test_boxes_from_ids_with_regions_match_a_full_scan():
    rng = np.random.default_rng(1)
    ids = np.zeros((4, 20, 30), np.int16)
    ids[1, 2:5, 3:9] = 1
    ids[2, 10:12, 20:30] = 2
    ids[3, 0, 0] = 1
    boxes = boxes_from_ids(ids, 3)
    _assert_boxes_enclose_ids(boxes, ids)
    np.testing.assert_array_equal(boxes_from_ids(ids, 3, [(0, 20, 0, 30), (10, 12, 20, 30), None]), boxes)
    assert rng is not None


def _demo_like_bank(rng, n=6, T=10, hard=False):
    tubes = []
    for i in range(n):
        h, w = int(rng.integers(8, 16)), int(rng.integers(6, 12))
        alpha = np.zeros((T, h, w), np.uint8)
        alpha[:, 1:-1, 1:-1] = 255
        if not hard:
            alpha[:, 0, :] = 90
        rgb = rng.integers(0, 256, (T, h, w, 3), dtype=np.uint8)
        tubes.append(np.concatenate([rgb, alpha[..., None]], -1))
    return MemoryTubeBank(tubes, [[i % 3] for i in range(n)], classes=["a", "b", "c"])


@pytest.mark.parametrize("options", [
    dict(),
    dict(edge="feather", feather_radius=2, trajectory="linear", partial_prob=0.7, interpolation="bilinear"),
    dict(colour_match=0.5, keep_inside=False, occlusion="depth", interpolation="nearest", clip_dtype="float32"),
    dict(interpolation="bilinear", trajectory="linear"),
])
def test_paste_synthesizer_samples_are_exact(options):
    rng = np.random.default_rng(2)
    bank = _demo_like_bank(rng, hard=options.get("interpolation") == "nearest")
    bgs = ArrayBackgrounds(rng.integers(0, 256, (3, 12, 40, 48, 3), dtype=np.uint8))
    spec_keys = {"trajectory", "partial_prob", "keep_inside", "occlusion"}
    spec = PlacementSpec(actors_min=2, actors_max=4, scale_min=0.3, scale_max=0.8,
                         **{k: v for k, v in options.items() if k in spec_keys})
    synth = PasteSynthesizer(tubes=bank, backgrounds=bgs, placement=spec, num_frames=8, height=40, width=48,
                             num_classes=3, clip_dtype=options.get("clip_dtype", "uint8"),
                             **{k: v for k, v in options.items() if k not in spec_keys | {"clip_dtype"}})
    saw_partial = False
    for i in range(8):
        s = synth(np.random.default_rng([5, 0, i]))
        prov = s.provenance
        assert s.clip.shape == (8, 40, 48, 3) and s.background.shape == s.clip.shape
        untouched = prov.alpha.sum(0) == 0
        np.testing.assert_array_equal(s.clip[untouched], s.background[untouched])
        np.testing.assert_array_equal(prov.ids, _ids_from_weights(prov.alpha))
        _assert_boxes_enclose_ids(s.boxes, prov.ids)
        assert s.labels.shape == (prov.num_sources,) and s.keyframe == 4
        saw_partial |= bool(np.isnan(s.boxes[..., 0]).any())
    if options.get("partial_prob"):
        assert saw_partial


def test_colour_matching_is_the_same_for_float32_and_uint8_clips():
    """The layers are colour-matched against the uint8 background whatever the clip dtype: a
    float32 clip is the uint8 clip / 255 (a [0, 1] reference would turn the actors black)."""
    rng = np.random.default_rng(4)
    bank = _demo_like_bank(rng, hard=True)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (3, 12, 40, 48, 3), dtype=np.uint8))
    spec = PlacementSpec(actors_min=2, actors_max=3, scale_min=0.3, scale_max=0.8)
    kw = dict(tubes=bank, backgrounds=bgs, placement=spec, num_frames=8, height=40, width=48, num_classes=3,
              interpolation="nearest", colour_match=0.8)
    for i in range(4):
        u8 = PasteSynthesizer(clip_dtype="uint8", **kw)(np.random.default_rng([6, 0, i]))
        f32 = PasteSynthesizer(clip_dtype="float32", **kw)(np.random.default_rng([6, 0, i]))
        np.testing.assert_allclose(f32.clip, u8.clip / np.float32(255), atol=1e-6)


def test_images_are_clips_of_one_frame():
    rng = np.random.default_rng(3)
    bank = _demo_like_bank(rng, T=1, hard=True)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8))
    synth = PasteSynthesizer(tubes=bank, backgrounds=bgs, placement=PlacementSpec(actors_min=2, actors_max=2),
                             num_frames=1, height=32, width=32, num_classes=3, interpolation="nearest")
    s = synth(np.random.default_rng(0))
    assert s.clip.shape == (1, 32, 32, 3) and s.keyframe == 0 and s.provenance.alpha.shape[:2] == (2, 1)
    _assert_boxes_enclose_ids(s.boxes, s.provenance.ids)


def _sample(rng, T=6, H=24, W=32, K=2):
    bank = _demo_like_bank(rng, T=T)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (2, T, H, W, 3), dtype=np.uint8))
    synth = PasteSynthesizer(tubes=bank, backgrounds=bgs, placement=PlacementSpec(actors_min=K, actors_max=K),
                             num_frames=T, height=H, width=W, num_classes=3)
    return synth(rng)


def test_transforms_keep_clip_provenance_and_boxes_aligned():
    rng = np.random.default_rng(4)
    s = _sample(rng)
    flipped = hflip(s, np.random.default_rng(0), prob=1.0)
    np.testing.assert_array_equal(flipped.clip, s.clip[:, :, ::-1])
    np.testing.assert_array_equal(flipped.provenance.ids, s.provenance.ids[:, :, ::-1])
    back = hflip(flipped, np.random.default_rng(0), prob=1.0)
    np.testing.assert_array_equal(back.clip, s.clip)
    np.testing.assert_allclose(back.boxes, s.boxes, atol=1e-6)
    crop = crop_resize(s, box=(2, 20, 4, 28), size=(18, 24))  # no resampling: an exact crop
    np.testing.assert_array_equal(crop.clip, s.clip[:, 2:20, 4:28])
    np.testing.assert_array_equal(crop.provenance.ids, s.provenance.ids[:, 2:20, 4:28])
    for t in (random_resized_crop(s, np.random.default_rng(i), size=(16, 16)) for i in range(4)):
        assert t.clip.shape == (6, 16, 16, 3) and t.clip.dtype == s.clip.dtype
        np.testing.assert_array_equal(t.provenance.ids, _ids_from_weights(t.provenance.alpha))
        _assert_boxes_enclose_ids(t.boxes, t.provenance.ids)
    sub = temporal_subsample(s, stride=2, num_frames=3)
    np.testing.assert_array_equal(sub.clip[sub.keyframe], s.clip[s.keyframe])
    np.testing.assert_array_equal(sub.provenance.ids[sub.keyframe], s.provenance.ids[s.keyframe])


def test_cutmix_batchmix_and_difference_masks():
    rng = np.random.default_rng(5)
    a = Sample(clip=rng.integers(0, 256, (1, 20, 20, 3), dtype=np.uint8), boxes=np.zeros((1, 1, 4), np.float32),
               labels=np.array([0]), keyframe=0)
    b = Sample(clip=rng.integers(0, 256, (1, 20, 20, 3), dtype=np.uint8), boxes=np.zeros((1, 1, 4), np.float32),
               labels=np.array([2]), keyframe=0)
    m = CutMix(area_min=0.2, area_max=0.3)(np.random.default_rng(0), a, b)
    taken = m.provenance.ids == 2
    assert 0 < taken.mean() < 0.5 and m.labels.tolist() == [0, 2]
    np.testing.assert_array_equal(m.clip[taken], b.clip[taken])
    np.testing.assert_array_equal(m.clip[~taken], a.clip[~taken])
    np.testing.assert_array_equal(m.provenance.alpha[1], taken)
    _assert_boxes_enclose_ids(m.boxes, m.provenance.ids)
    # BatchMix: a cuboid that spans part of the frames (clips of 8 frames).
    A = Sample(clip=rng.uniform(size=(8, 16, 16, 3)).astype(np.float32), boxes=np.zeros((1, 8, 4), np.float32),
               labels=np.array([1]), keyframe=4)
    B = Sample(clip=rng.uniform(size=(8, 16, 16, 3)).astype(np.float32), boxes=np.zeros((1, 8, 4), np.float32),
               labels=np.array([3]), keyframe=4)
    m = CuboidMix(area_min=0.2, area_max=0.4, duration_min=0.25, duration_max=0.5, num_classes=4)(
        np.random.default_rng(1), A, B)
    frames = (m.provenance.ids == 2).any((1, 2))
    assert 2 <= frames.sum() <= 4 and np.all(np.diff(np.flatnonzero(frames)) == 1)
    assert m.labels.shape == (2, 4) and m.labels[1, 3] == 1 and m.labels[0, 1] == 1
    _assert_boxes_enclose_ids(m.boxes, m.provenance.ids)
    # Difference mask: exactly the edited voxels are source 2.
    edited = A.clip.copy()
    edited[3:5, 4:9, 2:6] = 0.0
    d = DifferenceMask(threshold=1e-6)(np.random.default_rng(0), A, Sample(edited, A.boxes, np.array([2]), 4))
    expect = np.zeros((8, 16, 16), bool)
    expect[3:5, 4:9, 2:6] = True
    np.testing.assert_array_equal(d.provenance.ids == 2, expect & (A.clip.max(-1) > 1e-6))


def test_feathering_never_grows_the_source_and_keeps_its_interior():
    from stal.synthesis.edges import feather_alpha, match_colour

    rgba = np.zeros((2, 20, 20, 4), np.uint8)
    rgba[:, 4:16, 5:15] = (10, 200, 30, 255)
    for tube in (rgba, rgba.astype(np.float32) / 255):
        soft = feather_alpha(tube, 2)
        full = 255 if tube.dtype == np.uint8 else 1.0
        assert (soft[..., 3] <= tube[..., 3]).all() and soft[..., 3][tube[..., 3] == 0].max() == 0
        assert (soft[:, 6:14, 7:13, 3] == full).all() and 0 < soft[0, 4, 10, 3] < full
    matched = match_colour(rgba, np.full((5, 5, 3), 120, np.uint8), 1.0)
    assert abs(float(matched[..., :3][rgba[..., 3] > 0].mean()) - 120) < 2


# --------------------------------------------------------------------------------------
# Sparse provenance: per-layer crops, ids and boxes derived from them, tubes in pieces.
# --------------------------------------------------------------------------------------


def _assert_sparse_matches_dense(prov):
    """Every view derived from the crops equals the one derived from the dense alpha."""
    from stal.structures import Provenance
    from stal.synthesis.compose import boxes_from_crops

    dense = Provenance(ids=_ids_from_weights(prov.alpha), alpha=prov.alpha)
    np.testing.assert_array_equal(prov.ids, dense.ids)
    np.testing.assert_array_equal(prov.target_mask(), dense.target_mask())
    np.testing.assert_allclose(prov.weight_sum(), dense.weight_sum(), atol=1e-6)
    sparse = Provenance.from_crops(prov.crops, shape=prov.shape)  # nothing dense built yet
    np.testing.assert_allclose(sparse.source_totals(), dense.source_totals(), rtol=1e-12)
    assert sparse._alpha is None and dense.source_totals().shape == (prov.num_sources,)
    for k in range(prov.num_sources):
        np.testing.assert_array_equal(prov.source_alpha(k), prov.alpha[k])
        for crop in prov.crops[k]:  # weight only inside the crops
            t0, t1, y0, y1, x0, x1 = crop.cuboid
            assert 0 <= t0 < t1 <= prov.shape[0] and 0 <= y0 < y1 <= prov.shape[1] and 0 <= x0 < x1 <= prov.shape[2]
    outside = prov.alpha.copy()
    for k, source in enumerate(prov.crops):
        for crop in source:
            t0, t1, y0, y1, x0, x1 = crop.cuboid
            outside[k, t0:t1, y0:y1, x0:x1] = 0
    assert not outside.any()
    np.testing.assert_array_equal(boxes_from_crops(prov.crops, prov.shape), boxes_from_ids(prov.ids, prov.num_sources))
    # And the other way round: crops derived from a dense alpha give the same ids and boxes.
    np.testing.assert_array_equal(boxes_from_crops(dense.crops, dense.shape), boxes_from_ids(dense.ids, dense.num_sources))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_sparse_provenance_equals_its_dense_form(dtype):
    rng = np.random.default_rng(10)
    T, H, W = 5, 14, 17
    for _ in range(8):
        bg = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
        bg = bg if dtype == np.uint8 else bg.astype(np.float32) / 255
        _, prov = composite_layers(bg, [_random_layer(rng, T, H, W, dtype) for _ in range(3)])
        assert prov._alpha is None and prov._ids is None  # the compositor wrote neither
        _assert_sparse_matches_dense(prov)


def _split_in_time(layer, cuts):
    """The layer as pieces shown in disjoint frame ranges [cuts[i], cuts[i+1])."""
    pieces = []
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        frames = np.full_like(layer.frames, -1)
        frames[t0:t1] = layer.frames[t0:t1]
        pieces.append(Layer(rgba=layer.rgba, frames=frames, top=layer.top, left=layer.left))
    return pieces


def test_a_layer_in_pieces_composites_like_the_whole_layer():
    rng = np.random.default_rng(11)
    T, H, W = 6, 14, 17
    for _ in range(6):
        bg = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
        layers = [_random_layer(rng, T, H, W, np.uint8) for _ in range(3)]
        clip, prov = composite_layers(bg, layers)
        split = [_split_in_time(layer, [0, 2, 3, T]) for layer in layers[:2]] + [layers[2]]
        clip2, prov2 = composite_layers(bg, split)
        np.testing.assert_array_equal(clip2, clip)
        np.testing.assert_array_equal(prov2.alpha, prov.alpha)
        np.testing.assert_array_equal(prov2.ids, prov.ids)
        _assert_sparse_matches_dense(prov2)
    with pytest.raises(ValueError, match="same frame"):
        composite_layers(bg, [[layers[0], layers[0]]])


def test_sparse_transforms_match_their_dense_versions():
    from stal.structures import Provenance

    rng = np.random.default_rng(13)
    s = _sample(rng, K=3)
    flipped = hflip(s, np.random.default_rng(0), prob=1.0)
    np.testing.assert_array_equal(flipped.provenance.alpha, s.provenance.alpha[..., ::-1])
    np.testing.assert_array_equal(flipped.provenance.ids, _ids_from_weights(s.provenance.alpha[..., ::-1]))
    _assert_boxes_enclose_ids(flipped.boxes, flipped.provenance.ids)
    _assert_sparse_matches_dense(flipped.provenance)
    sub = temporal_subsample(s, stride=2, num_frames=3)
    idx = np.minimum(np.clip(s.keyframe - 2, 0, 1) + 2 * np.arange(3), 5)
    np.testing.assert_array_equal(sub.provenance.alpha, s.provenance.alpha[:, idx])
    np.testing.assert_array_equal(sub.provenance.ids, s.provenance.ids[idx])
    # A dense provenance (as mixers make) keeps its dense form through the same transforms.
    dense = Provenance(ids=s.provenance.ids, alpha=s.provenance.alpha)
    d = temporal_subsample(replace(s, provenance=dense), stride=2, num_frames=3)
    np.testing.assert_array_equal(d.provenance.alpha, sub.provenance.alpha)
    np.testing.assert_array_equal(hflip(replace(s, provenance=dense), np.random.default_rng(0), prob=1.0).boxes,
                                  flipped.boxes)
