"""The adaptive attacker against topk-clip, kappa x tau rule.

The settings of ``adaptive_table.toml`` (10 nodes, 1 adversary, 20 rounds, MLP) on the ring
and the complete graph; ``--attack adaptive --defence topk-clip`` with the filter's kappa in
{0.01, 0.05, 0.1, 0.5} and tau rule "auto" (topk-clip's median-with-own) or fixed, the
attacker told the same kappa and tau (``attack.kappa``, ``attack.tau``); the same attacker
without a defence (the baseline, per kappa: it still concentrates on kappa d coordinates
and spends the tau it estimates); and every filter setting without an adversary (the
accuracy reference). Each (kappa, tau) pair is a resumable sweep over the topology in its
own folder of ``OUT/<backdoor>/``; then ``OUT/adaptive_table.md`` and
``OUT/adaptive_table.png``::

    python examples/adaptive_table.py --out runs/adaptive-table
    python examples/adaptive_table.py --out runs/adaptive-table --backdoor trigger --backdoor single

Attack success is measured at hop 1 (on the ring the adversary's two neighbours, on the
complete graph every benign node), final round and max over rounds. The filter *holds*
when the final hop-1 success stays below 0.2 (trigger) / 0.5 (single: one target example,
so 0, 0.5 or 1 at the two ring neighbours), *breaks* when it reaches 0.8, else *partial*.
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
KAPPAS = (0.01, 0.05, 0.1, 0.5)
FIXED_TAU = 0.6  # the median benign training-update norm ||z - x|| of these runs (0.59-0.62 from round 10 on)
BREAKS = 0.8
HOLDS = {"trigger": 0.2, "single": 0.5, "class": 0.2}


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _tau_slug(tau: Any) -> str:
    return "auto" if tau == "auto" else f"{float(tau):g}"


def parts(overrides: Mapping[str, Any], backdoor: str, taus: Sequence[Any]) -> dict[str, Sweep]:
    """The sweeps of one backdoor kind, by sub-folder name, in the order they run."""
    base = Sweep.from_toml(HERE / "adaptive_table.toml", {**overrides, "attack.backdoor": backdoor})

    def variant(fixed: Mapping[str, Any]) -> Sweep:
        return Sweep(base=base.base.with_overrides(dict(fixed)), axes=dict(base.axes), title=base.title,
                     source=base.source)

    out: dict[str, Sweep] = {}
    for tau in taus:
        for k in KAPPAS:
            out[f"topk-clip_kappa-{k:g}_tau-{_tau_slug(tau)}"] = variant(
                {"defence.name": "topk-clip", "defence.kappa": k, "defence.tau": tau,
                 "attack.kappa": k, "attack.tau": tau})
    for k in KAPPAS:
        out[f"none_kappa-{k:g}"] = variant({"attack.kappa": k, "attack.tau": "auto"})
    for tau in taus:
        for k in KAPPAS:
            out[f"clean_topk-clip_kappa-{k:g}_tau-{_tau_slug(tau)}"] = variant(
                {"adversaries": 0, "defence.name": "topk-clip", "defence.kappa": k, "defence.tau": tau})
    out["clean_none"] = variant({"adversaries": 0})
    return out


def collect(out: Path) -> list[dict[str, Any]]:
    """One row per finished run: backdoor, part, topology, kappa, tau, metrics."""
    rows = []
    for folder in sorted(out.glob("*/*/sweep.json")):
        backdoor, part = folder.parent.parent.name, folder.parent.name
        manifest, cells = load_sweep(folder.parent)
        base = manifest["base"]
        for cell in cells:
            summary = cell["summary"]
            if not summary or not summary.get("final"):
                continue
            h = [float(r.get("attack_success_by_hops", {}).get("1", float("nan"))) for r in summary["rounds"]]
            info = summary["final"].get("attack", {})
            stealth = summary.get("stealth", {})
            rows.append({
                "backdoor": backdoor, "part": part, "topology": cell["settings"]["topology"],
                "clean": part.startswith("clean"), "defence": base["defence"]["name"],
                "kappa": base["defence"].get("kappa", base["attack"].get("kappa")),
                "tau": base["defence"].get("tau", "auto") if base["defence"]["name"] != "none" else None,
                "accuracy": float(summary["final"]["accuracy_mean"]),
                "hop1_final": h[-1] if h else None, "hop1_max": max(h) if h else None,
                "tau_hat": info.get("tau_hat"), "kept": info.get("kept"),
                "norm_ratio": stealth.get("norm_ratio_mean"),
                "stealthy": f"{stealth.get('update_rounds_within_benign', 0)}/{stealth.get('update_rounds_measured', 0)}",
                "wall_time": summary.get("wall_time", 0.0),
            })
    return rows


def verdict(row: Mapping[str, Any]) -> str:
    s = row["hop1_final"]
    if s >= BREAKS:
        return "breaks"
    return "holds" if s < HOLDS.get(row["backdoor"], 0.2) else "partial"


def _find(rows: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def table(rows: Sequence[Mapping[str, Any]], backdoor: str, taus: Sequence[Any], budget: float = 1.0) -> str:
    lines = [f"### Backdoor `{backdoor}`, attacker budget {budget:g} x its tau estimate (attack.budget)", "",
             "| graph | defence | " + " | ".join(f"kappa = {k:g}" for k in KAPPAS) + " |",
             "|---|---|" + "---|" * len(KAPPAS)]
    for topo in ("ring", "full"):
        for tau in [None, *taus]:
            cells = []
            for k in KAPPAS:
                if tau is None:
                    r = _find(rows, backdoor=backdoor, topology=topo, clean=False, defence="none", kappa=k)
                    c = _find(rows, backdoor=backdoor, topology=topo, clean=True, defence="none")
                else:
                    r = _find(rows, backdoor=backdoor, topology=topo, clean=False, defence="topk-clip", kappa=k,
                              tau=tau)
                    c = _find(rows, backdoor=backdoor, topology=topo, clean=True, defence="topk-clip", kappa=k,
                              tau=tau)
                if r is None:
                    cells.append("-")
                    continue
                acc = f"{r['accuracy']:.3f}" + (f" ({r['accuracy'] - c['accuracy']:+.3f})" if c else "")
                v = "" if tau is None else f" **{verdict(r)}**"
                cells.append(f"{r['hop1_final']:.2f} / {r['hop1_max']:.2f}, {acc}{v}")
            label = "none (baseline)" if tau is None else f"topk-clip, tau {'auto' if tau == 'auto' else f'= {tau:g}'}"
            lines.append(f"| {topo} | {label} | " + " | ".join(cells) + " |")
    clean = [r for r in rows if r["backdoor"] == backdoor and r["clean"]]
    lines += ["", "Each cell: attack success at hop 1, final round / max over rounds; final benign accuracy "
              "(in brackets: minus the clean run with the same graph and filter, no adversary). "
              "holds: final success < " + f"{HOLDS.get(backdoor, 0.2):g}; breaks: >= {BREAKS:g}."]
    if clean:
        lines += ["Clean runs (no adversary), final benign accuracy: " + "; ".join(
            f"{r['topology']} {r['part'].removeprefix('clean_')} {r['accuracy']:.3f}" for r in sorted(clean, key=lambda r: (r["topology"], r["part"])))
            + "."]
    return "\n".join(lines)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot(rows: Sequence[Mapping[str, Any]], backdoors: Sequence[str], taus: Sequence[Any], path: Path,
         budget: float = 1.0) -> Path:
    fig = _figure(5.0 * 2, 3.8 * len(backdoors))
    axes = fig.subplots(len(backdoors), 2, squeeze=False)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for b, backdoor in enumerate(backdoors):
        for t, topo in enumerate(("ring", "full")):
            ax = axes[b][t]
            series = [("none", None, "no defence", "#d62728")] + [
                ("topk-clip", tau, f"topk-clip, tau {_tau_slug(tau)}", colours[n % 4]) for n, tau in enumerate(taus)]
            for defence, tau, label, colour in series:
                pts = []
                for k in KAPPAS:
                    match = {"backdoor": backdoor, "topology": topo, "clean": False, "defence": defence, "kappa": k}
                    if tau is not None:
                        match["tau"] = tau
                    r = _find(rows, **match)
                    if r is not None:
                        pts.append((k, r["hop1_final"], r["hop1_max"]))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, color=colour,
                            label=f"{label}: final")
                    ax.plot([p[0] for p in pts], [p[2] for p in pts], ls=":", marker="^", ms=3, color=colour,
                            label=f"{label}: max over rounds")
            ax.axhline(BREAKS, color="0.5", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_xticks(list(KAPPAS), [f"{k:g}" for k in KAPPAS])
            ax.minorticks_off()
            ax.set(ylim=(-0.03, 1.03), xlabel="kappa (filter's and attacker's)",
                   ylabel="attack success at hop 1", title=f"{topo} of 10, backdoor {backdoor}")
            ax.grid(alpha=0.3)
            if b == 0 and t == 1:
                ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    fig.suptitle(f"The adaptive attacker against topk-clip (1 adversary, 20 rounds, attacker budget "
                 f"{budget:g} x its tau estimate)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/adaptive-table", help="folder of the sweeps (resumable)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--backdoor", action="append", default=[], help="backdoor kinds (default: trigger)")
    parser.add_argument("--tau", action="append", default=[], help=f"tau rules (default: auto and {FIXED_TAU})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every run, e.g. rounds=10")
    parser.add_argument("--report", action="store_true", help="only write the table and the plot")
    parser.add_argument("--data-dir", default=None, help="where data sets are looked up first")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.sets:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _value(value.strip())
    backdoors = args.backdoor or ["trigger"]
    taus = [_value(t) for t in args.tau] or ["auto", FIXED_TAU]
    out = Path(args.out)
    search = default_search_dirs(args.data_dir, os.environ.get("P2PFL_DATA"))

    def show(event: dict[str, Any]) -> None:
        if event["event"] in ("done", "skip", "fail"):
            extra = f" {event.get('error')}" if event["event"] == "fail" else ""
            print(f"  [{event['n']}/{event['total']}] {event['cell']}: {event['event']}{extra}", file=sys.stderr,
                  flush=True)

    if not args.report:
        started = time.perf_counter()
        for backdoor in backdoors:
            for name, sweep in parts(overrides, backdoor, taus).items():
                print(f"== {backdoor}/{name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
                run_sweep(sweep, out / backdoor / name, jobs=args.jobs, search=search, on_event=show, plots=False)
        print(f"wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = collect(out)
    done = [b for b in ("trigger", "single", "class") if any(r["backdoor"] == b for r in rows)]
    budget = float(overrides.get("attack.budget", 1.0))
    text = "\n\n".join(table(rows, b, taus, budget) for b in done)
    (out / "adaptive_table.md").write_text(text + "\n", encoding="utf-8")
    (out / "adaptive_table.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if rows:
        plot(rows, done, taus, out / "adaptive_table.png", budget)
    print(text)
    return text


if __name__ == "__main__":
    main()
