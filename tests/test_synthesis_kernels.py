"""The compiled paste kernel (loader default: nearest, hard edges) against the numpy path."""

import numpy as np
import pytest

from stal.synthesis import kernels
from stal.synthesis.compose import boxes_from_crops, composite_layers
from stal.synthesis.paste import ArrayBackgrounds, PasteSynthesizer
from stal.synthesis.placement import PlacementSpec
from stal.synthesis.tube_bank import MemoryTubeBank


def _numpy_sample(synth, rng):
    """The Sample of the numpy path (whole resized canvases through composite_layers)."""
    synth._compose_compiled = lambda **kw: None
    return synth(rng)


def _walkers(rng, n, T, h, w, soft=False):
    """Hard-edged tubes: an opaque blob crossing a mostly transparent canvas, one frame empty;
    ``soft``: a third of each blob's pixels get an alpha in 1..254 (the extremes included)."""
    tubes = []
    for _ in range(n):
        rgba = np.zeros((T, h, w, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 256, (T, h, w, 3), dtype=np.uint8)
        for t in range(T):
            y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            rgba[t, y:y + int(rng.integers(1, h // 2)), x:x + int(rng.integers(1, w // 2)), 3] = 255
            rgba[t, ..., 3] *= rng.uniform(size=(h, w)) < 0.9  # holes
            if soft:
                partial = (rgba[t, ..., 3] > 0) & (rng.uniform(size=(h, w)) < 0.33)
                rgba[t, ..., 3][partial] = rng.choice([1, 2, 127, 128, 200, 253, 254], size=int(partial.sum()))
        if T > 1:
            rgba[int(rng.integers(0, T)), ..., 3] = 0
        tubes.append(rgba)
    return MemoryTubeBank(tubes, [[i % 3] for i in range(n)], classes=["a", "b", "c"])


def _assert_same_sample(a, b):
    np.testing.assert_array_equal(a.clip, b.clip)
    assert a.clip.dtype == b.clip.dtype
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.provenance.ids, b.provenance.ids)
    np.testing.assert_array_equal(a.provenance.alpha, b.provenance.alpha)
    np.testing.assert_array_equal(a.background, b.background)
    np.testing.assert_array_equal(boxes_from_crops(a.provenance.crops, a.provenance.shape), a.boxes)


def _boxes_meet(boxes):
    """Whether two sources' boxes (K, T, 4) intersect in some frame (NaN never does)."""
    x0, y0, x1, y1 = (boxes[..., i] for i in range(4))
    w = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    h = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
    off_diagonal = ~np.eye(len(boxes), dtype=bool)[..., None]
    return bool(((w > 0) & (h > 0) & off_diagonal).any())


SPECS = [
    dict(),
    dict(trajectory="linear", partial_prob=0.5, keep_inside=False),
    dict(occlusion="depth", partial_prob=0.7, min_visible=1, keep_inside=False, flip_prob=1.0),
    dict(scale_min=0.8, scale_max=1.0, keep_inside=False, trajectory="linear", max_drift=0.5),
]


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("clip_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("T", [1, 9])
@pytest.mark.parametrize("spec", SPECS)
def test_kernel_sample_equals_the_numpy_path(spec, T, clip_dtype, soft, monkeypatch):
    calls = []
    name = "compose_soft_nearest" if soft else "compose_hard_nearest"

    def counted(*args):
        calls.append(len(args[2]))
        return getattr(kernels, name)(*args)
    monkeypatch.setattr(f"stal.synthesis.paste.{name}", counted)
    rng = np.random.default_rng(20)
    bank = _walkers(rng, n=5, T=max(T, 12), h=30, w=22, soft=soft)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (2, T, 40, 48, 3), dtype=np.uint8))
    placement = PlacementSpec(actors_min=2, actors_max=5, **{"scale_min": 0.15, "scale_max": 0.35, **spec})
    kw = dict(tubes=bank, backgrounds=bgs, placement=placement, num_frames=T, height=40, width=48,
              num_classes=3, interpolation="nearest", clip_dtype=clip_dtype)
    fast, slow = PasteSynthesizer(**kw), PasteSynthesizer(**kw)
    overlapped = 0
    for i in range(25):
        a = fast(np.random.default_rng([9, T, i]))
        assert len(calls) == i + 1 and calls[-1] == a.provenance.num_sources  # the kernel path ran
        b = _numpy_sample(slow, np.random.default_rng([9, T, i]))
        _assert_same_sample(a, b)
        overlapped += _boxes_meet(a.boxes)
    # Draws where visible sources' boxes intersect (occlusion is likely); single frames with
    # mostly absent actors (partial presence) may have none.
    assert overlapped or T == 1


def test_occlusion_is_what_a_broken_kernel_gets_wrong(monkeypatch):
    """Two actors at the same place: pasting bottom first (ignoring the taken voxels, as a
    kernel that forgot occlusion would) differs from the numpy path, so the test above can fail."""
    rng = np.random.default_rng(21)
    rgba = np.full((2, 10, 10, 4), 255, np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (2, 10, 10, 3), dtype=np.uint8)
    bank = MemoryTubeBank([rgba[:1].repeat(3, 0), rgba[1:].repeat(3, 0)], [[0], [1]], classes=["a", "b"])
    bgs = ArrayBackgrounds(np.zeros((1, 3, 20, 20, 3), np.uint8))
    kw = dict(tubes=bank, backgrounds=bgs, num_frames=3, height=20, width=20, num_classes=2,
              placement=PlacementSpec(actors_min=2, actors_max=2, scale_min=0.5, scale_max=0.5, flip_prob=0.0),
              interpolation="nearest", clip_dtype="uint8")
    a = PasteSynthesizer(**kw)(np.random.default_rng(0))
    b = _numpy_sample(PasteSynthesizer(**kw), np.random.default_rng(0))
    _assert_same_sample(a, b)
    assert (a.provenance.alpha[0] == 0).any() and set(np.unique(a.provenance.ids)) >= {1, 2}

    real = kernels.compose_hard_nearest

    def bottom_on_top(clip, background, tubes, alpha_boxes, row_spans, frames, top, left, canvas, flips, *rest):
        """The kernel with the layers in reverse order (sources renumbered back): the bottom
        actor wins where they overlap, as a kernel that got the occlusion order wrong would."""
        values, cuboids, boxes = real(clip, background, tubes[::-1], alpha_boxes[::-1], row_spans[::-1],
                                      *(np.ascontiguousarray(x[::-1]) for x in (frames, top, left, canvas, flips)),
                                      *rest)
        cuboids[:, 0] = len(tubes) - 1 - cuboids[:, 0]
        return values, cuboids, np.ascontiguousarray(boxes[::-1])
    monkeypatch.setattr("stal.synthesis.paste.compose_hard_nearest", bottom_on_top)
    broken = PasteSynthesizer(**kw)(np.random.default_rng(0))
    with pytest.raises(AssertionError):
        _assert_same_sample(broken, b)


def test_feathering_and_bilinear_take_the_numpy_path(monkeypatch):
    """Only nearest resizing without edge treatment or colour matching is compiled."""
    def no_kernel(*args):
        raise AssertionError("the kernel ran")
    for name in ("compose_hard_nearest", "compose_soft_nearest"):
        monkeypatch.setattr(f"stal.synthesis.paste.{name}", no_kernel)
    rng = np.random.default_rng(22)
    bank = _walkers(rng, n=2, T=4, h=12, w=10)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (1, 4, 24, 24, 3), dtype=np.uint8))
    kw = dict(tubes=bank, backgrounds=bgs, num_frames=4, height=24, width=24, num_classes=3, clip_dtype="uint8",
              placement=PlacementSpec(actors_min=2, actors_max=2, scale_min=0.2, scale_max=0.3))
    for options in (dict(interpolation="bilinear"), dict(edge="feather"), dict(colour_match=0.5)):
        PasteSynthesizer(**kw, **options)(np.random.default_rng(0))


