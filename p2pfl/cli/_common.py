"""What the commands share: the console and the data search path (with ``$P2PFL_DATA``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..plan import search_dirs


def console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def search_path(data_dirs: Sequence[str], config: RunConfig | None = None, *, only: bool = False) -> list[Path]:
    """--data-dir folders, the config's data.data_dir, $P2PFL_DATA, ~/.cache/p2pfl
    (:func:`p2pfl.plan.search_dirs`); with ``only``, exactly the --data-dir folders. The CLI
    is the only place that reads the environment."""
    return search_dirs(data_dirs, config, env_value=os.environ.get("P2PFL_DATA"), only=only)
