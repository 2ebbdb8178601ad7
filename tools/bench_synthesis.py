#!/usr/bin/env python
"""Synthesis cost against video decoding: ``python tools/bench_synthesis.py [--rounds 30]``.

Composes a T x S x S clip with A actors (tubes cut from real static-camera footage by
background subtraction: vtest.avi when opencv-doc is installed, else a generated video)
and times it against decoding the same clip from an mp4 (H.264, written once) with decord
and with PyAV, interleaved round by round so load changes hit all rows alike. Prints a
Markdown table of medians (wall clock).

A compose row is one ``synth(rng)`` call: everything the loader does to make the Sample
(background fetch from memory -- the decode it is compared with is not in it --, placement,
resizing the tubes, blending, the sparse provenance, boxes). Kept across calls, as in the
loader: the tube arrays (the bank's cache) and, per tube, whether its alpha is soft and its
per-frame alpha boxes; nothing that depends on a draw (scale, position, flip) is cached.
The loader default (nearest, hard edges) runs the compiled kernel of
``stal.synthesis.kernels``: its one-off JIT compile (or cache load) falls in round 0, which
every row drops (warm-up), as the first training step pays it once per process. The
Sample's dense ``ids`` and ``alpha`` are built from the sparse crops only when read (the
training item reads the crops); the row "dense ids and alpha of that Sample" times reading
both, what a consumer that wants them (previews, mixers) pays on top.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--actors", type=int, default=3)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--video", default=VTEST, help="static-camera footage for tubes and background")
    return p.parse_args(argv)


def _sources(video: str, frames: int, size: int, workdir: str):
    """(tube bank, background clips uint8 (1, T, S, S, 3), footage name)."""
    from stal.synthesis.extraction import SubtractionSpec, extract_tubes, plate_of_video
    from stal.synthesis.generated import encode_video, static_camera_frames
    from stal.synthesis.backgrounds import crop_windows, resize_windows, CameraMotion
    from stal.synthesis.tube_bank import MemoryTubeBank

    if not os.path.isfile(video):
        clip, _, _ = static_camera_frames(num_frames=48, height=192, width=256)
        video = os.path.join(workdir, "generated.mp4")
        encode_video(video, clip)
    spec = SubtractionSpec(segment=frames, min_frames=frames)
    plate, _ = plate_of_video(video, stride=1, plate_frames=30)
    tubes = [t for t in extract_tubes(video, spec, max_frames=4 * frames, plate=plate) if len(t["rgb"]) >= frames]
    if not tubes:
        raise SystemExit(f"no tube of {frames} frames found in {video}")
    bank = MemoryTubeBank([np.concatenate([t["rgb"], t["alpha"][..., None]], -1) for t in tubes],
                          [[0]] * len(tubes), classes=["person"])
    windows = crop_windows(np.random.default_rng(0), num_frames=frames, source_hw=plate.shape[:2],
                           out_hw=(size, size), min_scale=1.0, motion=CameraMotion())
    return bank, resize_windows(plate[None], windows, (size, size))[None], os.path.basename(video)


def _median_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


# Parts of the loader-default compose row, timed inside it: (row name, function of
# stal.synthesis.paste). The rest of the row is Python: the background fetch, the call's
# arguments, the crops and the Sample.
PARTS = (("  of which the compiled call (background copy, paste, weights, boxes)", "compose_hard_nearest"),
         ("  of which the placement draw", "place_actors"))


@contextlib.contextmanager
def _stopwatches(spent: dict[str, float]):
    """Within the block, the PARTS functions of stal.synthesis.paste add the seconds of each
    call to ``spent[row name]``."""
    import stal.synthesis.paste as paste

    def timed(name, fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
        return call
    real = {attr: getattr(paste, attr) for _, attr in PARTS}
    try:
        for name, attr in PARTS:
            setattr(paste, attr, timed(name, real[attr]))
        yield
    finally:
        for attr, fn in real.items():
            setattr(paste, attr, fn)


def run_bench(*, frames: int, size: int, actors: int, rounds: int, video: str) -> tuple[list[tuple[str, float]], str]:
    """Rows (name, median ms per clip) and the footage used."""
    import av
    from stal.synthesis.generated import encode_video
    from stal.synthesis.edges import feather_alpha
    from stal.synthesis.paste import ArrayBackgrounds, PasteSynthesizer
    from stal.synthesis.placement import PlacementSpec
    from stal.synthesis.tube_bank import MemoryTubeBank

    with tempfile.TemporaryDirectory() as workdir:
        bank, bg, footage = _sources(video, frames, size, workdir)
        spec = PlacementSpec(actors_min=actors, actors_max=actors, scale_min=0.3, scale_max=0.6)
        # The same tubes with soft mask edges (as box tubes built with --feather have): the
        # compiled blend instead of the hard paste.
        soft = MemoryTubeBank([feather_alpha(t.rgba, 3) for t in bank.tubes], [[0]] * len(bank.tubes),
                              classes=["person"])
        synths = {
            "compose uint8, hard edges (loader default)": PasteSynthesizer(
                tubes=bank, backgrounds=ArrayBackgrounds(bg), placement=spec, num_frames=frames, height=size,
                width=size, num_classes=1, interpolation="nearest", clip_dtype="uint8"),
            "compose uint8, soft-alpha tubes (masks feathered 3 px), nearest": PasteSynthesizer(
                tubes=soft, backgrounds=ArrayBackgrounds(bg), placement=spec, num_frames=frames, height=size,
                width=size, num_classes=1, interpolation="nearest", clip_dtype="uint8"),
            "compose uint8, feathered, bilinear, linear drift": PasteSynthesizer(
                tubes=bank, backgrounds=ArrayBackgrounds(bg), placement=PlacementSpec(
                    actors_min=actors, actors_max=actors, trajectory="linear"), num_frames=frames, height=size,
                width=size, num_classes=1, edge="feather", interpolation="bilinear", clip_dtype="uint8"),
            "compose float32, hard edges": PasteSynthesizer(
                tubes=bank, backgrounds=ArrayBackgrounds(bg), placement=spec, num_frames=frames, height=size,
                width=size, num_classes=1, interpolation="nearest", clip_dtype="float32"),
        }
        mp4 = os.path.join(workdir, "clip.mp4")
        encode_video(mp4, next(iter(synths.values()))(np.random.default_rng(0)).clip, fps=25, crf=23)

        def pyav():
            with av.open(mp4) as c:
                return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])

        decoders = {"decode mp4, PyAV": pyav}
        try:
            import decord

            decoders["decode mp4, decord"] = lambda: decord.VideoReader(mp4, num_threads=1).get_batch(
                list(range(frames))).asnumpy()
        except ImportError:
            pass
        dense = "dense ids and alpha of that Sample (built on first read)"
        # For scale: copying a clip-sized array (its own, so that the synthesizers' background
        # is not warmed by it), timed after the decoders like the first compose row.
        copy, other = "for scale: copy an array of the clip's size (numpy)", bg[0].copy()
        default = next(iter(synths))
        spent = {name: 0.0 for name, _ in PARTS}
        times: dict[str, list[float]] = {name: [] for name in [default, *spent, dense, copy, *synths, *decoders]}
        with _stopwatches(spent):
            for r in range(rounds + 1):
                for name, synth in synths.items():
                    spent.update({part: 0.0 for part in spent})
                    t = time.perf_counter(); sample = synth(np.random.default_rng(r)); times[name].append(time.perf_counter() - t)
                    if name == default:
                        for part, seconds in spent.items():
                            times[part].append(seconds)
                        t = time.perf_counter(); sample.provenance.ids, sample.provenance.alpha
                        times[dense].append(time.perf_counter() - t)
                for name, fn in decoders.items():
                    t = time.perf_counter(); out = fn(); times[name].append(time.perf_counter() - t)
                    assert out.shape == (frames, size, size, 3), out.shape
                t = time.perf_counter(); other.copy(); times[copy].append(time.perf_counter() - t)
        return [(name, _median_ms(ts[1:])) for name, ts in times.items()], footage


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows, footage = run_bench(frames=args.frames, size=args.size, actors=args.actors, rounds=args.rounds,
                              video=args.video)
    ms = dict(rows)
    ref = {k: v for k, v in ms.items() if k.startswith("decode")}
    print(f"{args.frames}x{args.size}x{args.size} clip, {args.actors} actors cut from {footage}, "
          f"median of {args.rounds} rounds, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| step | ms / clip | " + " | ".join(f"/ {k.split(', ')[1]}" for k in ref) + " |")
    print("|---|---:|" + "---:|" * len(ref))
    for name, value in rows:
        print(f"| {name} | {value:.2f} | " + " | ".join(f"{100 * value / r:.0f}%" for r in ref.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
