"""The norm budget a trigger backdoor needs to land at hop 1 on a ring.

Ring of 10, 1 adversary (hop 1 = its two neighbours), trigger backdoor, 20 rounds, the
settings of ``budget_curve.toml``. The budget is the L2 norm of the announced update as a
multiple of the adversary's own honest update norm this round:

* ``pgd`` and ``neurotoxin`` (pgd on the coordinates outside the top 10% of its honest
  update): ``attack.eps_rel`` = budget (the ``budget_curve.toml`` sweep);
* ``scale`` (constrain-and-scale, gamma_j = 1 / W_jm = 3 on the ring): ``attack.budget`` =
  budget caps gamma_j ||w - x||; and ``scale`` unbounded (no cap: the multiple it picks
  itself), plotted at its measured norm ratio;
* no adversary (the clean run of every filter: the accuracy reference).

Each part is a resumable sweep in its own folder of ``OUT``; then ``OUT/budget_curve.md``
(the tables), ``OUT/budget_curve.png`` (attack success at hop 1 against the budget, one
panel per filter) and ``OUT/budget_accuracy.png`` (benign accuracy against the budget)::

    python examples/budget_curve.py --out runs/budget-curve
    python examples/budget_curve.py --out runs/budget-curve --set seed=1   # another seed

A backdoor *lands* at a budget when the final-round attack success at hop 1 is >= 0.8 and
the final benign accuracy (mean over the 9 benign nodes) is within 2 points of the clean
run with the same filter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.plan import default_search_dirs
from p2pfl.sweep import Sweep, load_sweep, run_sweep

HERE = Path(__file__).resolve().parent
BUDGETS = (1.0, 1.5, 2.0, 3.0, 5.0)
LAND_SUCCESS = 0.8
LAND_ACCURACY = 0.02
ATTACKS = ("pgd", "neurotoxin", "scale")
COLOURS = {"pgd": "#1f77b4", "neurotoxin": "#2ca02c", "scale": "#d62728"}


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parts(overrides: Mapping[str, Any]) -> dict[str, Sweep]:
    """The four sweeps of the experiment, by sub-folder name."""
    base = Sweep.from_toml(HERE / "budget_curve.toml", overrides)
    filters = base.axes["defence.name"]

    def variant(axes: dict[str, list[Any]], fixed: Mapping[str, Any]) -> Sweep:
        cfg = base.base.with_overrides(dict(fixed))
        return Sweep(base=cfg, axes=axes, title=base.title, source=base.source)

    return {
        "pgd": base,
        "scale": variant({"attack.budget": list(BUDGETS), "defence.name": filters}, {"attack.name": "scale"}),
        "scale-unbounded": variant({"defence.name": filters}, {"attack.name": "scale"}),
        "clean": variant({"defence.name": filters}, {"adversaries": 0}),
    }


def hop1(summary: Mapping[str, Any]) -> list[float]:
    """Attack success at hop 1, by round."""
    return [float(r.get("attack_success_by_hops", {}).get("1", float("nan"))) for r in summary["rounds"]]


def collect(out: Path) -> tuple[list[dict[str, Any]], dict[str, float], list[str]]:
    """One row per attacked cell, the clean accuracy per filter, the filters in order."""
    rows: list[dict[str, Any]] = []
    clean: dict[str, float] = {}
    filters: list[str] = []
    for part in ("pgd", "scale", "scale-unbounded", "clean"):
        folder = out / part
        if not (folder / "sweep.json").exists():
            continue
        manifest, cells = load_sweep(folder)
        for f in manifest["axes"].get("defence.name", []):
            if f not in filters:
                filters.append(f)
        for cell in cells:
            s, summary = cell["settings"], cell["summary"]
            if summary is None or not summary.get("final"):
                continue
            defence = s["defence.name"]
            acc = float(summary["final"]["accuracy_mean"])
            if part == "clean":
                clean[defence] = acc
                continue
            h = hop1(summary)
            attack = s.get("attack.name", manifest["base"]["attack"]["name"])
            budget = s.get("attack.eps_rel", s.get("attack.budget"))
            stealth = summary.get("stealth", {})
            rows.append({"attack": attack, "budget": budget, "defence": defence, "accuracy": acc,
                         "hop1_final": h[-1], "hop1_max": max(h), "rounds": len(h), "hop1_last5": sum(h[-5:]) / len(h[-5:]),
                         "all_final": float(summary["final"].get("attack_success_mean", 0.0)),
                         "norm_ratio": stealth.get("norm_ratio_mean"),
                         "stealthy": f"{stealth.get('update_rounds_within_benign', 0)}/"
                                     f"{stealth.get('update_rounds_measured', 0)}",
                         "wall_time": summary.get("wall_time", 0.0)})
    return rows, clean, filters


def lands(row: Mapping[str, Any], clean: Mapping[str, float]) -> bool:
    ref = clean.get(row["defence"])
    return row["hop1_final"] >= LAND_SUCCESS and (ref is None or row["accuracy"] >= ref - LAND_ACCURACY)


def smallest(rows: Sequence[Mapping[str, Any]], clean: Mapping[str, float], attack: str, defence: str) -> str:
    hits = sorted(r["budget"] for r in rows if r["attack"] == attack and r["defence"] == defence
                  and r["budget"] is not None and lands(r, clean))
    tried = [r for r in rows if r["attack"] == attack and r["defence"] == defence and r["budget"] is not None]
    if not tried:
        return "-"
    return f"{hits[0]:g}" if hits else f"does not land at {max(r['budget'] for r in tried):g}"


def tables(rows: Sequence[Mapping[str, Any]], clean: Mapping[str, float], filters: Sequence[str]) -> str:
    lines = ["### Smallest budget that lands at hop 1 (final success >= 0.8, accuracy within 2 points of clean)",
             "", "| filter | clean accuracy | pgd | neurotoxin + pgd | scale (budget cap) | scale unbounded: "
             "norm ratio, hop-1 success |", "|---|---|---|---|---|---|"]
    for f in filters:
        unb = [r for r in rows if r["attack"] == "scale" and r["budget"] is None and r["defence"] == f]
        u = (f"{unb[0]['norm_ratio']:.1f}x: {unb[0]['hop1_final']:.2f}"
             + (" (lands)" if lands(unb[0], clean) else "")) if unb else "-"
        c = f"{clean[f]:.3f}" if f in clean else "-"
        lines.append(f"| {f} | {c} | " + " | ".join(smallest(rows, clean, a, f) for a in ATTACKS) + f" | {u} |")
    lines += ["", "### Every cell: hop-1 attack success final / max over rounds, benign accuracy (clean: "
              "same filter, no adversary), measured norm ratio", ""]
    head = ["filter", "attack"] + [f"budget {b:g}" for b in BUDGETS] + ["unbounded"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in filters:
        for a in ATTACKS:
            cells = []
            for b in (*BUDGETS, None):
                hit = [r for r in rows if r["attack"] == a and r["defence"] == f and r["budget"] == b]
                if not hit:
                    cells.append("-")
                    continue
                r = hit[0]
                mark = "**" if lands(r, clean) else ""
                cells.append(f"{mark}{r['hop1_final']:.2f}{mark} / {r['hop1_max']:.2f}, "
                             f"{r['accuracy']:.3f}, {r['norm_ratio']:.1f}x")
            if all(x == "-" for x in cells):
                continue
            lines.append(f"| {f} | {a} | " + " | ".join(cells) + " |")
    n = max((r["rounds"] for r in rows), default=0)
    lines += ["", f"Each cell: final hop-1 success (bold when the backdoor lands) / max over the {n} rounds, "
              "final benign accuracy (mean of 9 nodes), mean announced-update norm over the adversary's own "
              "honest update norm. Clean accuracy per filter: "
              + ", ".join(f"{f} {clean[f]:.3f}" for f in filters if f in clean) + "."]
    return "\n".join(lines)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot(rows: Sequence[Mapping[str, Any]], clean: Mapping[str, float], filters: Sequence[str], path: Path,
         key: str, ylabel: str, title: str) -> Path:
    cols = 4
    nrows = (len(filters) + cols - 1) // cols
    fig = _figure(4.0 * cols, 3.4 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    xmax = max([5.0, *(r["norm_ratio"] or 0 for r in rows if r["budget"] is None)])
    for ax, f in zip(axes, filters, strict=False):
        for a in ATTACKS:
            pts = sorted((r["budget"], r[key]) for r in rows if r["attack"] == a and r["defence"] == f
                         and r["budget"] is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, color=COLOURS[a],
                        label=a if a != "neurotoxin" else "neurotoxin + pgd")
        unb = [r for r in rows if r["attack"] == "scale" and r["budget"] is None and r["defence"] == f]
        if unb:
            ax.scatter([unb[0]["norm_ratio"]], [unb[0][key]], marker="*", s=120, color=COLOURS["scale"],
                       edgecolor="black", zorder=3, label="scale unbounded (at its norm ratio)")
        if key == "hop1_final":
            ax.axhline(LAND_SUCCESS, color="0.5", lw=0.8, ls=":")
            ax.set_ylim(-0.03, 1.03)
        elif f in clean:
            ax.axhline(clean[f], color="black", lw=0.8, ls="--", label="clean run, same filter")
            ax.axhspan(clean[f] - LAND_ACCURACY, clean[f] + LAND_ACCURACY, color="0.85", alpha=0.5)
        ax.set_xscale("log")
        ticks = [b for b in BUDGETS] + ([round(xmax, 1)] if xmax > 5.5 else [])
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(0.9, xmax * 1.15)
        ax.set(title=f"defence: {f}", xlabel="norm budget (x own honest update norm)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in axes[len(filters):]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    spare = axes[len(filters)] if len(filters) < len(axes) else None
    if spare is not None:
        spare.legend(handles, labels, loc="center", fontsize=9, frameon=False)
    else:
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/budget-curve", help="folder of the four sweeps (resumable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every run, e.g. rounds=10")
    parser.add_argument("--only", action="append", default=[], help="run only these parts (pgd, scale, "
                        "scale-unbounded, clean); the tables use whatever is finished")
    parser.add_argument("--report", action="store_true", help="only write the tables and plots")
    parser.add_argument("--data-dir", default=None, help="where data sets are looked up first")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.sets:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _value(value.strip())
    out = Path(args.out)
    search = default_search_dirs(args.data_dir, os.environ.get("P2PFL_DATA"))

    def show(event: dict[str, Any]) -> None:
        if event["event"] in ("done", "skip", "fail"):
            extra = f" {event.get('error')}" if event["event"] == "fail" else ""
            print(f"[{event['n']}/{event['total']}] {event['cell']}: {event['event']}{extra}", file=sys.stderr,
                  flush=True)

    if not args.report:
        started = time.perf_counter()
        for name, sweep in parts(overrides).items():
            if args.only and name not in args.only:
                continue
            print(f"== {name}", file=sys.stderr, flush=True)
            run_sweep(sweep, out / name, jobs=args.jobs, search=search, on_event=show, plots=False)
        print(f"wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows, clean, filters = collect(out)
    text = tables(rows, clean, filters)
    (out / "budget_curve.md").write_text(text + "\n", encoding="utf-8")
    (out / "budget_curve.json").write_text(json.dumps({"rows": rows, "clean": clean}, indent=1) + "\n",
                                           encoding="utf-8")
    if rows:
        ring = "ring of 10, 1 adversary, trigger backdoor, 20 rounds"
        plot(rows, clean, filters, out / "budget_curve.png", "hop1_final", "attack success at hop 1 (final round)",
             f"Attack success at the adversary's two neighbours against the norm budget ({ring}); "
             "dotted: 0.8")
        plot(rows, clean, filters, out / "budget_accuracy.png", "accuracy", "benign accuracy (final, mean)",
             f"Benign accuracy against the norm budget ({ring}); dashed: clean run, band: +-2 points")
    print(text)
    return text


if __name__ == "__main__":
    main()
