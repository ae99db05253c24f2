"""Run every benchmark (or some, with --only), write the JSON files and the results table.

    python -m benchmarks            # everything: 15 minutes on 2 cores, plus the hosts group
                                    # (1,000 and 10,000 nodes: about an hour on 2 shared cores)
    python -m benchmarks --quick    # fewer reps, rounds and points, under 3 minutes
    python -m benchmarks --only transport,filter

Missed targets are reported, not errors (exit 0), unless --strict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time

from ._common import RESULTS, Result, environment, load_average, log, table

ORDER = ("transport", "filter", "overhead", "scale", "raybackend", "hosts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps, rounds and points (< 3 min)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    args = parser.parse_args(argv)
    command = command_line(sys.argv[1:] if argv is None else argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}")
    started = time.perf_counter()
    log(f"benchmarks ({'quick' if args.quick else 'full'}); load average {load_average()}")
    results = []
    from ._common import write_results

    for name in ORDER:
        if name not in names:
            continue
        t0 = time.perf_counter()
        log(f"[{name}]")
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.run(quick=args.quick)
        path = write_results(name, rows, quick=args.quick, started=t0, command=command)
        log(f"  -> {path.relative_to(RESULTS.parent.parent)} ({time.perf_counter() - t0:.0f} s)")
        results.extend(rows)
    print(table(results))
    # The README table holds the latest result of every group, so that a partial re-run
    # (--only) updates its rows and keeps the others.
    write_readme(table(latest(args.quick)), quick=args.quick, seconds=time.perf_counter() - started,
                 command=command)
    log(f"total {time.perf_counter() - started:.0f} s; load average {load_average()}")
    missed = [r.name for r in results if not r.met]
    if missed:
        log(f"targets missed: {', '.join(missed)}")
    return 1 if args.strict and missed else 0


def command_line(argv: list[str]) -> str:
    """The command as it was typed (``python -m benchmarks --only transport``), for the records."""
    return " ".join(["python -m benchmarks", *(shlex.quote(a) for a in argv)])


def latest(quick: bool) -> list[Result]:
    """Every row of the newest JSON file of each group (full or quick runs)."""
    rows: list[Result] = []
    for name in ORDER:
        path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
        if not path.exists():
            continue
        for raw in json.loads(path.read_text(encoding="utf-8"))["results"]:
            fields = {k: v for k, v in raw.items() if k in Result.__dataclass_fields__}
            met, load = fields.pop("met"), fields.pop("load_average")
            row = Result(**fields)
            row.met, row.load_average = met, load
            rows.append(row)
    return rows


def write_readme(text: str, *, quick: bool, seconds: float, command: str) -> None:
    env = environment()
    cmd = command
    body = (
        "# Benchmark results\n\n"
        f"Written by `{cmd}` (`make bench` runs the full set; the last run took {seconds:.0f} s) on "
        f"{env['cpus']} CPUs, load average at the end {load_average()}; Python {env['python']}, "
        f"torch {env['torch']}, numpy {env['numpy']}, pyzmq {env['pyzmq']} (libzmq {env['libzmq']}).\n"
        "Every figure is a median over interleaved repetitions of baseline and framework in one "
        "process; the JSON files beside this one hold every sample, the load average and the "
        "profiles.\n\n" + text +
        "\nRatios: transport and overhead are framework/baseline throughput (higher is better); "
        "filter is filter time / copy time (lower is better); memory's ratio is the R^2 of a "
        "straight line RSS = a + b*nodes (baseline: the model's bytes, framework: b); leak is "
        "the RSS slope per node-round in model sizes (lower is better). Scale compares "
        "node-rounds/s at 200 nodes with 10 nodes (epochs=0, so only the framework works).\n"
    )
    name = "README-quick.md" if quick else "README.md"
    (RESULTS / name).write_text(body, encoding="utf-8")
    (RESULTS / ("summary-quick.json" if quick else "summary.json")).write_text(
        json.dumps({"command": cmd, "seconds": round(seconds, 1), "environment": env,
                    "table": text.splitlines()}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
