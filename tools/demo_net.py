#!/usr/bin/env python
"""``python tools/demo_net.py`` runs the console script of ``stal/cli/demo_net.py`` (``--help`` there)."""

import os
import sys

# A checkout's own stal first, installed or not (another worktree's copy may be installed).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stal.cli.demo_net import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
