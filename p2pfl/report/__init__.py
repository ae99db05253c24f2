"""Plots of a run folder or a sweep folder (``p2pfl report DIR``).

A run folder gets, in ``DIR/plots/``:

``rounds.png``     benign accuracy and attack success by round: the benign mean with a
                   min-max band, the adversaries' own models marked
``hops.png``       attack success by round, benign nodes grouped by hop distance to the
                   nearest adversary
``topology.png``   the graph, adversaries as red triangles, benign nodes coloured by their
                   final attack success (final accuracy without an attack)
``updates.png``    histograms of benign vs malicious weight-update values in sampled rounds
                   (needs ``updates/``, written by in-process runs, :mod:`p2pfl.updates`)
``wall.png``       benign accuracy (and attack success) against wall-clock time: every
                   benign node's evaluations and the per-round (per-tick) benign mean
``distances.png``  L2 distance spread by round: pairwise distances among benign updates vs
                   each adversary's distance to them (from ``updates.jsonl``, else from the
                   attacks' own stealth statistics in ``metrics.jsonl``)

A sweep folder (see :mod:`p2pfl.sweep`) gets one ``compare-<axis>.png`` per axis: final
attack success and accuracy of every cell by that axis' values, and the attack success by
round averaged over the cells sharing a value, and one ``wall-<axis>.png``: the benign mean
accuracy (and attack success) of every cell against wall-clock time, coloured by the axis'
value (e.g. sync and async side by side when a sweep varies ``mode``). Plots that lack
their data are skipped.

Everything uses matplotlib's object API on the Agg canvas (no pyplot state, no display).
Run plots are in :mod:`p2pfl.report.runs`, sweep plots in :mod:`p2pfl.report.sweeps`, the
graph drawing in :mod:`p2pfl.report.graph`; this module turns ``p2pfl node`` outputs into a
run folder (:func:`assemble`) and dispatches (:func:`report`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from ..config import RunConfig
from ..errors import ConfigError
from ..metrics import MetricsWriter, read_records, write_summary
from ..runfolder import SUMMARY_FILE, is_sweep, load_sweep, run_summary
from ._style import PLOTS_DIR
from .graph import draw
from .runs import (
    RunData,
    plot_distances,
    plot_hops,
    plot_rounds,
    plot_topology,
    plot_update_histograms,
    plot_wall,
    timed,
    write_run_plots,
)
from .sweeps import plot_axis, plot_axis_wall, write_sweep_plots

log = logging.getLogger(__name__)


def assemble(folder: str | Path) -> bool:
    """Turn a folder of ``p2pfl node`` outputs into a run folder that can be plotted.

    ``nodes/node-I.jsonl`` (gathered from the machines) are merged into ``metrics.jsonl``
    and summarised into ``summary.json``; ``config.toml`` is written from
    ``deployment.toml`` when missing. Adversaries are the nodes whose records carry a
    non-benign role. Returns False (and changes nothing) when there is nothing to do.
    """
    from ..deployment import Deployment

    folder = Path(folder)
    files = sorted((folder / "nodes").glob("node-*.jsonl"))
    if (folder / SUMMARY_FILE).is_file() or not files:
        return False
    config = None
    if (folder / "config.toml").is_file():
        config = RunConfig.from_toml(folder / "config.toml")
    elif (folder / "deployment.toml").is_file():
        config = Deployment.from_toml(folder / "deployment.toml").config
        (folder / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    records = sorted((r for f in files for r in read_records(f)), key=lambda r: (int(r["round"]), int(r["node"])))
    if not records:
        return False
    adversaries = sorted({int(r["node"]) for r in records if r.get("role", "benign") != "benign"})
    topo = None
    if config is not None and adversaries:
        topo = RunData(name=config.name, config=config, summary={}, records=[], adversaries=()).topology()
    by_round: dict[int, float] = defaultdict(float)
    for r in records:
        by_round[int(r["round"])] = max(by_round[int(r["round"])], float((r.get("time") or {}).get("round", 0.0)))
    if not (folder / "metrics.jsonl").is_file():
        with MetricsWriter(folder / "metrics.jsonl") as writer:
            for r in records:
                writer.write(r)
    summary = run_summary(records, topo, adversaries, mode=config.mode if config is not None else "sync",
                          extra={"adversaries": adversaries, "wall_time": round(sum(by_round.values()), 3),
                                 "assembled_from": [f"nodes/{f.name}" for f in files]})
    write_summary(folder / SUMMARY_FILE, summary)
    return True


def report(folder: str | Path, *, dest: str | Path | None = None, runs: bool = False) -> list[Path]:
    """Plots for a run or a sweep folder; ``runs=True`` also plots every run of a sweep."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("report", str(folder), "an existing run or sweep folder")
    if is_sweep(folder):
        written = write_sweep_plots(folder, dest)
        if runs:
            _, cells = load_sweep(folder)
            for run_dir in sorted({c["run_dir"] for c in cells if c.get("summary")}):
                written += write_run_plots(run_dir)
        return written
    if assemble(folder):
        log.info("%s: merged the nodes' metrics into metrics.jsonl and summary.json", folder)
    if (folder / SUMMARY_FILE).is_file():
        return write_run_plots(folder, dest)
    raise ConfigError("report", str(folder), "a run folder (summary.json) or a sweep folder (sweep.json)")


__all__ = [
    "PLOTS_DIR",
    "RunData",
    "assemble",
    "draw",
    "is_sweep",
    "plot_axis",
    "plot_axis_wall",
    "plot_distances",
    "plot_hops",
    "plot_rounds",
    "plot_topology",
    "plot_update_histograms",
    "plot_wall",
    "report",
    "timed",
    "write_run_plots",
    "write_sweep_plots",
]
