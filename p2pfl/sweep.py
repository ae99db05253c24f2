"""Experiment files: a base run plus sweep axes, run as a grid of resumable run folders.

An experiment file is a run TOML (the keys of :class:`~p2pfl.config.RunConfig`) with an
optional ``base`` (another run TOML, relative to this file, whose settings these keys
override) and a ``[sweep]`` table of axes, dotted keys mapping to lists::

    base = "paper_fmnist_cpu.toml"
    rounds = 8

    [sweep]
    topology = ["ring", "torus"]
    adversaries = [0, 1, 2]
    "attack.name" = ["boost", "altmin"]
    "defence.name" = ["none", "topk-clip"]
    seed = [0, 1]

``p2pfl sweep FILE --out DIR [--jobs N]`` runs every combination (a *cell*), each in
``DIR/runs/<name>`` with a name built from the cell's settings
(``topology-ring_adversaries-2_attack-boost_defence-none_seed-0``), and writes:

``sweep.json``    the axes, the base settings and every cell (what ``p2pfl report`` reads)
``results.csv``   one row per cell: its settings, final benign accuracy mean/min, final
``results.md``    attack success and target confidence, the first round the attack success
                  reaches 0.9 (``never``), the rounds in which the adversaries passed the
                  distance-spread stealth test (``k/n``), the adversaries' mean update norm
                  over their benign update norm and their announced models' accuracy
                  (rounds they attacked), wall time and status
``plots/``        one comparison plot per axis (:func:`p2pfl.report.write_sweep_plots`)

Resumable: a cell whose folder holds a complete ``summary.json`` of the same settings is
skipped; a folder without one (a run that was interrupted) is wiped and run again.
Cells that are the same run are run once: with no adversaries, the attack's settings
other than the auxiliary set (``target``, ``aux_size``) and the placement change nothing.
``--jobs N`` runs N cells at a time, each in its own process (one training thread each).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .attacks.backdoor import BACKDOOR_PARAMS
from .config import RunConfig, flat_settings, read_toml
from .errors import ConfigError
from .experiment import rounds_to
from .plan import validate
from .runfolder import MANIFEST, RUNS_DIR, load_sweep

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
THRESHOLD = 0.9
SWEEP_SAMPLE_SIZE = 2_000  # coordinates of each update kept for histograms, per sampled round

Event = Callable[[Mapping[str, Any]], None]

_SCALARS = (str, int, float, bool)
# The backdoor (auxiliary set, success set): shared by every attack, so clean cells that differ
# in it measure different things.
_PLAN_ATTACK_PARAMS = ("target", "aux_size", *BACKDOOR_PARAMS)


# ---- experiment files ----------------------------------------------------------------------------


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path, field_name: str) -> dict[str, Any]:
    return read_toml(path, field_name)


def resolve_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read an experiment file, following ``base = "other.toml"`` (relative to the file)."""
    path = Path(path)
    raw = _read_toml(path, "base" if _seen else "experiment")
    base_ref = raw.pop("base", None)
    if base_ref is None:
        return raw
    if not isinstance(base_ref, str):
        raise ConfigError("base", base_ref, "the path of a run TOML file, relative to this file")
    base_path = (path.parent / base_ref).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError("base", base_ref, "a file that does not include itself")
    base = resolve_file(base_path, (*_seen, path.resolve()))
    if "sweep" in base:
        raise ConfigError("base", base_ref, "a run file without a [sweep] table")
    return _merge(base, raw)


def cell_key(config: RunConfig) -> str:
    """Equal for configs that are the same run (see the module docstring); hex, 16 chars."""
    tree = config.to_mapping()
    tree.pop("name", None)
    tree["data"].pop("data_dir", None)
    tree["data"].pop("download", None)
    listed = any(getattr(r, "adversarial", False) for r in getattr(config, "roles", ()))
    if config.adversaries == 0 and not listed:
        attack = tree["attack"]
        tree["attack"] = {"name": "none" if attack["name"] == "none" else "*",
                          **{k: attack[k] for k in _PLAN_ATTACK_PARAMS if k in attack}}
        tree.pop("placement", None)
    blob = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _slug_key(key: str, taken: Sequence[str]) -> str:
    parts = key.split(".")
    short = parts[0] if parts[-1] == "name" else parts[-1]
    return key.replace(".", "-") if short in taken else short


def _slug_value(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str) and value.endswith(".toml"):
        text = Path(value).stem
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


@dataclass(frozen=True)
class Cell:
    """One combination of axis values: its settings, its run config and its folder name."""

    index: int
    name: str
    settings: dict[str, Any]
    config: RunConfig
    key: str


