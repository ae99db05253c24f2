"""Figure helpers shared by the run and sweep plots: colours, the Agg figure, titles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLOTS_DIR = "plots"
BENIGN = "#1f77b4"
ATTACK = "#d62728"
CONF = "#9467bd"
_DPI = 110


def figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def title(fig: Any, run: Any, what: str) -> None:
    sub = run.subtitle()
    fig.suptitle(f"{run.name}: {what}" + (f"\n{sub}" if sub else ""), fontsize=11)


def col(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) is not None else np.nan for r in rows])


def nodes(k: int) -> str:
    return f"{k} node" if k == 1 else f"{k} nodes"


def integer_rounds(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))



def cmap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


def label(value: Any) -> str:
    return Path(value).stem if isinstance(value, str) and value.endswith(".toml") else str(value)
