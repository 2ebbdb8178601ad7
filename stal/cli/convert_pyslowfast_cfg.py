#!/usr/bin/env python
"""Convert a PySlowFast YAML into a stal one: ``python tools/convert_pyslowfast_cfg.py IN.yaml [--out OUT.yaml]``.

Every key of IN.yaml (and every PySlowFast default it leaves out that stal does differently)
gets one report line: ``mapped`` (-> the stal key and value), ``implied`` (stal behaves so
without a key) or ``unsupported`` (with the reason). The stal YAML lists the unsupported keys
in its header. Without ``--out`` the YAML goes to stdout and the report to stderr. Then train
as usual: ``python tools/train_net.py --cfg OUT.yaml --opts KEY VALUE ...``. See
docs/training.md ("Coming from PySlowFast") and stal/config/pyslowfast.py.
"""

from __future__ import annotations

import argparse
import os
import sys


from stal.config.pyslowfast import read_pyslowfast_yaml, to_yaml
from stal.errors import StalError
from stal.io.atomic import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", metavar="IN.yaml", help="a PySlowFast config file")
    parser.add_argument("--out", metavar="OUT.yaml", help="write the stal config here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        if args.out and os.path.exists(args.out) and os.path.samefile(args.out, args.config):
            print(f"error: --out {args.out} is the input file; choose another path", file=sys.stderr)
            return 2
        conv = read_pyslowfast_yaml(args.config)
        text = to_yaml(conv, source=args.config)
        report = sys.stdout if args.out else sys.stderr
        print("\n".join(conv.lines), file=report)
        print(f"{len(conv.lines)} keys: {sum(line.startswith('mapped') for line in conv.lines)} mapped, "
              f"{sum(line.startswith('implied') for line in conv.lines)} implied, {len(conv.unsupported)} unsupported",
              file=report)
        if args.out:
            atomic_write_text(args.out, text)
            print(f"-> {args.out}", file=report)
        else:
            sys.stdout.write(text)
    except (StalError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
