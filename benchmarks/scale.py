"""Scale: rounds/s and resident memory for 10..200 in-process nodes, and a leak check.

Each point (nodes, topology) runs in a fresh Python process, so that its resident memory
is its own and not what an earlier, larger run left in the allocator. The settings keep
the work per node tiny (``train.epochs = 0``: a node announces its unchanged model; the
evaluation set is cut to 10 images) so that what is measured is the framework: sockets,
encode/decode, public copies, checksums, merging, records. Model: ``cnn`` (38,362 params).

Reported per point: setup seconds (plan, sockets, nodes, handshake up to the first
record), rounds/s in steady state (between the first and the last round's records),
node-rounds/s, RSS after building the plan, its largest value at the end of a round and at
the end. Across points: a least-squares line
RSS = a + b·nodes per topology (b = bytes per node, compared with the model's size) and
its R² (the target: memory linear in the number of nodes, R² >= 0.95; bytes per node are
reported in model sizes, x, z, the announced copy and per neighbour a public copy and the
last received delta, plus sockets and a torch module). Leak check: 50 rounds of 50 nodes on a ring, RSS sampled every round; the slope
over rounds 10..50 per node-round must stay below 0.05 model sizes (7.5 KiB for ``cnn``).
A leaked delta, public copy or received frame would be a whole model size (0.2 for a 10%
sparse delta) per node-round; what is kept by design is the metrics record, about
0.7 KiB per node-round of Python heap (measured with tracemalloc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import Result, log, rss_bytes

NODES = (10, 50, 100, 200)
TOPOLOGIES = ("ring", "random-regular")
LEAK_NODES, LEAK_ROUNDS, LEAK_SKIP = 50, 50, 10
LEAK_LIMIT = 0.05  # model sizes per node-round
ROOT = Path(__file__).resolve().parent.parent


def point(nodes: int, topology: str, rounds: int) -> dict[str, Any]:
    """One run in this process (call it in a fresh one); returns the measurements."""
    import resource

    from p2pfl.config import RunConfig
    from p2pfl.launch import run
    from p2pfl.plan import Plan, set_torch_threads

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:  # 200 nodes need ~2,500 descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    set_torch_threads(1)
    cfg = RunConfig(name="bench-scale", topology=topology, nodes=nodes, rounds=rounds, seed=0).with_overrides({
        "train.epochs": 0, "data.max_test": 10, "net.linger_ms": 0,
        "net.round_timeout": 120.0, "net.connect_timeout": 120.0})
    plan = Plan.build(cfg, search=[tempfile.mkdtemp(prefix="p2pfl-bench-nodata-")])
    rss_plan = rss_bytes()
    seen: dict[int, int] = {}
    done_at: dict[int, float] = {}
    rss_at: dict[int, int] = {}

    def progress(rec: dict[str, Any]) -> None:
        t = int(rec["round"])
        seen[t] = seen.get(t, 0) + 1
        if seen[t] == nodes:  # the last node finished round t
            done_at[t] = time.perf_counter()
            rss_at[t] = rss_bytes()

    t0 = time.perf_counter()
    res = run(cfg, plan=plan, progress=progress)
    wall = time.perf_counter() - t0
    ok = len(res.records) == nodes * rounds and all(seen.get(t) == nodes for t in range(1, rounds + 1))
    first, last = min(done_at), max(done_at)  # round numbers
    steady = (done_at[last] - done_at[first]) / (last - first) if last > first else float("nan")
    return {
        "nodes": nodes, "topology": topology, "rounds": rounds, "edges": len(plan.topology.edges),
        "params": plan.dim, "completed": ok, "wall": round(wall, 3),
        "setup_seconds": round(done_at[first] - t0, 3),
        "seconds_per_round": round(steady, 4),
        "rounds_per_s": round(1 / steady, 3) if steady > 0 else None,
        "node_rounds_per_s": round(nodes / steady, 1) if steady > 0 else None,
        "rss_after_plan": rss_plan, "rss_peak_rounds": max(rss_at.values()), "rss_end": rss_bytes(),
        "rss_by_round": {str(t): rss_at[t] for t in sorted(rss_at)},
        "skipped": sum(len(r["skipped"]) for r in res.records),
    }


def run_point(nodes: int, topology: str, rounds: int, timeout: float = 600) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.scale", str(nodes), topology, str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"scale point {nodes} {topology} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, R²)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx if sxx else 0.0
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def run(*, quick: bool = False) -> list[Result]:
    rounds = 4 if quick else 6
    nodes = (10, 50, 200) if quick else NODES
    topologies = ("ring",) if quick else TOPOLOGIES
    points: list[dict[str, Any]] = []
    for topo in topologies:
        for n in nodes:
            p = run_point(n, topo, rounds)
            log(f"  scale {topo} {n:>3} nodes: {p['rounds_per_s']} rounds/s, setup {p['setup_seconds']} s, "
                f"RSS {p['rss_peak_rounds'] / 2**20:.0f} MiB, completed={p['completed']}")
            points.append(p)
    results: list[Result] = []
    model_bytes = points[0]["params"] * 4
    for topo in topologies:
        pts = [p for p in points if p["topology"] == topo]
        small, big = pts[0], pts[-1]
        a, b, r2 = linear_fit([p["nodes"] for p in pts], [p["rss_peak_rounds"] for p in pts])
        results.append(Result(
            name=f"scale {topo} {big['nodes']} nodes",
            what=f"node-rounds/s at {big['nodes']} nodes vs at {small['nodes']} (epochs=0); must complete",
            unit="node-rounds/s", baseline=small["node_rounds_per_s"], framework=big["node_rounds_per_s"],
            ratio=big["node_rounds_per_s"] / small["node_rounds_per_s"], target=0.5, higher_is_better=True,
            reps=1, details={"points": pts, "completed_all": all(p["completed"] for p in pts)},
        ))
        if not all(p["completed"] for p in pts):
            results[-1].met = False
        results.append(Result(
            name=f"memory {topo} linear in nodes",
            what="RSS = a + b*nodes over the points; ratio = R^2 of that fit, b per node in details",
            unit="bytes/node", baseline=model_bytes, framework=b, ratio=r2, target=0.95,
            higher_is_better=True, reps=1,
            details={"intercept_bytes": round(a), "slope_bytes_per_node": round(b),
                     "model_sizes_per_node": round(b / model_bytes, 2), "r2": round(r2, 4),
                     "model_bytes": model_bytes,
                     "rss_peak_by_nodes": {str(p["nodes"]): p["rss_peak_rounds"] for p in pts}},
        ))
        log(f"  memory {topo}: {b / 2**20:.2f} MiB per node ({b / model_bytes:.1f} model sizes), R^2 {r2:.3f}")
    leak_rounds = 25 if quick else LEAK_ROUNDS
    leak = run_point(LEAK_NODES, "ring", leak_rounds)
    series = [(int(t), v) for t, v in leak["rss_by_round"].items() if int(t) >= LEAK_SKIP]
    _, slope, _ = linear_fit([t for t, _ in series], [v for _, v in series])
    per_node_round = slope / LEAK_NODES
    start = dict(series)[min(t for t, _ in series)]
    results.append(Result(
        name=f"leak ring {LEAK_NODES} nodes x {leak_rounds} rounds",
        what=f"RSS slope over rounds {LEAK_SKIP}..{leak_rounds} per node-round, in model sizes",
        unit="bytes/node-round", baseline=float(model_bytes), framework=per_node_round,
        ratio=per_node_round / model_bytes, target=LEAK_LIMIT, higher_is_better=False, reps=1,
        details={"rss_by_round": leak["rss_by_round"], "slope_bytes_per_round": round(slope),
                 "rss_at_skip": start, "growth_pct_over_run": round(100 * slope * (len(series) - 1) / start, 3),
                 "model_bytes": model_bytes, "rounds_per_s": leak["rounds_per_s"]},
    ))
    log(f"  leak: {per_node_round:.0f} B per node-round ({slope / 2**10:.1f} KiB/round)")
    return results


if __name__ == "__main__":
    n, topo, r = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    print(json.dumps(point(n, topo, r)))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the measurement is out
