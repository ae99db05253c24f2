"""Overhead: a 10-node run vs a plain torch loop doing the same training work in one process.

Both sides train the same model (``cnn``) on the same shards of the embedded
Fashion-MNIST split, with the same epochs, batch size, optimizer and a fresh optimizer per
node and round (``keep_optimizer_state = false``, the default). The plain loop is nothing
but ``for round, node, epoch, batch: forward, backward, step`` over the plan's shards. A
short probe first times it with one torch thread and with one per core, and the faster
setting is the baseline (on a busy 2-core machine two intra-op threads were measured 10x
slower than one for this small model, so the probe usually picks one).

The framework side is :func:`p2pfl.launch.run` on the same prebuilt plan: in-process (every
node a task of one event loop, training in the executor) and ``processes=True`` (one OS
process per node, which imports torch and builds its plan itself) and ``hosts=2`` (``run
--workers 2``: two node hosts of 5 nodes, each importing torch and building its plan once,
target >= 0.8). Its wall time covers
everything: sockets, handshake, training, gossip, merging, per-round evaluation of every
node on the test split, records, shutdown. Throughput counts only training samples:
nodes x shard x epochs x rounds / wall time. Ratio = framework / baseline, target >= 0.85.

Where the rest goes: the per-record ``time`` phases (train, wait, merge, eval), summed
over nodes, and a cProfile of an in-process run that covers the event loop *and* the
executor threads (one profiler per thread, merged).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from p2pfl import launch
from p2pfl.config import RunConfig
from p2pfl.models import build_model
from p2pfl.plan import Plan, set_torch_threads

from ._common import Result, interleaved, log, median

TARGET = 0.85
TARGET_WORKERS = 0.8  # target: run --workers 2 (two node hosts) vs the plain loop
PHASES = ("train", "wait", "merge", "eval")


def config(rounds: int, **overrides: Any) -> RunConfig:
    base = RunConfig(name="bench-overhead", topology="ring", nodes=10, rounds=rounds, seed=0)
    return base.with_overrides({"net.linger_ms": 0, **overrides})


def build_plan(cfg: RunConfig, data_dir: Path) -> Plan:
    # An empty search folder: always the embedded split, whatever a user's cache holds.
    return Plan.build(cfg, search=[data_dir])


def samples_trained(plan: Plan) -> int:
    cfg = plan.config
    return sum(len(plan.node_data(i)[0]) for i in range(cfg.nodes)) * cfg.train.epochs * cfg.rounds


def plain_loop(plan: Plan, threads: int, *, nodes: int | None = None, rounds: int | None = None) -> float:
    """The same training work as the P2P run, as a plain torch loop; returns seconds."""
    cfg = plan.config
    torch.set_num_threads(threads)
    shards = [plan.node_data(i)[0] for i in range(nodes or cfg.nodes)]
    model = build_model(cfg.train.model, input_shape=plan.bundle.input_shape,
                        classes=plan.bundle.train.classes, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    bs = cfg.train.batch_size
    t0 = time.perf_counter()
    model.train()
    for _ in range(rounds or cfg.rounds):
        for data in shards:
            opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
            for _ in range(cfg.train.epochs):
                perm = torch.randperm(len(data), generator=gen)
                for s in range(0, len(data), bs):
                    idx = perm[s:s + bs]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
                    opt.step()
    return time.perf_counter() - t0


def pick_threads(plan: Plan, reps: int = 3) -> tuple[int, dict[str, float]]:
    """Torch thread count of the fastest plain loop, from a probe on two shards, one round."""
    forced = os.environ.get("P2PFL_BENCH_PLAIN_THREADS")  # a busy shared machine: pin it (e.g. 1)
    counts = [int(forced)] if forced else sorted({1, max(1, os.cpu_count() or 1)})
    cases = {str(c): (lambda c=c: plain_loop(plan, c, nodes=2, rounds=1)) for c in counts}
    times = interleaved(cases, reps, warmup=0)
    probe = {f"{k} thread(s)": round(median(v), 3) for k, v in times.items()}
    return int(min(times, key=lambda k: median(times[k]))), probe


def framework_run(plan: Plan, *, processes: bool, data_dir: Path, hosts: int | None = None
                  ) -> tuple[float, list[dict[str, Any]]]:
    out = Path(tempfile.mkdtemp(prefix="p2pfl-bench-run-")) if processes or hosts else None
    try:
        t0 = time.perf_counter()
        res = launch.run(plan.config, plan=plan, processes=processes, out=out, search=[data_dir], hosts=hosts)
        wall = time.perf_counter() - t0
    finally:
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
    expected = plan.config.nodes * plan.config.rounds
    if len(res.records) != expected:
        raise RuntimeError(f"run produced {len(res.records)} records, expected {expected}")
    return wall, res.records


def phase_breakdown(records: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Node-seconds per phase (summed over nodes and rounds), each phase's share, and how
    much of the wall time was rounds at all (the slowest node's summed round times; the rest
    is start-up, handshake and shutdown).

    Phase times are wall clock per node: with more nodes than executor threads, a node's
    "merge" or "eval" includes waiting in the executor queue behind other nodes' training.
    """
    sums = {p: float(sum(r["time"][p] for r in records)) for p in (*PHASES, "round")}
    total = sums["round"] or 1.0
    per_node: dict[int, float] = {}
    for r in records:
        per_node[int(r["node"])] = per_node.get(int(r["node"]), 0.0) + float(r["time"]["round"])
    rounds_wall = max(per_node.values())
    return {"node_seconds": {k: round(v, 3) for k, v in sums.items()},
            "share_of_round": {p: round(sums[p] / total, 3) for p in PHASES},
            "wall": round(wall, 3), "rounds_wall": round(rounds_wall, 3),
            "outside_rounds_wall": round(wall - rounds_wall, 3)}


