"""Pieces the commands share."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from stal.errors import StalError

# Exit status of a command given bad input (a usage error, a malformed or missing file).
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``error:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def run_reporting_errors(work: Callable[[], None], *, out: str) -> int:
    """Run ``work``, which writes ``out``: 0 and ``-> out``, or, for bad input (StalError,
    ValueError) or a file error, one ``error:`` line on stderr and EXIT_BAD_INPUT."""
    try:
        work()
    except (StalError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. the output directory does not exist
        print(f"error: {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"-> {out}")
    return 0
