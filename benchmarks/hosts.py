"""Node hosts at scale: node-rounds/s and RSS per node from 10 to 10,000 nodes (``run --workers``).

Every point is one experiment run by :func:`p2pfl.host.run_hosts` (W node hosts on this
machine: 2, or as many as the descriptor limit needs, :func:`workers_for`; ``ipc://``
sockets, no per-round checkpoints), with the hosts' resident memory
sampled from ``/proc`` every 0.5 s (its peak, summed over the hosts, is reported).

* **training on** (10, 100, 1,000 nodes): model ``mlp`` (50,890 parameters, 199 KiB) on the
  embedded Fashion-MNIST split cut to 4,000 training images (so 4 per node at 1,000 nodes,
  400 at 10), one local epoch per round, batch 32, evaluation on 100 test images every round.
* **training off** (10,000 nodes): ``train.epochs = 0`` (a node announces its unchanged model:
  only the protocol works), model ``linear`` (7,850 parameters, 31 KiB), data a synthetic
  Fashion-MNIST-format set of 12,000 blank images (10,000 nodes need a sample each), 10 test
  images.

Both on a ring and a random 4-regular graph. Reported per point: wall seconds (start-up
included), seconds per round in steady state (the slowest node's round-1 to last-round
records), node-rounds/s, the sum of the hosts' peak RSS, and RSS per node above a baseline
point of the same settings and hosts with 3 nodes per host: ``(RSS(n) - RSS(b)) / (n - b)``,
in model sizes. Targets: 1,000 nodes with training complete 5 rounds in under
15 minutes; 10,000 nodes without complete 3 rounds; RSS per node <= 4 model sizes plus the
stated fixed overhead (:data:`FIXED_OVERHEAD`).

    python -m benchmarks --only hosts            # every point (about 30-60 min on 2 shared cores)
    python -m benchmarks.hosts 1000 ring on 5 2  # one point: nodes topology on|off rounds [workers]
    python -m benchmarks.hosts measure points.jsonl   # the README table's points, one JSON line each
    python -m benchmarks.hosts table points.jsonl     # ... as the README table
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._common import Result, load_average, log

TOPOLOGIES = {"ring": {}, "random-regular": {"topology_params": {"degree": 4}}}
WORKERS = 2
BASE_NODES = 6  # the baseline point: 3 nodes per host (a random 4-regular graph needs 5 or more)
#: Descriptors a host may use: RLIMIT_NOFILE's hard limit here is 20,000, a node needs about
#: 3 + 5 per link (p2pfl.host.fds_needed), so large graphs get more hosts than WORKERS.
FDS_PER_HOST = 16_000


def workers_for(nodes: int, topology: str) -> int:
    """WORKERS, or as many hosts as the descriptors of ``nodes`` nodes need."""
    degree = 2 if topology == "ring" else TOPOLOGIES[topology]["topology_params"]["degree"]
    return max(WORKERS, -(-nodes * (3 + 5 * degree) // FDS_PER_HOST))


def base_nodes(workers: int) -> int:
    """The baseline point for ``workers`` hosts: 3 nodes per host."""
    return max(BASE_NODES, 3 * workers)
FIXED_OVERHEAD = 256 * 1024  # bytes per node beyond its model vectors (sockets, tasks, records)
MINUTES_1000 = 15.0


def settings(nodes: int, topology: str, training: bool, rounds: int) -> Any:
    from p2pfl.config import RunConfig

    cfg = RunConfig(name="bench-hosts", topology=topology, nodes=nodes, rounds=rounds, seed=0,
                    **TOPOLOGIES[topology])
    # At thousands of nodes per host a round's work queues behind everyone else's: a neighbour
    # is slow, not silent or dead, for far longer than the defaults (1 s, 3 s) assume.
    # linger: a host whose nodes are all done exits; its last "done" messages must still leave.
    common = {"net.linger_ms": 2000, "net.round_timeout": 1800.0, "net.connect_timeout": 1800.0,
              "net.transport": os.environ.get("P2PFL_BENCH_TRANSPORT", "ipc"),
              "net.gap_grace": 60.0, "net.dead_after": 30.0}
    if training:
        return cfg.with_overrides({**common, "train.model": "mlp", "train.epochs": 1, "train.batch_size": 32,
                                   "data.max_train": 4000, "data.max_test": 100})
    return cfg.with_overrides({**common, "train.model": "linear", "train.epochs": 0, "data.max_test": 10})


def synthetic_fmnist(directory: Path, n_train: int = 12_000, n_test: int = 100) -> Path:
    """Four valid Fashion-MNIST IDX files of blank images (for protocol-only points)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, count, kind in (("train-images-idx3-ubyte", n_train, "images"),
                              ("train-labels-idx1-ubyte", n_train, "labels"),
                              ("t10k-images-idx3-ubyte", n_test, "images"),
                              ("t10k-labels-idx1-ubyte", n_test, "labels")):
        arr = np.zeros((count, 28, 28), np.uint8) if kind == "images" else (np.arange(count) % 10).astype(np.uint8)
        raw = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        (directory / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
    return directory


def _children_rss() -> dict[int, int]:
    """Resident bytes of this process's direct children (the node hosts)."""
    out: dict[int, int] = {}
    me = os.getpid()
    for tid in os.listdir(f"/proc/{me}/task"):
        try:
            kids = Path(f"/proc/{me}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for pid in kids:
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[int(pid)] = pages * os.sysconf("SC_PAGE_SIZE")
    return out


def point(nodes: int, topology: str, training: bool, rounds: int, workers: int | None = None) -> dict[str, Any]:
    """One run of ``workers`` node hosts (default :func:`workers_for`); returns the measurements."""
    workers = workers or workers_for(nodes, topology)
    from p2pfl.host import run_hosts
    from p2pfl.plan import Plan, set_torch_threads
    from p2pfl.runfolder import write_plan as _write_plan

    set_torch_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="p2pfl-bench-hosts-"))
    data = synthetic_fmnist(tmp / "data") if not training else tmp / "nodata"  # empty: the embedded split
    data.mkdir(exist_ok=True)
    out = tmp / "run"
    out.mkdir()
    peak: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            for pid, rss in _children_rss().items():
                peak[pid] = max(peak.get(pid, 0), rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cfg = settings(nodes, topology, training, rounds)
        plan = Plan.build(cfg, search=[data])
        _write_plan(out, plan)
        t0 = time.perf_counter()
        res = run_hosts(plan, out=out, hosts=workers, search=[data], checkpoints=False)
        wall = time.perf_counter() - t0
    except Exception:
        for path in sorted((out / "hosts").glob("host-*.log")):
            log(f"--- {path.name} (last lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        raise
    finally:
        stop.set()
        sampler.join()
        shutil.rmtree(tmp, ignore_errors=True)
    ok = len(res.records) == nodes * rounds
    last = {t: max(float(r["wall"]) for r in res.records if int(r["round"]) == t) for t in range(1, rounds + 1)}
    steady = (last[rounds] - last[1]) / (rounds - 1) if rounds > 1 else float("nan")
    return {
        "nodes": nodes, "topology": topology, "training": training, "rounds": rounds, "workers": workers,
        "model": cfg.train.model, "params": plan.dim, "model_bytes": plan.dim * 4,
        "edges": len(plan.topology.edges), "completed": ok, "wall": round(wall, 2),
        "seconds_per_round": round(steady, 3),
        "node_rounds_per_s": round(nodes / steady, 1) if steady > 0 else None,
        "rss_hosts_peak": sum(peak.values()), "rss_by_host": sorted(peak.values()),
        "skipped": sum(len(r["skipped"]) for r in res.records),
        "accuracy_final": res.final.get("accuracy_mean"), "data": plan.bundle.source,
        "load_average": load_average(),
    }


def run_point(nodes: int, topology: str, training: bool, rounds: int, workers: int | None = None,
              timeout: float = 3600) -> dict[str, Any]:
    """:func:`point` in a fresh process (its memory its own)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.hosts", str(nodes), topology, "on" if training else "off",
           str(rounds), str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"hosts point {cmd[3:]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_node(big: dict[str, Any], base: dict[str, Any]) -> float:
    return (big["rss_hosts_peak"] - base["rss_hosts_peak"]) / (big["nodes"] - base["nodes"])


def run(*, quick: bool = False) -> list[Result]:
    plan = [(10, True, 5), (100, True, 5), (1000, True, 5), (10_000, False, 3)]
    if quick:
        plan = [(10, True, 3), (100, True, 3), (1000, False, 3)]
    results: list[Result] = []
    for topo in TOPOLOGIES:
        points: list[dict[str, Any]] = []
        bases: dict[tuple[bool, int], dict[str, Any]] = {}
        for nodes, training, rounds in plan:
            workers = workers_for(nodes, topo)
            if (training, workers) not in bases:  # a few nodes per host: the fixed cost of the hosts
                bases[training, workers] = run_point(base_nodes(workers), topo, training, 3, workers)
            p = run_point(nodes, topo, training, rounds, workers)
            p["rss_per_node"] = round(per_node(p, bases[training, workers]))
            p["model_sizes_per_node"] = round(p["rss_per_node"] / p["model_bytes"], 2)
            log(f"  hosts {topo} {nodes:>5} nodes training {'on ' if training else 'off'}: "
                f"{p['node_rounds_per_s']} node-rounds/s, wall {p['wall']} s, RSS {p['rss_hosts_peak'] / 2**20:.0f} MiB "
                f"({p['rss_per_node'] / 1024:.0f} KiB/node = {p['model_sizes_per_node']} model sizes), "
                f"completed={p['completed']}, load {p['load_average']}")
            points.append(p)
        for p in points:
            bound = 4 * p["model_bytes"] + FIXED_OVERHEAD
            results.append(Result(
                name=f"hosts {topo} {p['nodes']} nodes training {'on' if p['training'] else 'off'}",
                what=f"RSS per node vs 4 model sizes + {FIXED_OVERHEAD // 1024} KiB "
                     f"({p['model']}, {p['workers']} hosts); node-rounds/s in details",
                unit="bytes/node", baseline=bound, framework=p["rss_per_node"],
                ratio=p["rss_per_node"] / bound, target=1.0, higher_is_better=False, reps=1,
                details={**p, "base": bases[p["training"], p["workers"]]},
            ))
            if not p["completed"]:
                results[-1].met = False
        big = next((p for p in points if p["training"] and p["nodes"] >= 1000), None)
        if big is not None:
            results.append(Result(
                name=f"hosts {topo} 1000 nodes training on: minutes for 5 rounds",
                what="wall minutes (start-up included) of 5 rounds of 1,000 training nodes on 2 hosts",
                unit="minutes", baseline=MINUTES_1000, framework=big["wall"] / 60,
                ratio=big["wall"] / 60 / MINUTES_1000, target=1.0, higher_is_better=False, reps=1,
                details={"point": big},
            ))
    return results


def measure(points: list[tuple[int, str, bool, int]], out: Path) -> None:
    """The points of the README table, one after another, each appended to ``out`` (JSON lines)
    as soon as it is measured (a failed point is recorded and the next one runs)."""
    bases: dict[tuple[str, bool, int], dict[str, Any]] = {}
    for nodes, topo, training, rounds in points:
        workers = workers_for(nodes, topo)
        key = (topo, training, workers)
        if key not in bases:
            bases[key] = run_point(base_nodes(workers), topo, training, 3, workers)
        try:
            p = run_point(nodes, topo, training, rounds, workers)
        except Exception as exc:  # record the failure and go on with the next point
            p = {"nodes": nodes, "topology": topo, "training": training, "rounds": rounds, "error": str(exc)[-2000:]}
        else:
            p["rss_per_node"] = round(per_node(p, bases[key]))
            p["model_sizes_per_node"] = round(p["rss_per_node"] / p["model_bytes"], 2)
            p["base"] = bases[key]
        log(f"  {json.dumps({k: v for k, v in p.items() if k not in ('base', 'rss_by_host')})}")
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(p) + "\n")


def table_md(points: list[dict[str, Any]]) -> str:
    """The README's "Scaling out" table from :func:`measure`'s JSON lines."""
    rows = ["| graph | nodes | training | model | rounds | wall s | s/round | node-rounds/s | RSS of the hosts MiB "
            "| RSS/node KiB | model sizes/node | load avg |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in points:
        graph = "ring" if p["topology"] == "ring" else "random 4-regular"
        if "error" in p:
            rows.append(f"| {graph} | {p['nodes']:,} | {'on' if p['training'] else 'off'} | | {p['rounds']} | "
                        f"{p['error'].splitlines()[0][:200]} | | | | | | |")
            continue
        model = f"{p['model']} ({p['model_bytes'] / 1024:.0f} KiB)"
        done = "" if p["completed"] else " (incomplete)"
        rows.append(
            f"| {graph} | {p['nodes']:,} | {'on' if p['training'] else 'off'} | {model} | {p['rounds']}{done} | "
            f"{p['wall']:,.0f} | {p['seconds_per_round']:.2f} | {p['node_rounds_per_s']:,.0f} | "
            f"{p['rss_hosts_peak'] / 2**20:,.0f} | {p['rss_per_node'] / 1024:,.0f} | {p['model_sizes_per_node']} | "
            f"{p['load_average'][0]:.1f} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__" and sys.argv[1:2] == ["table"]:
    pts = [json.loads(line) for line in Path(sys.argv[2]).read_text(encoding="utf-8").splitlines() if line.strip()]
    print(table_md(pts), end="")
elif __name__ == "__main__" and sys.argv[1:2] == ["measure"]:
    # The acceptance points first (the machine is shared: what is measured first is surely measured).
    order = [(1000, "ring", True, 5), (10_000, "ring", False, 3), (1000, "random-regular", True, 5),
             (10, "ring", True, 5), (100, "ring", True, 5), (10, "random-regular", True, 5),
             (100, "random-regular", True, 5), (10_000, "random-regular", False, 3)]
    measure(order, Path(sys.argv[2]))
elif __name__ == "__main__":
    n, topo, mode, r = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    w = int(sys.argv[5]) if len(sys.argv) > 5 else None
    print(json.dumps(point(n, topo, mode == "on", r, w)))
    sys.stdout.flush()
    os._exit(0)
