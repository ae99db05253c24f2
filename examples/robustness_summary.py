"""Summarise the robustness matrix (examples/robustness_matrix.toml) into tables.

    python examples/robustness_summary.py runs/robustness-matrix --out results/robustness_matrix

reads the three sweep folders ``full``, ``ring`` and ``small-world`` under the given folder
(each written by ``p2pfl sweep examples/robustness_matrix.toml ...``, see that file) and
writes into ``--out``:

``results.csv``  every cell of the three sweeps, one row each, with a ``topology`` column and,
                 from each run's ``summary.json``, the attack success at the adversaries'
                 neighbours (hop 1): final and the peak over rounds;
``results.md``   per graph, the matrix attack x backdoor (rows) by filter (columns), each
                 cell ``accuracy / attack success / stealthy rounds`` at the final round;
                 then, for each filter, the attack that does best against it and, for each
                 attack, the filter that does best against it;
``summary.md``   only the two "best" tables and the list of cells where the backdoor landed
                 through a filter (final success >= 0.5 or hop-1 peak >= 0.8): what README's
                 "Robustness matrix" shows.

"Best attack against a filter": the highest final attack success (mean over benign nodes),
ties broken by the peak hop-1 success over the rounds, then by the lower accuracy.
"Best filter against an attack": the lowest final attack success, ties broken by the lower
peak hop-1 success, then by the higher final accuracy; ``none`` (no filter) is not a candidate.
Cells that did not finish (errors, e.g. Krum on the ring, or still pending) are shown as
their status and take no part in the rankings.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

TOPOLOGIES = ("full", "ring", "small-world")
BREAK_FINAL, BREAK_HOP1 = 0.5, 0.8  # a cell counts as "the backdoor landed" at either
TITLES = {"full": "complete graph of 10, 1 adversary", "ring": "ring of 10, 2 adversaries",
          "small-world": "small world of 20 (k = 4, p = 0.1), 1 adversary"}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def load(root: Path) -> list[dict]:
    rows = []
    for topo in TOPOLOGIES:
        folder = root / topo
        if not (folder / "results.csv").is_file():
            continue
        with (folder / "results.csv").open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                row = {"topology": topo, **row}
                row["hop1_final"] = row["hop1_peak"] = None
                summary = folder / row["run"] / "summary.json"
                if row["status"].startswith("done") and summary.is_file():
                    s = json.loads(summary.read_text(encoding="utf-8"))
                    hops = [r.get("attack_success_by_hops", {}).get("1") for r in s.get("rounds", [])]
                    hops = [h for h in hops if h is not None]
                    if hops:
                        row["hop1_final"], row["hop1_peak"] = hops[-1], max(hops)
                rows.append(row)
    return rows


def done(row: dict) -> bool:
    return row["status"].startswith("done") and _float(row["attack_success"]) is not None


def cell_text(row: dict | None) -> str:
    if row is None:
        return "-"
    if not done(row):
        return "error" if row["status"].startswith("failed") else row["status"]
    return f"{float(row['accuracy_mean']):.2f} / {float(row['attack_success']):.2f} / {row['stealthy_rounds'] or '-'}"


def label(row: dict) -> str:
    return f"{row['attack.name']} ({row['attack.backdoor']})"


def best_attack(rows: list[dict]) -> dict | None:
    cand = [r for r in rows if done(r)]
    return max(cand, key=lambda r: (float(r["attack_success"]), r["hop1_peak"] or 0.0,
                                    -float(r["accuracy_mean"])), default=None)


def best_filter(rows: list[dict]) -> dict | None:
    cand = [r for r in rows if done(r) and r["defence.name"] != "none"]
    return min(cand, key=lambda r: (float(r["attack_success"]), r["hop1_peak"] or 0.0,
                                    -float(r["accuracy_mean"])), default=None)


def best_tables(rows: list[dict], topos: list[str], filters: list[str], attacks: list[tuple[str, str]]) -> list[str]:
    out = ["### For each filter, the attack that does best against it", "",
           "Final attack success (mean over benign nodes), in brackets the peak over rounds at hop 1; "
           "then the final accuracy.", "",
           "| filter | " + " | ".join(topos) + " |", "|---|" + "---|" * len(topos)]
    for f in filters:
        cells = []
        for t in topos:
            b = best_attack([r for r in rows if r["topology"] == t and r["defence.name"] == f])
            cells.append("-" if b is None else
                         f"{label(b)}: {float(b['attack_success']):.2f} [{(b['hop1_peak'] or 0):.2f}], "
                         f"acc {float(b['accuracy_mean']):.2f}")
        out.append(f"| {f} | " + " | ".join(cells) + " |")
    out += ["", "### For each attack, the filter that does best against it", "",
            "Lowest final attack success, ties broken by the lower hop-1 peak, then the higher accuracy; "
            "in brackets: the attack's success without a filter.", "",
            "| attack (backdoor) | " + " | ".join(topos) + " |", "|---|" + "---|" * len(topos)]
    for a, bd in attacks:
        cells = []
        for t in topos:
            sel = [r for r in rows if r["topology"] == t and r["attack.name"] == a and r["attack.backdoor"] == bd]
            b = best_filter(sel)
            none = next((r for r in sel if r["defence.name"] == "none" and done(r)), None)
            ref = f" [{float(none['attack_success']):.2f}]" if none else ""
            cells.append("-" if b is None else
                         f"{b['defence.name']}: {float(b['attack_success']):.2f}, acc {float(b['accuracy_mean']):.2f}{ref}")
        out.append(f"| {a} ({bd}) | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the folder holding the sweeps full/, ring/, small-world/")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = load(args.root)
    if not rows:
        raise SystemExit(f"no results.csv under {args.root}/{{{','.join(TOPOLOGIES)}}}")
    args.out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    with (args.out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in r.items()})
    topos = [t for t in TOPOLOGIES if any(r["topology"] == t for r in rows)]
    filters = list(dict.fromkeys(r["defence.name"] for r in rows))
    attacks = list(dict.fromkeys((r["attack.name"], r["attack.backdoor"]) for r in rows))
    n_done = sum(done(r) for r in rows)
    md = ["# Robustness matrix: results", "",
          f"{len(rows)} cells, {n_done} finished. Each cell: final clean accuracy (mean over benign nodes) / "
          "final attack success (mean over benign nodes) / stealthy rounds (rounds in which the adversaries' "
          "updates passed the distance-spread test, of those measured). `error`: the filter refused to start "
          "(Krum and Multi-Krum need degree >= 3).", ""]
    for t in topos:
        md += [f"## {t}: {TITLES[t]}", "", "| attack (backdoor) | " + " | ".join(filters) + " |",
               "|---|" + "---|" * len(filters)]
        for a, bd in attacks:
            sel = {r["defence.name"]: r for r in rows
                   if r["topology"] == t and r["attack.name"] == a and r["attack.backdoor"] == bd}
            md.append(f"| {a} ({bd}) | " + " | ".join(cell_text(sel.get(f)) for f in filters) + " |")
        md.append("")
    best = best_tables(rows, topos, filters, attacks)
    best += ["", f"### Where a filter breaks (final attack success >= {BREAK_FINAL} or hop-1 peak >= {BREAK_HOP1})", ""]
    for t in topos:
        broken = [r for r in rows if r["topology"] == t and r["defence.name"] != "none" and done(r)
                  and (float(r["attack_success"]) >= BREAK_FINAL or (r["hop1_peak"] or 0.0) >= BREAK_HOP1)]
        landed = [r for r in rows if r["topology"] == t and r["defence.name"] == "none" and done(r)
                  and (float(r["attack_success"]) >= BREAK_FINAL or (r["hop1_peak"] or 0.0) >= BREAK_HOP1)]
        text = ", ".join(f"{r['defence.name']} vs {label(r)} ({float(r['attack_success']):.2f} "
                         f"[{(r['hop1_peak'] or 0):.2f}])" for r in broken) or "nowhere"
        best.append(f"- {t}: {text}. Without a filter the backdoor lands for: "
                    + (", ".join(label(r) for r in landed) or "no attack") + ".")
    (args.out / "results.md").write_text("\n".join(md + best) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text("\n".join(best) + "\n", encoding="utf-8")
    print(f"{len(rows)} cells ({n_done} finished) -> {args.out}/results.csv, results.md, summary.md")


if __name__ == "__main__":
    main()
