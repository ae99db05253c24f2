"""Regenerate every table of README.md (``make results``) and store it under ``results/``.

Each *entry* reruns one generator (a sweep, an example script, the demo or the benchmarks)
into ``runs/results/<name>/``, turns what it wrote into the README's tables and stores them
as ``results/<dir>/<file>.md`` (exactly the table's lines) with ``results/<dir>/meta.json``
(the commands, the git commit they ran at, the date, the size). README.md shows each table
after a line ``<!-- table: results/<dir>/<file>.md -->``; ``tests/test_readme_tables.py``
checks that every README table equals its stored file.

    python examples/make_results.py                        # every entry at its reduced size
    python examples/make_results.py --only demo,defence_table
    python examples/make_results.py --only performance     # reruns the benchmarks too
    P2PFL_DATA=/path/to/fashion-mnist python examples/make_results.py --full-data --only paper_full
    python examples/make_results.py --report --only demo   # tables from finished runs only

Entries that need the full Fashion-MNIST (``needs_full_data``: about 45 s per round on
2 cores) run only with ``--full-data`` (``make results FULL=1``) and ``$P2PFL_DATA`` set.
The performance table is always rewritten from ``benchmarks/results/*.json``; the benchmarks
themselves (``make bench``) rerun only when ``performance`` is named in ``--only``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pfl.errors import ConfigError
from p2pfl.validate import choice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
RUNS = Path("runs/results")
PY = "python"  # recorded in meta.json; the script runs the generators with sys.executable


# ---------------------------------------------------------------------------- tables


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table, one line per row, no trailing newline."""
    lines = ["| " + " | ".join(str(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def tables_in(text: str) -> list[str]:
    """The markdown tables of ``text`` (runs of lines starting with ``|``), outside code fences."""
    found: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            current.append(line)
            continue
        if current:
            found.append("\n".join(current))
            current = []
    if current:
        found.append("\n".join(current))
    return found


def short(x: float | None, digits: int = 3) -> str:
    """``.684``-style: fixed digits without the leading zero; ``-`` for a missing value."""
    if x is None:
        return "-"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("0.") else text


def success(x: float | None) -> str:
    """Attack success as the README writes it: ``0``, ``.22``, ``1.00``."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return short(x, 2)


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def _sweep_cells(folder: Path) -> list[dict[str, Any]]:
    from p2pfl.sweep import load_sweep

    return load_sweep(folder)[1]


# ---------------------------------------------------------------------------- renderers


DEMO_ROUNDS = (1, 4, 8, 12)


def demo_table(rounds: Mapping[str, Sequence[Mapping[str, Any]]], show: Sequence[int] = DEMO_ROUNDS) -> str:
    """Round by round, accuracy / attack success for the demo's two runs (``none``, ``topk-clip``)."""
    labels = {"none": "no defence", "topk-clip": "`topk-clip`"}
    rows = []
    for defence, records in rounds.items():
        by = {int(r["round"]): r for r in records}
        cells = [f"{by[t]['accuracy_mean']:.3f} / {by[t].get('attack_success_mean', 0.0):.2f}"
                 if t in by else "-" for t in show]
        rows.append([f"{labels.get(defence, defence)}: accuracy / attack success", *cells])
    return markdown_table(["round", *map(str, show)], rows)


def render_demo(run: Path) -> dict[str, str]:
    rounds = {d: _summary(run / d)["rounds"] for d in ("none", "topk-clip")}
    return {"demo.md": demo_table(rounds)}


def defence_matrix(cells: Sequence[Mapping[str, Any]]) -> str:
    """Graph and attack by filter: final accuracy / attack success (``n/a`` where the filter refused)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    filters: list[str] = []
    for c in cells:
        s = c["settings"]
        key = (str(s["topology"]), str(s["attack.name"]))
        f = str(s["defence.name"])
        if f not in filters:
            filters.append(f)
        final = (c.get("summary") or {}).get("final")
        rows.setdefault(key, {})[f] = (
            "n/a" if not final else f"{short(final['accuracy_mean'])} / {success(final.get('attack_success_mean'))}")
    body = [[f"{g}, {a}", *(rows[(g, a)].get(f, "n/a") for f in filters)] for g, a in rows]
    return markdown_table(["graph, attack", *filters], body)


def render_defence(run: Path) -> dict[str, str]:
    return {"defence_table.md": defence_matrix(_sweep_cells(run))}


def paper_rows(cells: Sequence[Mapping[str, Any]]) -> str:
    """One row per run of the CPU-scale paper sweep: final accuracy, attack success, target confidence."""
    body = []
    seen: set[tuple[int, str, str]] = set()
    for c in cells:
        s, summary = c["settings"], c.get("summary")
        adv, attack, defence = int(s.get("adversaries", 1)), str(s["attack.name"]), str(s["defence.name"])
        key = (adv, "-" if adv == 0 else attack, defence)
        if key in seen or summary is None:
            continue
        seen.add(key)
        label = "no adversary" if adv == 0 else attack
        label += ", no defence" if defence == "none" and adv else "" if defence == "none" else f", `{defence}`"
        final = summary["final"]
        landed = [str(r["round"]) for r in summary.get("rounds", []) if (r.get("attack_success_mean") or 0) >= 0.5]
        body.append([label, f"{final['accuracy_mean']:.3f}", f"{final.get('attack_success_mean', 0.0):.2f}",
                     f"{final.get('target_confidence_mean', 0.0):.3f}",
                     "-" if adv == 0 else ", ".join(landed) or "none"])
    return markdown_table(["run", "final accuracy", "attack success", "target confidence",
                           "rounds with attack success ≥ 0.5"], body)


def render_paper_cpu(run: Path) -> dict[str, str]:
    return {"paper_cpu.md": paper_rows(_sweep_cells(run))}


def render_estimation(run: Path) -> dict[str, str]:
    text = (run / "estimation_table.md").read_text(encoding="utf-8")
    return {"estimation.md": tables_in(text)[0]}


PAPER_FULL_RUNS = {
    "no-adversary": ("no adversary", ["--adversaries", "0"]),
    "boost": ("boost", []),
    "altmin": ("altmin", ["--set", "attack.name=altmin"]),
    "altmin-pre": ("altmin, estimate pre", ["--set", "attack.name=altmin", "--set", "attack.estimate=pre"]),
}


def by_round_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Rows = runs, columns = rounds, each cell benign accuracy / target confidence."""
    n = max((len(r) for r in runs.values()), default=0)
    body = []
    for label, records in runs.items():
        by = {int(r["round"]): r for r in records}
        body.append([label, *(f"{short(by[t]['accuracy_mean'])} / {short(by[t].get('target_confidence_mean'), 2)}"
                              if t in by else "-" for t in range(1, n + 1))])
    return markdown_table(["round", *map(str, range(1, n + 1))], body)


def render_paper_full(run: Path) -> dict[str, str]:
    runs = {label: _summary(run / name)["rounds"] for name, (label, _) in PAPER_FULL_RUNS.items()
            if (run / name / "summary.json").exists()}
    return {"paper_full.md": by_round_table(runs)}


def render_estimation_full(run: Path) -> dict[str, str]:
    text = (run / "estimation_table.md").read_text(encoding="utf-8")
    return {"estimation_full.md": tables_in(text)[0]}


def render_budget(run: Path) -> dict[str, str]:
    text = (run / "budget_curve.md").read_text(encoding="utf-8")
    found = tables_in(text)
    return {"landing.md": found[0], "cells.md": found[1]}


def render_adaptive(run: Path) -> dict[str, str]:
    text = (run / "adaptive_table.md").read_text(encoding="utf-8")
    return {"trigger.md": tables_in(text)[0]}


def robustness_tables(text: str) -> dict[str, str]:
    """The per-graph matrices and the two "best" tables of ``robustness_summary.py``'s results.md."""
    found = tables_in(text)
    graphs = [line[3:].split(":")[0] for line in text.splitlines() if line.startswith("## ")]
    out = {f"{g}.md": t for g, t in zip(graphs, found, strict=False)}
    rest = found[len(graphs):]
    if len(rest) >= 2:
        out["best_attack.md"], out["best_filter.md"] = rest[0], rest[1]
    return out


def render_robustness(run: Path) -> dict[str, str]:
    return robustness_tables((run / "summary" / "results.md").read_text(encoding="utf-8"))


def performance_table(groups: Mapping[str, Mapping[str, Any]]) -> str:
    """The README's performance table from the benchmark JSON files, missed targets marked."""
    rows: dict[str, Any] = {r["name"]: r for doc in groups.values() for r in doc.get("results", [])}

    def get(name: str) -> Mapping[str, Any] | None:
        return rows.get(name)

    def ratio(r: Mapping[str, Any] | None, digits: int = 2, label: str = "") -> str:
        """``0.87 in-process``, or ``0.17 with `--processes` — **missed**`` when the target was not met."""
        if r is None:
            return f"not measured{' ' + label if label else ''}"
        text = f"{r['ratio']:.{digits}f}" + (f" {label}" if label else "")
        return text if r.get("met") else f"{text} — **missed**"

    def target(names: Sequence[str], unit: str = "") -> str:
        found = [rows[n] for n in names if n in rows]
        texts = dict.fromkeys(t["target_text"].replace(">=", "≥").replace("<=", "≤") + unit for t in found)
        return " / ".join(texts) or "-"

    def group(prefix: str) -> list[str]:
        return [n for n in rows if n.startswith(prefix)]

    transport, scale, memory, leak = group("transport "), group("scale "), group("memory "), group("leak ")
    f_names = group("filter ")
    body = [
        ["transport: encode + send + recv + decode vs raw pyzmq, same bytes",
         ", ".join(ratio(rows[n], label=n.removeprefix("transport ")) for n in transport) or "not measured",
         target(transport)],
        ["`topk-clip` on 4 × 3.4M proposals vs one numpy copy of them (time ratio)",
         ", ".join(ratio(rows[n], 1) + "×" for n in f_names) or "not measured", target(f_names, "×")],
        ["10-node run vs a plain torch loop, training samples/s",
         f"{ratio(get('overhead 10 nodes inprocess'), label='in-process')}; "
         f"{ratio(get('overhead 10 nodes processes'), label='with `--processes`')}",
         target(group("overhead "))],
        ["in-process nodes, training off: node-rounds/s vs 10 nodes",
         ", ".join(f"{n.removeprefix('scale ')}: {_rounds_per_s(rows[n], n)} rounds/s, ratio {ratio(rows[n])}"
                   for n in scale) or "not measured", target(scale)],
        ["memory linear in nodes (R² of RSS against nodes)",
         ", ".join(ratio(rows[n], 3, label=n.removeprefix("memory ").removesuffix(" linear in nodes"))
                   for n in memory) or "not measured", target(memory)],
        ["memory growth per node-round, in model sizes",
         ", ".join(ratio(rows[n], 3, label=f"({n.removeprefix('leak ')}: +{rows[n]['framework'] / 1024:.1f} KB)")
                   for n in leak) or "not measured", target(leak)],
    ]
    return markdown_table(["what", "measured", "target"], body)


def _rounds_per_s(row: Mapping[str, Any], name: str) -> str:
    """Whole rounds per second from node-rounds/s and the node count in the row's name."""
    match = re.search(r"(\d+) nodes", name)
    return f"{row['framework'] / int(match.group(1)):.2f}" if match else "-"


def render_performance(_run: Path) -> dict[str, str]:
    groups = {}
    for name in ("transport", "filter", "overhead", "scale"):
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if path.exists():
            groups[name] = json.loads(path.read_text(encoding="utf-8"))
    return {"performance.md": performance_table(groups)}


def performance_meta() -> dict[str, Any]:
    """Commands, dates and load of the benchmark files the table was made from."""
    out = {}
    for name in ("transport", "filter", "overhead", "scale"):
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if path.exists():
            doc = json.loads(path.read_text(encoding="utf-8"))
            out[name] = {k: doc.get(k) for k in ("command", "finished", "seconds", "quick", "load_average_end")}
    return out


# ---------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One generator and the README tables it makes."""

    name: str
    dir: str
    what: str
    commands: tuple[tuple[str, ...], ...]  # argv, "{run}" = this entry's run folder
    render: Callable[[Path], dict[str, str]]
    size: Mapping[str, Any] = field(default_factory=dict)
    needs_full_data: bool = False
    explicit_only: bool = False  # runs its commands only when named in --only (the benchmarks)
    default: bool = True  # part of a plain ``make results`` (without ONLY)
    failing_cells: bool = False  # a sweep with cells that fail by design (Krum on a ring): exit 1 is expected


QUICK_PAPER = ("--set", "rounds=5", "--set", "data.max_train=4000")
QUICK_ESTIMATION = ("--set", "data.max_train=4000",)
# At 4 rounds and 2,000 images (accuracy about 0.6) the single target example is taken for the
# target label at some nodes without any attack getting through: too small for this table.
QUICK_DEFENCE = ("--set", "train.epochs=1")
QUICK_ADAPTIVE = ("--set", "rounds=10", "--tau", "auto")
QUICK_BUDGET = ("--set", "rounds=10", "--set", 'defence.name=["none","topk-clip","clip","median"]')
QUICK_MATRIX = ("--set", "rounds=8", "--set", "topology=ring", "--set", "adversaries=2")

ENTRIES: tuple[Entry, ...] = (
    Entry("demo", "demo", "make demo: ring of 10, 2 adjacent boosting adversaries, 12 rounds",
          ((PY, "-m", "p2pfl.demo", "{run}"),), render_demo,
          {"nodes": 10, "rounds": 12, "adversaries": 2, "data": "embedded", "reduced": False}),
    Entry("paper_cpu", "paper_cpu", "the paper at CPU scale (complete graph of 10, small CNN, embedded data)",
          ((PY, "-m", "p2pfl", "sweep", "examples/paper_fmnist_cpu_sweep.toml", "--out", "{run}", *QUICK_PAPER),),
          render_paper_cpu, {"nodes": 10, "rounds": 5, "epochs": 5, "max_train": 4000, "data": "embedded",
                             "reduced": "from 10 rounds and the whole embedded split (8,000 training images)"}),
    Entry("estimation", "estimation", "target confidence by round with and without estimation (embedded data)",
          ((PY, "examples/estimation_table.py", "--out", "{run}", *QUICK_ESTIMATION),), render_estimation,
          {"nodes": 10, "rounds": 5, "epochs": 5, "max_train": 4000, "data": "embedded",
           "reduced": "from the whole embedded split (8,000 training images)"}),
    Entry("defence_table", "defence_table", "every filter against boost, altmin, stealth on full and ring",
          ((PY, "-m", "p2pfl", "sweep", "examples/defence_table.toml", "--out", "{run}", *QUICK_DEFENCE),),
          render_defence, {"nodes": 10, "rounds": 6, "max_train": 4000, "epochs": 1, "data": "embedded",
                           "reduced": "from 2 local epochs"}, failing_cells=True),
    Entry("adaptive_table", "adaptive_table", "the adaptive attacker against topk-clip, trigger backdoor",
          ((PY, "examples/adaptive_table.py", "--out", "{run}", *QUICK_ADAPTIVE),), render_adaptive,
          {"nodes": 10, "rounds": 10, "tau": ["auto"], "budget": 1, "reduced": "from 20 rounds, tau auto and 0.6"}),
    Entry("budget_curve", "budget_curve", "the norm budget a trigger backdoor needs on the ring",
          ((PY, "examples/budget_curve.py", "--out", "{run}", *QUICK_BUDGET),), render_budget,
          {"nodes": 10, "rounds": 10, "filters": ["none", "topk-clip", "clip", "median"],
           "reduced": "from 20 rounds and 7 filters (clipped-gossip = clip and trimmed-mean = median on a ring)"}),
    Entry("robustness_matrix", "robustness_matrix/quick", "every filter against every attack, ring of 10",
          ((PY, "-m", "p2pfl", "sweep", "examples/robustness_matrix.toml", "--out", "{run}/ring", *QUICK_MATRIX),
           (PY, "examples/robustness_summary.py", "{run}", "--out", "{run}/summary")), render_robustness,
          failing_cells=True, default=False, size={"graphs": ["ring"], "rounds": 8, "reduced": "from 15 rounds and three graphs (full, ring, small-world)"}),
    Entry("robustness_matrix_full", "robustness_matrix/tables",
          "the README's robustness matrix: three graphs at 15 rounds (about 72 min on 2 shared cores)",
          ((PY, "-m", "p2pfl", "sweep", "examples/robustness_matrix.toml", "--out", "{run}/full"),
           (PY, "-m", "p2pfl", "sweep", "examples/robustness_matrix.toml", "--out", "{run}/ring",
            "--set", "topology=ring", "--set", "adversaries=2"),
           (PY, "-m", "p2pfl", "sweep", "examples/robustness_matrix.toml", "--out", "{run}/small-world",
            "--set", "topology=small-world", "--set", "nodes=20"),
           (PY, "examples/robustness_summary.py", "{run}", "--out", "{run}/summary")), render_robustness,
          {"graphs": ["full", "ring", "small-world"], "rounds": 15, "reduced": False}, explicit_only=True,
          default=False, failing_cells=True),
    Entry("performance", "performance", "make bench: the benchmark JSON files as the README table",
          ((PY, "-m", "benchmarks"),), render_performance, {"benchmarks": "full"}, explicit_only=True),
    Entry("paper_full", "paper_full", "the paper at CPU scale on the full Fashion-MNIST, by round",
          tuple((PY, "-m", "p2pfl", "run", "--config", "examples/paper_fmnist_cpu.toml", "--out", f"{{run}}/{name}",
                 *extra) for name, (_, extra) in PAPER_FULL_RUNS.items()),
          render_paper_full, {"nodes": 10, "rounds": 10, "epochs": 5, "data": "full"}, needs_full_data=True),
    Entry("estimation_full", "estimation_full", "target confidence with estimation on the full Fashion-MNIST",
          ((PY, "examples/estimation_table.py", "--out", "{run}"),), render_estimation_full,
          {"nodes": 10, "rounds": 5, "epochs": 5, "data": "full"}, needs_full_data=True),
)
NAMES = tuple(e.name for e in ENTRIES)


def select(only: str | None, *, full_data: bool) -> list[Entry]:
    """The entries to run: those named in ``only`` (comma-separated), else every default entry
    that does not need the full data (with ``full_data``: those too). An unknown name, or a
    full-data entry without ``full_data``, is a ConfigError naming it."""
    if not only:
        return [e for e in ENTRIES if e.default and (full_data or not e.needs_full_data)]
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise ConfigError("ONLY", only, "a comma-separated list of " + ", ".join(NAMES))
    for n in names:
        choice("ONLY", n, NAMES)
    chosen = [e for e in ENTRIES if e.name in names]
    for e in chosen:
        if e.needs_full_data and not full_data:
            raise ConfigError("ONLY", e.name, "allowed only with FULL=1 (--full-data) and $P2PFL_DATA set: "
                              "it needs the full Fashion-MNIST")
    return chosen


def git_commit() -> str:
    """``git rev-parse HEAD``, with ``-dirty`` when tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def command_text(argv: Sequence[str], run: Path) -> str:
    return shlex.join(a.replace("{run}", str(run)) for a in argv)


def write_tables(entry: Entry, tables: Mapping[str, str], meta: Mapping[str, Any], results: Path = RESULTS) -> Path:
    """``results/<dir>/<file>.md`` for every table (its lines and a final newline) and ``meta.json``."""
    folder = results / entry.dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (folder / name).write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    doc = {**meta, "tables": sorted(tables)}
    (folder / "meta.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return folder


def run_entry(entry: Entry, *, report_only: bool, run_commands: bool) -> Path:
    run = RUNS / entry.name  # relative: the commands run in the checkout and are recorded so
    commands = [command_text(c, run) for c in entry.commands]
    commit = git_commit()  # before the run: what it ran on
    started = time.perf_counter()
    if run_commands and not report_only:
        run.mkdir(parents=True, exist_ok=True)
        for argv in entry.commands:
            real = [sys.executable if a == PY else a.replace("{run}", str(run)) for a in argv]
            print(f"[{entry.name}] {shlex.join(real)}", file=sys.stderr, flush=True)
            done = subprocess.run(real, cwd=ROOT, check=False)
            if done.returncode and not (entry.failing_cells and "sweep" in argv):
                raise subprocess.CalledProcessError(done.returncode, real)
    tables = entry.render(ROOT / run)
    meta: dict[str, Any] = {
        "name": entry.name,
        "what": entry.what,
        "command": " && ".join(commands),
        "commands": commands,
        "commit": commit,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": dict(entry.size),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    previous = ROOT / RESULTS.name / entry.dir / "meta.json"
    if report_only and previous.exists() and entry.name != "performance":
        # The tables are rewritten from runs made earlier: keep what they were measured with.
        kept = json.loads(previous.read_text(encoding="utf-8"))
        meta.update({k: kept[k] for k in ("command", "commands", "commit", "date", "size", "seconds", "load_average",
                                          "note") if k in kept})
        meta["tables_rewritten"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if entry.name == "performance":
        meta["benchmarks"] = performance_meta()
        meta["command"] = ("python examples/make_results.py --report --only performance (the table from "
                           "benchmarks/results/*.json; their own commands under 'benchmarks')")
        if run_commands and not report_only:
            meta["command"] = " && ".join(commands) + " && " + meta["command"]
    return write_tables(entry, tables, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=os.environ.get("ONLY") or None,
                        help=f"comma-separated subset of {', '.join(NAMES)} (env ONLY)")
    parser.add_argument("--full-data", action="store_true", default=os.environ.get("FULL") == "1",
                        help="also the entries that need the full Fashion-MNIST ($P2PFL_DATA; env FULL=1)")
    parser.add_argument("--report", action="store_true", help="only rewrite the tables from finished runs")
    parser.add_argument("--list", action="store_true", help="print the entries and exit")
    args = parser.parse_args(argv)
    if args.list:
        for e in ENTRIES:
            flags = (" (full data: FULL=1)" if e.needs_full_data else "" if e.default else " (only when named)")
            print(f"{e.name:18} results/{e.dir}/{flags}: {e.what}")
        return 0
    try:
        entries = select(args.only, full_data=args.full_data)
        if args.full_data and any(e.needs_full_data for e in entries) and not os.environ.get("P2PFL_DATA"):
            raise ConfigError("P2PFL_DATA", "", "the folder of the full Fashion-MNIST IDX files (FULL=1 needs it)")
    except ConfigError as exc:
        print(f"make_results: error: {exc}", file=sys.stderr)
        return 2
    named = set((args.only or "").split(","))
    for entry in entries:
        started = time.perf_counter()
        folder = run_entry(entry, report_only=args.report, run_commands=not entry.explicit_only or entry.name in named)
        print(f"[{entry.name}] -> {folder.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
