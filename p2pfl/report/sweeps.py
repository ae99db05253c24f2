"""The comparison plots of a sweep folder (see :mod:`p2pfl.report`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError
from ..runfolder import load_sweep
from . import _style as st
from .runs import timed


# ---- sweep plots -------------------------------------------------------------------------------
def plot_axis(axis: str, values: Sequence[Any], cells: Sequence[Mapping[str, Any]], path: Path,
              title: str) -> Path | None:
    """One axis of a sweep: final metrics of every cell by value, and attack success by round.

    ``cells``: dicts with ``settings`` (axis -> value) and ``summary`` (the run's summary).
    """
    done = [c for c in cells if c.get("summary")]
    if not done:
        return None
    has_attack = any("attack_success_mean" in c["summary"].get("final", {}) for c in done)
    metrics = [("accuracy_mean", "final benign accuracy (mean)")]
    if has_attack:
        metrics.insert(0, ("attack_success_mean", "final attack success (benign mean)"
                           + ("" if axis == "adversaries" else ", cells with adversaries")))
    panels = len(metrics) + (1 if has_attack else 0)
    fig = st.figure(4.8 * panels, 4.8)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    # attack panels: only cells that had adversaries (others would dilute the means with
    # zeros), except along the adversaries axis itself
    attacked = [c for c in done if c["summary"].get("adversaries") or axis == "adversaries"] or done
    xs = np.arange(len(values))
    rng = np.random.default_rng(0)
    cmap = st.cmap("tab10")
    for ax, (key, label) in zip(axes, metrics, strict=False):
        pool = attacked if key.startswith("attack") else done
        for k, v in enumerate(values):
            ys = [c["summary"]["final"][key] for c in pool
                  if c["settings"].get(axis) == v and key in c["summary"].get("final", {})]
            if not ys:
                continue
            jitter = rng.uniform(-0.12, 0.12, size=len(ys))
            ax.scatter(xs[k] + jitter, ys, s=18, alpha=0.6, color=cmap(k % 10),
                       label="one cell" if k == 0 else None)
            ax.hlines(float(np.mean(ys)), xs[k] - 0.3, xs[k] + 0.3, color="black", lw=2,
                      label="mean over cells" if k == 0 else None)
        ax.set_xticks(xs, [st.label(v) for v in values], rotation=20 if len(values) > 4 else 0)
        ax.set(xlabel=axis, ylabel=label, ylim=(-0.03, 1.03), title=label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    if has_attack:
        ax = axes[-1]
        for k, v in enumerate(values):
            by_round: dict[int, list[float]] = defaultdict(list)
            for c in attacked:
                if c["settings"].get(axis) != v:
                    continue
                for row in c["summary"].get("rounds", []):
                    if "attack_success_mean" in row:
                        by_round[int(row["round"])].append(float(row["attack_success_mean"]))
            if by_round:
                rs = sorted(by_round)
                ax.plot(rs, [np.mean(by_round[t]) for t in rs], marker="o", ms=3, color=cmap(k % 10),
                        label=st.label(v))
        ax.set(xlabel="round", ylabel="attack success (mean over cells with adversaries)", ylim=(-0.03, 1.03),
               title="attack success by round")
        ax.grid(alpha=0.3)
        ax.legend(title=axis, fontsize=8)
        st.integer_rounds(ax)
    fig.suptitle(f"{title}: results by {axis} ({len(done)} cells; each point is one cell, "
                 "the other axes pooled)", fontsize=11)
    return st.save(fig, path)


def _cell_config(cell: Mapping[str, Any]) -> RunConfig | None:
    try:
        return RunConfig.from_toml(Path(cell["run_dir"]) / "config.toml")
    except (KeyError, OSError, ConfigError):
        return None


def plot_axis_wall(axis: str, values: Sequence[Any], cells: Sequence[Mapping[str, Any]], path: Path,
                   title: str) -> Path | None:
    """Benign mean accuracy (and attack success) of every cell against wall time, by axis value."""
    done = [c for c in cells if any("wall_mean" in row and "accuracy_mean" in row
                                    for row in (c.get("summary") or {}).get("rounds", []))]
    if not done:
        return None
    if not any(timed(_cell_config(c)) for c in done):  # lock-step sweeps keep their plot set
        return None
    keys = [("accuracy_mean", "benign mean test accuracy")]
    if any("attack_success_mean" in row for c in done for row in c["summary"]["rounds"]):
        keys.append(("attack_success_mean", "attack success (benign mean)"))
    fig = st.figure(6.0 * len(keys), 4.8)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    cmap = st.cmap("tab10")
    for ax, (key, label) in zip(axes, keys, strict=True):
        for k, v in enumerate(values):
            first = True
            for c in done:
                if c["settings"].get(axis) != v:
                    continue
                rows = [row for row in c["summary"]["rounds"] if "wall_mean" in row and key in row]
                if not rows:
                    continue
                ax.plot(st.col(rows, "wall_mean"), st.col(rows, key), marker="o", ms=3, alpha=0.8,
                        color=cmap(k % 10), label=st.label(v) if first else None)
                first = False
        ax.set(xlabel="wall-clock time since start (s)", ylabel=label, ylim=(-0.03, 1.03),
               title=f"{label} against wall time")
        ax.grid(alpha=0.3)
        ax.legend(title=axis, fontsize=8)
    fig.suptitle(f"{title}: by {axis} against wall-clock time (one line per cell)", fontsize=11)
    return st.save(fig, path)


def write_sweep_plots(folder: str | Path, dest: str | Path | None = None) -> list[Path]:
    """One comparison plot per axis of the sweep in ``folder`` (``compare-<axis>.png``)."""
    folder = Path(folder)
    manifest, cells = load_sweep(folder)
    dest = Path(dest) if dest is not None else folder / st.PLOTS_DIR
    written = []
    for axis, values in manifest["axes"].items():
        if len(values) < 2:
            continue
        safe = axis.replace(".", "-")
        path = plot_axis(axis, values, cells, dest / f"compare-{safe}.png", manifest.get("title", folder.name))
        if path is not None:
            written.append(path)
        path = plot_axis_wall(axis, values, cells, dest / f"wall-{safe}.png", manifest.get("title", folder.name))
        if path is not None:
            written.append(path)
    return written


__all__ = ["plot_axis", "plot_axis_wall", "write_sweep_plots"]
