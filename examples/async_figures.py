"""The figures of README's async section from finished sweeps.

    python examples/async_figures.py --straggler runs/acc2-straggler --no-straggler runs/acc2-none \\
        --complete runs/acc1-base runs/acc1-quorum08 runs/acc1-stale1 runs/acc1-mergefirst \\
        --out results/async_vs_sync

``--straggler`` / ``--no-straggler``: ``p2pfl sweep examples/async_vs_sync.toml`` with node 0 at
speed 0.2 and with it at 1.0 (ring of 10, cells ``mode-sync`` and ``mode-async``).
``--complete``: ``p2pfl sweep examples/async_complete.toml`` and its variants (cells
``mode-*_seed-*``). Writes ``straggler.md``, ``complete.md`` (exactly the README tables),
``figures.json`` and copies the straggler sweep's ``wall-mode.png``.

Several seeds (one straggler and one no-straggler sweep each, in the same order), e.g. the
light configuration of ``examples/async_straggler_light.toml``:

    python examples/async_figures.py --straggler runs/light-straggler-s0 runs/light-straggler-s1 \\
        --no-straggler runs/light-none-s0 runs/light-none-s1 --seeds 0 1 \\
        --name straggler_light --png wall-mode-light.png --out results/async_vs_sync

writes ``<name>.md`` with a seed column and the seconds per round/tick after round 5 (the
first carries the process's start-up, a cold first training step, and on a ring of 10 the
sync wave it starts has passed every node by round 5), ``<name>.json``
and copies the first straggler sweep's ``wall-mode.png`` as ``--png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def straggler_figures(run: Path, slow: int = 0, after: int = 5) -> dict[str, Any]:
    """Per-round (tick) time of the others and of the slow node, their ticks per minute, accuracy."""
    recs = records(run)
    fast = [r for r in recs if r["node"] != slow]
    slow_recs = [r for r in recs if r["node"] == slow]
    ticks = max(r["tick"] for r in fast)
    last_wall = {i: max(r["wall"] for r in fast if r["node"] == i) for i in {r["node"] for r in fast}}
    per_min = float(np.mean([60.0 * ticks / w for w in last_wall.values()]))
    by_tick = {t: [r for r in fast if r["tick"] == t] for t in range(1, ticks + 1)}
    final = float(np.mean([r["accuracy"] for r in by_tick[ticks] if "accuracy" in r]))
    def steady(node_recs: list[dict[str, Any]]) -> float | None:
        """Seconds per tick after tick ``after`` (start-up and, in sync, the first wave around a ring past)."""
        walls = {r["tick"]: r["wall"] for r in node_recs}
        end = max(walls)
        return (walls[end] - walls[after]) / (end - after) if after in walls and end > after else None

    after_s = [steady([r for r in fast if r["node"] == i]) for i in last_wall]
    slow_after = steady(slow_recs)
    return {
        "tick_s": round(float(np.mean(list(last_wall.values()))) / ticks, 2),
        "tick_s_after": None if None in after_s else round(float(np.mean(after_s)), 3),  # type: ignore[arg-type]
        "slow_tick_s_after": None if slow_after is None else round(slow_after, 3),
        "slow_tick_s": round(max(r["wall"] for r in slow_recs) / max(r["tick"] for r in slow_recs), 2),
        "ticks_per_min": round(per_min, 1),
        "end_s": round(max(last_wall.values()), 1),
        "accuracy": round(final, 3),
        "curve": [(round(float(np.mean([r["wall"] for r in rs])), 2),
                   round(float(np.mean([r["accuracy"] for r in rs if "accuracy" in r])), 4))
                  for t, rs in sorted(by_tick.items())],
    }


def accuracy_at(curve: list[tuple[float, float]], wall: float) -> float | None:
    """The last accuracy reached by ``wall`` seconds (None: not a round finished by then)."""
    done = [a for w, a in curve if w <= wall]
    return done[-1] if done else None


def complete_figures(sweep: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for run in sorted((sweep / "runs").iterdir()):
        summary = json.loads((run / "summary.json").read_text())
        mode = run.name.split("_")[0].removeprefix("mode-")
        out.setdefault(mode, []).append(round(float(summary["final"]["accuracy_mean"]), 3))
    return out


def seeded_straggler_table(stragglers: list[Path], nones: list[Path], seeds: list[str], label: str
                           ) -> tuple[list[str], dict[str, Any]]:
    """One straggler / no-straggler pair of sweeps per seed: 4 rows per seed."""
    fig: dict[str, Any] = {}
    rows = ["| seed | mode | straggler | s per round/tick (others) | after round 5 (others) | node 0's s per tick "
            "| node 0's, after round 5 | ticks/min (others) | accuracy at the async straggler run's end "
            "| final accuracy (others) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, strag, none in zip(seeds, stragglers, nones, strict=True):
        cells = {f"{mode}|{lab}": straggler_figures(sweep / "runs" / f"mode-{mode}")
                 for lab, sweep in (("none", none), (label, strag)) for mode in ("sync", "async")}
        fig[seed] = cells
        t_async = cells[f"async|{label}"]["end_s"]
        for key, v in cells.items():
            mode, lab = key.split("|")
            at = accuracy_at(v["curve"], t_async)
            rows.append(f"| {seed} | {mode} | {lab} | {v['tick_s']:.2f} | {v['tick_s_after']:.3f} "
                        f"| {v['slow_tick_s']:.2f} | {v['slow_tick_s_after']:.3f} | {v['ticks_per_min']:.1f} "
                        f"| {'-' if at is None else f'{at:.3f}'} at {t_async:.1f} s | {v['accuracy']:.3f} |")
    return rows, fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--straggler", type=Path, nargs="+", required=True)
    ap.add_argument("--no-straggler", type=Path, nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", help="one label per straggler/no-straggler pair: the seeded table")
    ap.add_argument("--label", default="node 0 at 0.2", help="the straggler rows' label")
    ap.add_argument("--name", default="straggler", help="the straggler table's file name, without .md")
    ap.add_argument("--png", default="wall-mode.png", help="where the (first) straggler sweep's wall-mode.png goes")
    ap.add_argument("--complete", type=Path, nargs="+")
    ap.add_argument("--labels", nargs="+", default=["async (merge at once)", "async, merge_wait 10 s, quorum 0.8",
                                                    "async, staleness 1.0", "async, merge-first"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    fig: dict[str, Any] = {"straggler": {}, "complete": {}}
    if args.seeds:
        rows, fig["straggler"] = seeded_straggler_table(args.straggler, args.no_straggler, args.seeds, args.label)
    else:
        for label, sweep in (("none", args.no_straggler[0]), (args.label, args.straggler[0])):
            for mode in ("sync", "async"):
                fig["straggler"][f"{mode}|{label}"] = straggler_figures(sweep / "runs" / f"mode-{mode}")
        s = fig["straggler"]
        t_async = s[f"async|{args.label}"]["end_s"]
        rows = ["| mode | straggler | s per round/tick (others) | node 0's s per tick | ticks/min (others) "
                f"| accuracy at {t_async:.0f} s | final accuracy (others) |", "|---|---|---|---|---|---|---|"]
        for key, v in s.items():
            mode, label = key.split("|")
            at = accuracy_at(v["curve"], t_async)
            rows.append(f"| {mode} | {label} | {v['tick_s']:.2f} | {v['slow_tick_s']:.2f} | {v['ticks_per_min']:.1f} "
                        f"| {'-' if at is None else f'{at:.3f}'} | {v['accuracy']:.3f} |")
    (args.out / f"{args.name}.md").write_text("\n".join(rows) + "\n", encoding="utf-8")

    if args.complete:
        sync: list[float] | None = None
        crows = ["| merge | async, seed 0 / 1 | sync, seed 0 / 1 | async − sync (mean, points) |", "|---|---|---|---|"]
        for label, sweep in zip(args.labels, args.complete, strict=False):
            acc = complete_figures(sweep)
            fig["complete"][label] = acc
            sync = sync or acc["sync"]
            gap = 100 * (np.mean(acc["async"]) - np.mean(acc["sync"]))
            crows.append(f"| {label} | {' / '.join(f'{a:.3f}' for a in acc['async'])} "
                         f"| {' / '.join(f'{a:.3f}' for a in acc['sync'])} | {gap:+.1f} |")
        (args.out / "complete.md").write_text("\n".join(crows) + "\n", encoding="utf-8")
        (args.out / "figures.json").write_text(json.dumps(fig, indent=1) + "\n", encoding="utf-8")
    else:
        (args.out / f"{args.name}.json").write_text(json.dumps(fig["straggler"], indent=1) + "\n", encoding="utf-8")
    png = args.straggler[0] / "plots" / "wall-mode.png"
    if png.exists():
        shutil.copy(png, args.out / args.png)


if __name__ == "__main__":
    main()