def profile_inprocess(plan: Plan, lines: int = 25) -> dict[str, Any]:
    """cProfile of one in-process run: the event loop thread and every executor thread."""
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profiler() -> None:
        prof = cProfile.Profile()
        with lock:
            profilers.append(prof)
        prof.enable()  # profiles this worker thread until it exits

    set_torch_threads(1)
    executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2),
                                  initializer=start_thread_profiler, thread_name_prefix="bench-prof")

    def configure(node: Any) -> None:
        node._executor = executor  # the run's own pool, with a profiler in every thread

    main = cProfile.Profile()
    t0 = time.perf_counter()
    main.enable()
    try:
        asyncio.run(launch.run_inprocess_async(plan, configure=configure))
    finally:
        main.disable()
        executor.shutdown(wait=True)
    wall = time.perf_counter() - t0
    stats = pstats.Stats(main)
    for prof in profilers:
        stats.add(prof)
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(lines)
    # Group the executor time by what the node asked for (cumulative time of each entry point).
    groups = {"Trainer.train": ("train.py", "train"), "Trainer.evaluate": ("train.py", "evaluate"),
              "Node._merge": ("node.py", "_merge"), "attack_metrics": ("wiring.py", "attack_metrics"),
              "wire.decode": ("wire.py", "decode"), "wire.encode": ("wire.py", "encode"),
              "wire.checksum": ("wire.py", "checksum"), "Node._receive_loop": ("node.py", "_receive_loop"),
              "event loop select (idle)": ("selectors.py", "select")}
    cum: dict[str, float] = {}
    raw = stats.stats  # type: ignore[attr-defined]
    for label, (fname, func) in groups.items():
        cum[label] = round(sum(v[3] for k, v in raw.items() if k[0].endswith(fname) and k[2] == func), 3)
    return {"wall": round(wall, 3), "threads_profiled": 1 + len(profilers),
            "cumulative_seconds": cum, "top_by_tottime": text.getvalue().splitlines()[:lines + 12]}


