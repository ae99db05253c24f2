"""Run folders and sweep folders on disk: what is written where, and the one run summary.

A run folder (written by :func:`p2pfl.launch.run`, or assembled from ``p2pfl node``
outputs by :func:`p2pfl.report.assemble`)::

    config.toml      the resolved settings
    plan.json        graph, adversaries, data source, parameter count
    metrics.jsonl    one line per node per round
    summary.json     per-round aggregates over benign nodes and a ``final`` object
    final/node-I.npy the final model of every node

A sweep folder (written by :func:`p2pfl.sweep.run_sweep`, read by :mod:`p2pfl.report`)
holds ``sweep.json`` (the axes and every cell) and one run folder per cell in ``runs/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import RunConfig
from .errors import ConfigError
from .metrics import summarize, write_summary

if TYPE_CHECKING:
    from .plan import Plan
    from .topology import Topology

CONFIG_FILE = "config.toml"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
FINAL_DIR = "final"
MANIFEST = "sweep.json"
RUNS_DIR = "runs"


# ---- run folders ---------------------------------------------------------------------------------
Progress = Callable[[Mapping[str, Any]], None]


@dataclass
class RunResult:
    """What a finished run leaves behind (also on disk in ``out``)."""

    config: RunConfig
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    final_models: dict[int, np.ndarray]
    adversaries: tuple[int, ...]
    out: Path | None
    wall_time: float
    data_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.summary.get("final", {})


def finish_run(out: Path | None, plan: Plan, records: list[dict[str, Any]],
               models: dict[int, np.ndarray], wall: float) -> dict[str, Any]:
    """The run summary of a finished run (written with the final models when ``out``)."""
    summary = run_summary(records, plan.topology, plan.adversaries, mode=plan.config.mode,
                          extra={"wall_time": round(wall, 3), "data": plan.bundle.source,
                                 "adversaries": list(plan.adversaries), "params": plan.dim})
    if out is not None:
        write_summary(out / SUMMARY_FILE, summary)
        write_final(out, models)
    return summary


def prepare_out(out: str | Path | None, *, overwrite: bool = False) -> Path | None:
    """Create the run folder; refuse to mix a new run into an existing one."""
    if out is None:
        return None
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError("out", str(path), "a new or empty folder (pass --overwrite to replace it)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_plan(out: Path, plan: Plan) -> None:
    """``config.toml`` and ``plan.json`` of a run about to start."""
    (out / CONFIG_FILE).write_text(plan.config.to_toml(), encoding="utf-8")
    (out / PLAN_FILE).write_text(json.dumps(plan.describe(), indent=2) + "\n", encoding="utf-8")


def write_final(out: Path, models: Mapping[int, np.ndarray]) -> None:
    """Every node's final model, ``final/node-I.npy``."""
    final_dir = out / FINAL_DIR
    final_dir.mkdir(exist_ok=True)
    for i, x in models.items():
        np.save(final_dir / f"node-{i}.npy", x)


def run_summary(records: list[dict[str, Any]], topology: Topology | None, adversaries: Sequence[int], *,
                mode: str = "sync", extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``summary.json`` of a run: its records (sorted in place by round and node)
    summarised over benign nodes, with attack success by hop distance to the nearest
    adversary and by number of malicious neighbours when the graph is known, and ``extra``
    (wall time, data source, ...). Async runs summarise each node's last tick."""
    records.sort(key=lambda r: (int(r["round"]), int(r["node"])))
    hops = malicious = None
    advs = set(adversaries)
    if topology is not None and advs:
        hops = {i: int(h) for i, h in enumerate(topology.hops(sorted(advs)))}
        malicious = {i: sum(j in advs for j in topology.neighbours(i)) for i in range(topology.n)}
    return summarize(records, hops=hops, malicious_neighbours=malicious, extra=extra,
                     last_per_node=mode == "async")


# ---- sweep folders -------------------------------------------------------------------------------
def is_sweep(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def load_sweep(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest of a sweep folder and its cells, each with ``run_dir`` and ``summary``
    (None for a cell that has not finished)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("sweep", str(folder), f"a sweep folder with a readable {MANIFEST}") from None
    cells = []
    cache: dict[str, dict[str, Any] | None] = {}
    for c in manifest.get("cells", []):
        run_dir = folder / c["run"]
        if c["run"] not in cache:
            try:
                cache[c["run"]] = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                cache[c["run"]] = None
        cells.append({**c, "run_dir": run_dir, "summary": cache[c["run"]]})
    return manifest, cells


__all__ = ["MANIFEST", "RUNS_DIR", "Progress", "RunResult", "finish_run", "is_sweep", "load_sweep", "prepare_out", "run_summary", "write_final",
           "write_plan"]