@dataclass
class Sweep:
    """A base run and the axes to sweep (dotted setting -> values)."""

    base: RunConfig
    axes: dict[str, list[Any]] = field(default_factory=dict)
    title: str = "sweep"
    source: str | None = None

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Sweep:
        path = Path(path)
        raw = resolve_file(path)
        return cls.from_mapping(raw, title=path.stem, source=str(path), overrides=overrides)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, title: str = "sweep", source: str | None = None,
                     overrides: Mapping[str, Any] | None = None) -> Sweep:
        raw = dict(raw)
        table = raw.pop("sweep", {}) or {}
        if not isinstance(table, Mapping):
            raise ConfigError("sweep", table, "a table of axes: dotted setting = [values]")
        axes: dict[str, list[Any]] = {}
        for key, values in flat_settings(table).items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep.{key}", values, "a non-empty list of values")
            if not all(isinstance(v, _SCALARS) for v in values):
                raise ConfigError(f"sweep.{key}", values, "a list of strings, numbers or booleans")
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"sweep.{key}", values, "a list without repeated values")
            axes[key] = list(values)
        sweep = cls(base=RunConfig.from_mapping(raw), axes=axes, title=title, source=source)
        return sweep.with_overrides(overrides) if overrides else sweep

    def with_overrides(self, overrides: Mapping[str, Any]) -> Sweep:
        """Apply ``--set`` values: a list makes (or replaces) an axis; a scalar fixes the
        setting for every cell (an axis of that key is replaced by the single value)."""
        axes = dict(self.axes)
        fixed: dict[str, Any] = {}
        for key, value in overrides.items():
            if isinstance(value, list):
                if not value:
                    raise ConfigError(key, value, "a non-empty list of values")
                axes[key] = list(value)
            elif key in axes:
                axes[key] = [value]
            else:
                fixed[key] = value
        base = self.base.with_overrides(fixed) if fixed else self.base
        return Sweep(base=base, axes=axes, title=self.title, source=self.source)

    def cells(self) -> list[Cell]:
        """Every combination, validated: a bad value anywhere fails before any cell runs."""
        keys = list(self.axes)
        slugs: list[str] = []
        for k in keys:
            slugs.append(_slug_key(k, slugs))
        out: list[Cell] = []
        names: dict[str, int] = {}
        for index, combo in enumerate(itertools.product(*(self.axes[k] for k in keys))):
            settings = dict(zip(keys, combo, strict=True))
            name = "_".join(f"{s}-{_slug_value(v)}" for s, v in zip(slugs, combo, strict=True)) or "run"
            if name in names:
                names[name] += 1
                name = f"{name}_{names[name]}"
            else:
                names[name] = 0
            try:
                config = self.base.with_overrides(settings) if settings else self.base
            except ConfigError as exc:
                raise ConfigError(f"sweep cell {name}: {exc.field}", exc.value, exc.allowed) from None
            config = config.replace(name=name)
            out.append(Cell(index=index, name=name, settings=settings, config=config, key=cell_key(config)))
        return out

    def validate(self) -> list[Cell]:
        """Build every cell and check its attack, defence and graph (no data is loaded)."""
        from .topology import build_topology

        cells = self.cells()
        graphs: dict[tuple[Any, ...], None] = {}
        for cell in cells:
            cfg = cell.config
            try:
                validate(cfg)
                gkey = (cfg.topology, cfg.nodes, cfg.seed, tuple(sorted(cfg.topology_params.items())))
                if gkey not in graphs:
                    build_topology(cfg.topology, cfg.nodes, seed=cfg.seed, **dict(cfg.topology_params))
                    graphs[gkey] = None
            except ConfigError as exc:
                raise ConfigError(f"sweep cell {cell.name}: {exc.field}", exc.value, exc.allowed) from None
        return cells

    def run(self, out: str | Path, *, jobs: int = 1, search: Sequence[str | Path] = (),
            on_event: Event | None = None, plots: bool = True) -> SweepResult:
        return run_sweep(self, out, jobs=jobs, search=search, on_event=on_event, plots=plots)


# ---- running ---------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep did: the results table rows and how many cells ran, were skipped, failed."""

    out: Path
    rows: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    wall_time: float = 0.0
    plots: list[Path] = field(default_factory=list)


