"""``p2pfl sweep`` (a grid of runs from an experiment file) and ``p2pfl report`` (plots)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..config import parse_assignments
from ..errors import ConfigError, P2PFLError
from ..logs import setup_logging
from ..report import report as make_plots
from ..sweep import RESULTS_CSV, RESULTS_MD, THRESHOLD, Sweep, run_sweep
from ._common import search_path


# ---- p2pfl sweep ------------------------------------------------------------------------------------
def _format_done(event: Mapping[str, Any]) -> str:
    row = event.get("row", {})
    text = f"accuracy {row.get('accuracy_mean', float('nan')):.3f} (min {row.get('accuracy_min', float('nan')):.3f})"
    if row.get("attack_success") is not None:
        text += f", attack success {row['attack_success']:.2f}, rounds to {THRESHOLD}: {row['rounds_to_0.9']}"
    wall = event.get("wall_time")
    return text + (f", {wall:.0f}s" if wall is not None else "")


@click.command("sweep")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Sweep folder (resumable).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Cells run at the same time (processes).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a setting for every cell, or an axis with a list: --set 'adversaries=[0,2]'.")
@click.option("--data-dir", "data_dirs", multiple=True, help="Where data sets are looked up first.")
@click.option("--dry-run", is_flag=True, help="List the cells and exit.")
@click.option("--no-plots", is_flag=True, help="Do not write the comparison plots.")
@click.option("-q", "--quiet", is_flag=True)
def sweep(file: str, out: str, jobs: int, sets: tuple[str, ...], data_dirs: tuple[str, ...],
                  dry_run: bool, no_plots: bool, quiet: bool) -> None:
    """Run every combination of an experiment file's [sweep] axes, each in its own run folder."""
    setup_logging(0, quiet)
    overrides = parse_assignments(sets, example="rounds=3 or 'adversaries=[0,2]'")
    if jobs < 1:
        raise ConfigError("--jobs", jobs, "a positive integer")
    sweep = Sweep.from_toml(file, overrides)
    cells = sweep.validate()
    runs = len({c.key for c in cells})
    if dry_run:
        for cell in cells:
            click.echo(f"{cell.index + 1:4d}  {cell.name}")
        click.echo(f"{len(cells)} cells, {runs} distinct runs")
        return

    def show(event: Mapping[str, Any]) -> None:
        if quiet:
            return
        kind, n, total = event["event"], event.get("n"), event["total"]
        where = f"[{n}/{total}]"
        if kind == "queued":
            click.echo(f"running {event['cells']} cells, {event['jobs']} at a time")
        elif kind == "skip":
            click.echo(f"{where} {event['cell']}: finished earlier, skipped")
        elif kind == "start":
            click.echo(f"{where} {event['cell']}: running")
        elif kind == "done":
            click.echo(f"{where} {event['cell']}: {_format_done(event)}")
        elif kind == "fail":
            click.echo(f"{where} {event['cell']}: FAILED: {event['error']}", err=True)

    command = "p2pfl sweep " + " ".join([file, "--out", out, *(f"--set {s}" for s in sets)]
                                        + ([f"--jobs {jobs}"] if jobs > 1 else []))
    result = run_sweep(sweep, out, jobs=jobs, search=search_path(data_dirs), on_event=show,
                       plots=not no_plots, command=command)
    if not quiet:
        click.echo(f"{len(cells)} cells: {result.ran} ran, {result.skipped} finished earlier, "
                   f"{result.failed} failed; {result.wall_time:.0f}s")
        click.echo(f"wrote {Path(out) / RESULTS_CSV}, {Path(out) / RESULTS_MD}"
                   + (f" and {len(result.plots)} plots in {Path(out) / 'plots'}" if result.plots else ""))
    if result.failed:
        raise P2PFLError(f"{result.failed} cell(s) failed; see the log above and rerun to retry them")


# ---- p2pfl report -----------------------------------------------------------------------------------
@click.command("report")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--out", "dest", type=click.Path(file_okay=False), default=None,
              help="Where to write the PNGs (default: FOLDER/plots).")
@click.option("--runs", is_flag=True, help="For a sweep, also plot every run in it.")
def report(folder: str, dest: str | None, runs: bool) -> None:
    """Write PNG plots of a run folder or a sweep folder."""
    written = make_plots(folder, dest=dest, runs=runs)
    for path in written:
        click.echo(f"wrote {path}")
    if not written:
        click.echo("nothing to plot (no finished rounds)")


__all__ = ["report", "sweep"]