def test_soft_blend_overlaps_are_what_a_broken_kernel_gets_wrong():
    """Two half-transparent actors at the same place: the blend and the lower layer's
    weight (a * (1 - a_top)) need the bottom-first order; the hard kernel (top first,
    taken = covered) differs from the numpy path there."""
    rgba = np.zeros((2, 10, 10, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(25).integers(0, 256, (2, 10, 10, 3), dtype=np.uint8)
    rgba[..., 3] = 128
    bank = MemoryTubeBank([rgba[:1].repeat(3, 0), rgba[1:].repeat(3, 0)], [[0], [1]], classes=["a", "b"])
    kw = dict(tubes=bank, backgrounds=ArrayBackgrounds(np.full((1, 3, 20, 20, 3), 50, np.uint8)), num_frames=3,
              height=20, width=20, num_classes=2, interpolation="nearest", clip_dtype="uint8",
              placement=PlacementSpec(actors_min=2, actors_max=2, scale_min=0.5, scale_max=0.5, flip_prob=0.0))
    a = PasteSynthesizer(**kw)(np.random.default_rng(0))
    b = _numpy_sample(PasteSynthesizer(**kw), np.random.default_rng(0))
    _assert_same_sample(a, b)
    both = (a.provenance.alpha > 0).all(0)
    assert both.any() and np.allclose(a.provenance.alpha[0][both], (128 / 255) * (1 - 128 / 255))
    synth = PasteSynthesizer(**kw)
    synth._soft_alpha = lambda index, tube: False  # force the hard kernel onto soft tubes
    with pytest.raises(AssertionError):
        _assert_same_sample(synth(np.random.default_rng(0)), b)


def test_nearest_map_is_the_numpy_index():
    from stal.synthesis.paste import _nearest_index
    for size, source in [(1, 1), (7, 7), (5, 13), (13, 5), (224, 97), (97, 224), (61, 61 * 3 + 1)]:
        np.testing.assert_array_equal(kernels._nearest_map(size, source), _nearest_index(size, source))


def test_training_item_reads_the_visible_sources_from_the_crops():
    """sample_to_item's masks from the sparse provenance equal those of the dense one."""
    import torch

    from stal.data.batch import sample_to_item
    from stal.structures import Provenance

    rng = np.random.default_rng(23)
    bank = _walkers(rng, n=4, T=8, h=30, w=22)
    bgs = ArrayBackgrounds(rng.integers(0, 256, (1, 8, 40, 48, 3), dtype=np.uint8))
    synth = PasteSynthesizer(tubes=bank, backgrounds=bgs, num_frames=8, height=40, width=48, num_classes=3,
                             placement=PlacementSpec(actors_min=2, actors_max=4, scale_min=0.15, scale_max=0.35,
                                                     partial_prob=0.6, keep_inside=False),
                             interpolation="nearest", clip_dtype="uint8")
    hidden = 0
    for i in range(12):
        sparse = synth(np.random.default_rng([3, i]))
        a = sample_to_item(sparse, [0.5] * 3, [0.25] * 3)
        assert sparse.provenance._alpha is None  # the item did not build the dense alpha
        sparse.provenance = Provenance(sparse.provenance.ids, sparse.provenance.alpha)
        b = sample_to_item(sparse, [0.5] * 3, [0.25] * 3)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        hidden += int(len(a["boxes"]) < sparse.provenance.num_sources)
    assert hidden  # some draws have a source absent at the keyframe (its mask is left out)


def test_kernels_compile_without_a_cache_where_none_is_writable(monkeypatch):
    """numba.njit(cache=True) raises at decoration when no cache directory is writable (a
    read-only install without NUMBA_CACHE_DIR); the kernels then compile per process."""
    real = kernels.numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real(**options)
    monkeypatch.setattr(kernels.numba, "njit", njit)

    def add_one(x):
        return x + 1
    assert kernels._jit(add_one)(1) == 2


def test_per_tube_statistics_are_bounded(monkeypatch):
    """The synthesizer keeps the alpha statistics of the most recently used tubes only."""
    monkeypatch.setattr("stal.synthesis.paste.TUBE_STATS_CACHE", 2)
    rng = np.random.default_rng(24)
    bank = _walkers(rng, n=5, T=4, h=12, w=10)
    synth = PasteSynthesizer(tubes=bank, backgrounds=ArrayBackgrounds(np.zeros((1, 4, 64, 64, 3), np.uint8)),
                             placement=PlacementSpec(actors_min=1, actors_max=1, scale_min=0.1, scale_max=0.2),
                             num_frames=4, height=64, width=64, num_classes=3, clip_dtype="uint8")
    seen = {synth(np.random.default_rng(i)).info["tubes"][0] for i in range(20)}
    assert len(seen) > 2
    assert len(synth._soft) == len(synth._boxes) == 2