def is_complete(run_dir: Path, config: RunConfig) -> bool:
    """A finished run of the same settings: summary.json with every round, equal cell key."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        stored = RunConfig.from_toml(run_dir / "config.toml")
    except (OSError, ValueError):  # missing, half-written or unreadable (ConfigError is a ValueError)
        return False
    return (cell_key(stored) == cell_key(config) and bool(summary.get("final"))
            and len(summary.get("rounds", [])) == config.rounds)


def _run_cell(mapping: dict[str, Any], run_dir: str, search: list[str], workers: int | None) -> dict[str, Any]:
    """Worker: one cell, in-process, in this (possibly pool) process."""
    from .launch import run
    from .plan import set_torch_threads
    from .updates import RecordUpdates

    set_torch_threads(1)
    started = time.perf_counter()
    try:
        config = RunConfig.from_mapping(mapping)
        result = run(config, out=run_dir, search=search, overwrite=True, workers=workers,
                     hooks=[RecordUpdates(sample_size=SWEEP_SAMPLE_SIZE)])
        return {"ok": True, "wall_time": result.wall_time}
    except Exception as exc:  # reported per cell; the sweep goes on
        log.exception("cell %s failed", Path(run_dir).name)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "wall_time": time.perf_counter() - started}


def _write_manifest(out: Path, sweep: Sweep, cells: Sequence[Cell], runs: Mapping[str, str]) -> None:
    manifest = {
        "title": sweep.title,
        "source": sweep.source,
        "axes": sweep.axes,
        "base": sweep.base.to_mapping(),
        "cells": [{"name": c.name, "settings": c.settings, "run": f"{RUNS_DIR}/{runs[c.key]}", "key": c.key}
                  for c in cells],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def result_row(settings: Mapping[str, Any], run: str, summary: Mapping[str, Any] | None,
               status: str) -> dict[str, Any]:
    """One results row: settings, final metrics, rounds to 0.9 attack success, stealthy rounds, wall time."""
    row: dict[str, Any] = {"cell": "", "run": run, **settings}
    final = (summary or {}).get("final", {})
    row["accuracy_mean"] = final.get("accuracy_mean")
    row["accuracy_min"] = final.get("accuracy_min")
    row["attack_success"] = final.get("attack_success_mean")
    row["target_confidence"] = final.get("target_confidence_mean")
    if summary is None or row["attack_success"] is None:
        row["rounds_to_0.9"] = None
    else:
        hit = rounds_to(summary.get("rounds", []), THRESHOLD)
        row["rounds_to_0.9"] = "never" if hit is None else hit
    stealth = (summary or {}).get("stealth", {})
    measured = stealth.get("update_rounds_measured")
    row["stealthy_rounds"] = None if not measured else f"{stealth['update_rounds_within_benign']}/{measured}"
    row["norm_ratio"] = stealth.get("norm_ratio_mean")
    row["announced_acc"] = stealth.get("announced_acc_mean")
    row["wall_time_s"] = (summary or {}).get("wall_time")
    row["status"] = status
    return row


_METRICS = ("accuracy_mean", "accuracy_min", "attack_success", "target_confidence", "rounds_to_0.9",
            "stealthy_rounds", "norm_ratio", "announced_acc", "wall_time_s", "status")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_results(out: Path, sweep: Sweep, rows: Sequence[Mapping[str, Any]], *, command: str = "") -> None:
    """``results.csv`` (machine-readable) and ``results.md`` (a table to read or paste)."""
    axes = list(sweep.axes)
    columns = ["cell", *axes, *_METRICS, "run"]
    tmp = out / (RESULTS_CSV + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in columns])
    tmp.replace(out / RESULTS_CSV)

    def md(value: Any, digits: int = 3) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return _slug_value(value) if isinstance(value, str) and value.endswith(".toml") else str(value)

    b = sweep.base
    head = ["cell", *axes, "accuracy mean", "accuracy min", "attack success", "target confidence",
            f"rounds to {THRESHOLD}", "stealthy rounds", "norm ratio", "announced acc", "wall time (s)", "status"]
    lines = [f"# {sweep.title}: results", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    adversaries = f"{b.adversaries} adversar{'y' if b.adversaries == 1 else 'ies'}"
    lines += [f"Base: {Path(b.topology).stem}, {b.nodes} nodes, {b.rounds} rounds, {adversaries} "
              f"({b.attack.name}, {b.placement}), defence {b.defence.name}; {b.data.dataset} "
              f"({b.data.partition}), model {b.train.model}, E={b.train.epochs}, batch {b.train.batch_size}, "
              f"lr {b.train.lr}, seed {b.seed}. Axes: "
              + (", ".join(f"{k} = {v}" for k, v in sweep.axes.items()) or "none") + ".", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row.get("cell", "")), *(md(row.get(a)) for a in axes),
                 md(row.get("accuracy_mean")), md(row.get("accuracy_min")), md(row.get("attack_success"), 2),
                 md(row.get("target_confidence")), md(row.get("rounds_to_0.9")), md(row.get("stealthy_rounds")),
                 md(row.get("norm_ratio"), 2), md(row.get("announced_acc")),
                 md(row.get("wall_time_s"), 0), str(row.get("status", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Accuracy: clean test accuracy of the benign nodes at the final round (mean and worst node). "
              "Attack success: share of the auxiliary (target) examples that benign nodes classify as the "
              "adversaries' label, mean over benign nodes at the final round; target confidence: the mean "
              f"probability of that label. Rounds to {THRESHOLD}: the first round the mean attack success "
              f"reached {THRESHOLD}. Stealthy rounds: rounds in which the adversaries' updates were no farther "
              "from the benign updates than those are from each other (the paper's distance-spread test), "
              "of the rounds measured. Norm ratio: the adversaries' update norm over the norm of a benign "
              "update of the same round (1 = honest size), mean over the rounds they attacked; announced acc: "
              "the clean accuracy of the models they announced, same rounds. Cells are numbered as in "
              f"results.csv; run folders are in `{RUNS_DIR}/`.", ""]
    (out / RESULTS_MD).write_text("\n".join(lines), encoding="utf-8")


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    jobs: int = 1,
    search: Sequence[str | Path] = (),
    on_event: Event | None = None,
    plots: bool = True,
    command: str = "",
) -> SweepResult:
    """Run every cell of ``sweep`` not already finished in ``out``; write results and plots."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError("jobs", jobs, "a positive integer")
    started = time.perf_counter()
    cells = sweep.validate()
    out = Path(out)
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    first: dict[str, Cell] = {}
    for cell in cells:
        first.setdefault(cell.key, cell)
    runs = {key: cell.name for key, cell in first.items()}
    _write_manifest(out, sweep, cells, runs)
    emit = on_event or (lambda event: None)
    status: dict[str, str] = {}
    pending: list[Cell] = []
    total = len(first)
    for k, (key, cell) in enumerate(first.items(), 1):
        run_dir = out / RUNS_DIR / runs[key]
        if is_complete(run_dir, cell.config):
            status[key] = "done (earlier)"
            emit({"event": "skip", "cell": cell.name, "n": k, "total": total})
        else:
            if run_dir.exists() and any(run_dir.iterdir()):
                log.info("%s: incomplete or different settings; running it again", run_dir)
            pending.append(cell)
            status[key] = "pending"

    def rows() -> list[dict[str, Any]]:
        table = []
        for cell in cells:
            run = f"{RUNS_DIR}/{runs[cell.key]}"
            summary = None
            if status[cell.key].startswith("done"):
                try:
                    summary = json.loads((out / run / "summary.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    summary = None
            row = result_row(cell.settings, run, summary, status[cell.key])
            row["cell"] = cell.index + 1
            table.append(row)
        return table

    result = SweepResult(out=out, rows=[], skipped=total - len(pending))
    write_results(out, sweep, rows(), command=command)

    def finished(cell: Cell, outcome: Mapping[str, Any], n: int) -> None:
        if outcome.get("ok"):
            status[cell.key] = "done"
            result.ran += 1
            summary = json.loads((out / RUNS_DIR / runs[cell.key] / "summary.json").read_text(encoding="utf-8"))
            row = result_row(cell.settings, "", summary, "done")
            emit({"event": "done", "cell": cell.name, "n": n, "total": total, "row": row,
                  "wall_time": outcome.get("wall_time")})
        else:
            status[cell.key] = f"failed: {outcome.get('error', '?')}"
            result.failed += 1
            emit({"event": "fail", "cell": cell.name, "n": n, "total": total, "error": outcome.get("error")})
        write_results(out, sweep, rows(), command=command)

    search_list = [str(s) for s in search]
    done_count = result.skipped
    if jobs == 1 or len(pending) <= 1:
        for cell in pending:
            emit({"event": "start", "cell": cell.name, "n": done_count + 1, "total": total})
            outcome = _run_cell(cell.config.to_mapping(), str(out / RUNS_DIR / runs[cell.key]), search_list, None)
            done_count += 1
            finished(cell, outcome, done_count)
    else:
        workers = max(1, (os.cpu_count() or 2) // jobs)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx) as pool:
            futures: dict[Future[dict[str, Any]], Cell] = {}
            try:
                emit({"event": "queued", "cells": len(pending), "jobs": min(jobs, len(pending)),
                      "total": total})
                for cell in pending:
                    fut = pool.submit(_run_cell, cell.config.to_mapping(),
                                      str(out / RUNS_DIR / runs[cell.key]), search_list, workers)
                    futures[fut] = cell
                remaining = set(futures)
                while remaining:
                    done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                    for fut in done:
                        done_count += 1
                        try:
                            outcome = fut.result()
                        except Exception as exc:  # the worker process died
                            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                        finished(futures[fut], outcome, done_count)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    result.rows = rows()
    result.wall_time = time.perf_counter() - started
    if plots and any(s.startswith("done") for s in status.values()):
        from .report import write_sweep_plots

        result.plots = write_sweep_plots(out)
    return result


__all__ = [
    "MANIFEST",
    "Cell",
    "Sweep",
    "SweepResult",
    "cell_key",
    "is_complete",
    "load_sweep",
    "resolve_file",
    "result_row",
    "run_sweep",
    "write_results",
]
