#!/usr/bin/env python
"""Prepare JHMDB-21 from the ACT ground-truth pickle: write the frame index the project reads.

    python data_prep/jhmdb_from_act.py --root datasets/jhmdb [--pkl datasets/jhmdb/JHMDB-GT.pkl] [--split 1] [--train-every 1]

Expects ``ROOT/rgb-images/<video>/%05d.jpg`` and the pickle (``JHMDB-GT.pkl`` from the ACT / YOWO
downloads). Writes ``ROOT/index/`` (AVA-format CSVs of split --split, label map; see
stal.data.act); train with ``configs/jhmdb_guided.yaml``. A video whose frame folder is missing
or holds fewer frames than the pickle says is reported and left out. Split: 1, 2 or 3.
Exit status 2 when the pickle is unusable or a video was left out.
"""

from __future__ import annotations

import sys

from stal.cli.act_index import run


def main(argv: list[str] | None = None) -> int:
    return run(argv, doc=__doc__, pickle="JHMDB-GT.pkl", default_root="datasets/jhmdb",
               split_help="split number (1, 2 or 3)")


if __name__ == "__main__":
    sys.exit(main())
