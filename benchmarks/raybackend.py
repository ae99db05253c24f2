"""The Ray backend against plain node hosts on this machine: ``--backend ray`` vs ``--workers``.

One experiment (the overhead benchmark's 10-node ring: ``cnn``, the embedded Fashion-MNIST
split, 2 rounds, every node evaluated every round) run with two node hosts as OS processes
(:func:`p2pfl.host.run_hosts`, ``p2pfl run --workers 2``) and as two actors of a Ray cluster
(:func:`p2pfl.rayhosts.run_ray`, ``p2pfl run --backend ray --workers 2``), alternating, 3
times each. The cluster is started once with ``ray start --head`` (its start-up is reported
in the details, not in the ratio): what is measured is what a user with a running cluster
pays per run. Ratio = Ray wall time / ``--workers`` wall time (lower is better; target 1.5).
Both runs must give the same final models (checked).

    python -m benchmarks --only raybackend
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import Result, interleaved, load_average, log, median

TARGET = 1.5


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def run(*, quick: bool = False) -> list[Result]:
    try:
        import ray
    except ImportError:
        log("  skipped: Ray is not installed (pip install 'p2pfl[ray]')")
        return []
    from p2pfl import launch
    from p2pfl.deployment import free_tcp_ports

    from .overhead import build_plan, config

    reps = 2 if quick else 3
    data_dir = Path(tempfile.mkdtemp(prefix="p2pfl-bench-nodata-"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # see tests/test_rayhosts.py
    port = free_tcp_ports(1)[0]
    t0 = time.perf_counter()
    subprocess.run([_ray_cli(), "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard",
                    "false", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"],
                   check=True, capture_output=True, timeout=300, env=env)
    cluster_start = time.perf_counter() - t0
    address = f"127.0.0.1:{port}"
    models: dict[str, dict[int, np.ndarray]] = {}
    try:
        plan = build_plan(config(1 if quick else 2, **{"net.linger_ms": 1000}), data_dir)

        def case(backend: str) -> float:
            out = Path(tempfile.mkdtemp(prefix="p2pfl-bench-ray-"))
            try:
                t = time.perf_counter()
                res = launch.run(plan.config, plan=plan, out=out, search=[data_dir], hosts=2, overwrite=True,
                                 backend=backend, ray_options={"address": address} if backend == "ray" else None)
                wall = time.perf_counter() - t
            finally:
                shutil.rmtree(out, ignore_errors=True)
            models[backend] = res.final_models
            return wall

        times = interleaved({"local": lambda: case("local"), "ray": lambda: case("ray")}, reps, warmup=0)
        same = all(np.array_equal(models["local"][i], models["ray"][i]) for i in models["local"])
        if not same:
            raise RuntimeError("the Ray backend and --workers gave different final models")
    finally:
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(data_dir, ignore_errors=True)
    ratios = [r / w for r, w in zip(times["ray"], times["local"], strict=True)]
    result = Result(
        name="ray backend vs --workers 2 (10 nodes)",
        what="wall time of one run: 2 node hosts as Ray actors / as OS processes (cluster already running)",
        unit="s", baseline=median(times["local"]), framework=median(times["ray"]), ratio=median(ratios),
        target=TARGET, higher_is_better=False, reps=reps,
        baseline_samples=[round(t, 2) for t in times["local"]], framework_samples=[round(t, 2) for t in times["ray"]],
        details={"cluster_start_seconds": round(cluster_start, 2), "same_final_models": same,
                 "nodes": plan.config.nodes, "rounds": plan.config.rounds, "model": plan.config.train.model,
                 "ray": ray.__version__, "load_average": load_average()},
    )
    log(f"  {result.name}: --workers {result.baseline:.1f} s, ray {result.framework:.1f} s, ratio {result.ratio:.2f} "
        f"(cluster start {cluster_start:.1f} s, not counted)")
    return [result]
