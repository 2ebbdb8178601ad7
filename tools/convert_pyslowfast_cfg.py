#!/usr/bin/env python
"""``python tools/convert_pyslowfast_cfg.py`` runs the console script of ``stal/cli/convert_pyslowfast_cfg.py`` (``--help`` there)."""

import os
import sys

# A checkout's own stal first, installed or not (another worktree's copy may be installed).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.cli.convert_pyslowfast_cfg import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
