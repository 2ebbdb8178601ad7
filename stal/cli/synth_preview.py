#!/usr/bin/env python
"""Preview the training synthesis: ``python tools/synth_preview.py --cfg CFG --num N --out DIR [KEY VALUE ...]``.

Writes DIR/sample_%04d.npz (clip, background, ids, alpha, boxes, labels, keyframe; see
docs/synthesis.md), a PNG contact sheet (background / clip / provenance overlay with boxes)
and a GIF per sample. Sample i is drawn with the generator of (RNG_SEED, epoch 0, i), the
same as training; two runs with the same config write byte-identical files.
"""

from __future__ import annotations

import argparse
import sys

from stal.config import load_cfg
from stal.data.build import build_synthesizer
from stal.data.synthesized import sample_rng
from stal.errors import StalError
from stal.synthesis.preview import write_preview
from stal.synthesis.transforms import apply


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config (SYNTHESIS.* keys)")
    p.add_argument("--num", type=int, default=4, help="number of samples")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--epoch", type=int, default=0, help="epoch whose samples are drawn")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:

        cfg = load_cfg(args.cfg_file, args.opts)
        synth, steps = build_synthesizer(cfg)
        for i in range(args.num):
            rng = sample_rng(cfg.RNG_SEED, args.epoch, i)
            write_preview(args.out, i, apply(synth(rng), rng, steps))
    except StalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.num} samples (npz, png, gif) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
