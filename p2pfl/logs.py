"""Logging for the command line: one call sets the level from ``-v``/``-q`` and the format."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """WARNING by default (and with ``quiet``), INFO with ``-v``, DEBUG with ``-vv``; to stderr."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


__all__ = ["setup_logging"]