def run(*, quick: bool = False, processes: bool = True) -> list[Result]:
    """``processes=False`` leaves out the one-process-per-node case (the slowest to measure)."""
    reps = 2 if quick else 3
    rounds = 1 if quick else 2
    data_dir = Path(tempfile.mkdtemp(prefix="p2pfl-bench-nodata-"))
    results: list[Result] = []
    try:
        plan = build_plan(config(rounds), data_dir)
        n_samples = samples_trained(plan)
        breakdowns: dict[str, list[dict[str, Any]]] = {"inprocess": [], "processes": [], "workers2": []}

        def case_fw(processes: bool, hosts: int | None = None, plan_: Plan | None = None) -> float:
            wall, records = framework_run(plan_ or plan, processes=processes, data_dir=data_dir, hosts=hosts)
            mode = "workers2" if hosts else "processes" if processes else "inprocess"
            breakdowns[mode].append(phase_breakdown(records, wall))
            return wall

        threads, probe = pick_threads(plan)
        log(f"  plain loop: {threads} torch thread(s) (probe, seconds: {probe})")
        cases = {
            "plain": lambda: plain_loop(plan, threads),
            "inprocess": lambda: case_fw(False),
        }
        # 2 node hosts of 5 nodes (run --workers 2). Linger as by default: a host whose nodes are
        # done exits, and its last messages must still reach the other host's nodes.
        plan_w2 = build_plan(config(rounds, **{"net.linger_ms": 1000}), data_dir)
        cases["workers2"] = lambda: case_fw(False, hosts=2, plan_=plan_w2)
        if not quick and processes:
            cases["processes"] = lambda: case_fw(True)
        times = interleaved(cases, reps, warmup=0)
        set_torch_threads(1)
        rate = {k: [n_samples / t for t in v] for k, v in times.items()}
        best_plain = rate["plain"]
        profile = {"skipped": "--quick"} if quick else profile_inprocess(plan)
        for mode in ("inprocess", "workers2", "processes"):
            if mode not in rate:
                continue
            ratios = [f / b for f, b in zip(rate[mode], best_plain, strict=True)]
            last = breakdowns[mode][-1]
            r = Result(
                name=f"overhead 10 nodes {mode}",
                what="P2P run's training samples/s vs a plain torch loop (same model, shards, epochs, batch)",
                unit="samples/s", baseline=median(best_plain), framework=median(rate[mode]),
                ratio=median(ratios), target=TARGET_WORKERS if mode == "workers2" else TARGET,
                higher_is_better=True, reps=reps,
                baseline_samples=[round(x) for x in best_plain],
                framework_samples=[round(x) for x in rate[mode]],
                details={
                    "config": {"nodes": 10, "topology": "ring", "rounds": rounds, "model": "cnn",
                               "epochs": plan.config.train.epochs, "batch_size": plan.config.train.batch_size,
                               "data": plan.bundle.source, "test_examples": len(plan.test),
                               "params": plan.dim},
                    "training_samples": n_samples,
                    "plain_torch_threads": threads, "thread_probe_seconds": probe,
                    "wall_seconds": [round(t, 2) for t in times[mode]],
                    "plain_seconds": [round(t, 2) for t in times["plain"]],
                    "steady_state_ratio": round(median(
                        [b["rounds_wall"] for b in breakdowns[mode]]) and median(times["plain"]) / median(
                        [b["rounds_wall"] for b in breakdowns[mode]]), 3),
                    "phases_last_rep": last,
                    **({"profile_inprocess": profile} if mode == "inprocess" else {}),
                },
            )
            log(f"  {r.name}: plain {r.baseline:,.0f}/s, framework {r.framework:,.0f}/s, ratio {r.ratio:.3f}")
            results.append(r)
    finally:
        set_torch_threads(1)
        shutil.rmtree(data_dir, ignore_errors=True)
    return results
