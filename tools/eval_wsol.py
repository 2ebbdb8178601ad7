#!/usr/bin/env python
"""``python tools/eval_wsol.py`` runs the console script of ``stal/cli/eval_wsol.py`` (``--help`` there)."""

import os
import sys

# A checkout's own stal first, installed or not (another worktree's copy may be installed).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.cli.eval_wsol import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
