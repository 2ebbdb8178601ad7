"""Pieces the commands share."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

# Exit status of a command given bad input (a usage error, a malformed or missing file).
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
