"""Starting nodes: all in one process, one OS process per node, or one node from a deployment.

* :func:`run` is the entry point: it builds the plan, writes the run folder and runs the
  nodes in one of the two ways below.
* :func:`run_inprocess_async` runs every node as an asyncio task in one event loop; each node
  is still a real ZeroMQ endpoint (tcp on loopback or ipc) and talks only over sockets.
* :func:`run_processes` writes a deployment file and starts ``p2pfl node`` once per node.

Nodes are built by :mod:`p2pfl.wiring`; :mod:`p2pfl.deployment` runs one node of a
deployment (``p2pfl node``).

All of them produce the same run folder (:mod:`p2pfl.runfolder`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from .config import RunConfig
from .deployment import Deployment, free_tcp_ports, run_node_async
from .errors import ConfigError
from .host import collect_run, loopback_addresses, stop_processes
from .metrics import MetricsWriter, read_records
from .node import Node
from .plan import Plan, set_torch_threads
from .runfolder import Progress, RunResult, finish_run, prepare_out, write_plan
from .transport import Transport
from .wiring import make_node, reopener, transport_for

#: Where the node hosts of ``run(hosts=W)`` run: OS processes on this machine, or Ray actors.
BACKENDS = ("local", "ray")


def check_backend(backend: str, *, hosts: int | None, processes: bool = False) -> None:
    """Raise :class:`ConfigError` naming the flag for a backend that cannot run as asked."""
    if backend not in BACKENDS:
        raise ConfigError("--backend", backend, ", ".join(BACKENDS))
    if backend == "ray" and not hosts:
        raise ConfigError("--workers", hosts, "the number of node hosts (Ray actors) with --backend ray")
    if backend == "ray" and processes:
        raise ConfigError("--backend", backend, "node hosts (--workers W), not --processes")

log = logging.getLogger(__name__)

_transport = transport_for  # the name tests/test_faults.py imports

class RunHook:
    """Something that watches a run of :func:`run` in this process, e.g. the weight-update
    recorder (:class:`p2pfl.updates.RecordUpdates`). Every method is optional.

    ``start`` gets the plan and the run folder before any node exists; ``attach`` every node
    before it starts (in-process runs only: node processes are out of reach); ``finish`` the
    result, or None when the run failed.
    """

    def start(self, plan: Plan, out: Path | None) -> None:
        """Called once, before any node exists."""

    def attach(self, node: Node) -> None:
        """Called with every node before it starts (in-process runs)."""

    def finish(self, result: RunResult | None) -> None:
        """Called once at the end, also after a failure (then with None)."""


# ---- all nodes in one process --------------------------------------------------------------------
async def run_inprocess_async(
    plan: Plan,
    *,
    out: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    x_init: Mapping[int, np.ndarray] | None = None,
    keep_nodes: list[Node] | None = None,
    transport_factory: Callable[..., Transport] = Transport,
    configure: Callable[[Node], None] | None = None,
) -> RunResult:
    """Run every node of ``plan`` as a task of this event loop, over real sockets.

    ``transport_factory`` (a :class:`Transport` subclass, e.g. one that drops messages) and
    ``configure`` (called with every node before it starts) are hooks for experiments and
    tests; ``keep_nodes`` receives the node objects.
    """
    cfg = plan.config
    started = time.perf_counter()
    ctx = zmq.asyncio.Context()
    ctx.setsockopt(zmq.LINGER, cfg.net.linger_ms)
    ctx.set(zmq.MAX_SOCKETS, max(1024, 4 * (cfg.nodes + 2 * len(plan.topology.edges))))
    tmpdir = tempfile.mkdtemp(prefix="p2pfl-") if cfg.net.transport == "ipc" else None
    executor = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 2),
                                  thread_name_prefix="p2pfl-train")
    writer = MetricsWriter(out / "metrics.jsonl") if out is not None else None
    records: list[dict[str, Any]] = []

    def on_record(rec: dict[str, Any]) -> None:
        records.append(rec)
        if writer is not None:
            writer.write(rec)
        if progress is not None:
            progress(rec)

    transports: dict[int, Transport] = {}
    try:
        for i in range(cfg.nodes):
            listen = (f"ipc://{tmpdir}/node-{i}" if tmpdir else f"tcp://{cfg.net.host}:0")
            transports[i] = transport_for(plan, i, listen, ctx, factory=transport_factory)
            transports[i].bind()
        for i, tr in transports.items():
            tr.connect({j: transports[j].address or "" for j in plan.topology.neighbours(i)})
        nodes = [make_node(plan, i, transports[i], executor=executor, on_record=on_record,
                           x_init=(x_init or {}).get(i)) for i in range(cfg.nodes)]
        addresses = {i: tr.address or "" for i, tr in transports.items()}
        for node in nodes:
            if cfg.churn_of(node.id) is not None:  # a departing node closes its sockets and rebinds
                node.reopen = reopener(plan, node.id, addresses, ctx, factory=transport_factory)
        if keep_nodes is not None:
            keep_nodes.extend(nodes)
        for node in nodes:
            if configure is not None:
                configure(node)
        async def run_node(node: Node) -> None:
            try:
                await node.run()
            finally:
                if cfg.mode == "async":
                    # As a process would on exit: neighbours that still run (one that came back
                    # from churn after this one finished) see the link go down and stop waiting
                    # for it after dead_after, not after the round timeout.
                    node.transport.close()

        async with asyncio.TaskGroup() as tg:
            for node in nodes:
                tg.create_task(run_node(node))
        models = {n.id: n.x for n in nodes}
    finally:
        await asyncio.gather(*(tr.aclose() for tr in transports.values()))
        # Off the loop: both can block (linger, a training thread finishing its batch).
        await asyncio.to_thread(ctx.term)
        await asyncio.to_thread(executor.shutdown, wait=True)
        if writer is not None:
            writer.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    wall = time.perf_counter() - started
    summary = finish_run(out, plan, records, models, wall)
    return RunResult(config=cfg, summary=summary, records=records, final_models=models,
                     adversaries=plan.adversaries, out=out, wall_time=wall, data_source=plan.bundle.source)


def run_processes(
    plan: Plan,
    *,
    out: Path,
    progress: Progress | None = None,
    search: Sequence[str | os.PathLike] = (),
    python: str | None = None,
) -> RunResult:
    """Start ``p2pfl node`` once per node on loopback and wait for all of them.

    Every node process looks for data in exactly the folders this process's plan used
    (``plan.search``, as absolute paths, with ``--only-data-dirs``), not in a path of its
    own from ``$P2PFL_DATA``: parent and children load the same data. ``search`` is used
    only for a plan that records no search path.
    """
    cfg = plan.config
    data_dirs = [Path(d).expanduser().absolute() for d in (plan.search or search)]
    started = time.perf_counter()
    sockdir, addresses = loopback_addresses(cfg)
    dep = Deployment(config=cfg, addresses=addresses, churn_exit=bool(cfg.churn))
    dep_path = out / "deployment.toml"
    dep_path.write_text(dep.to_toml(), encoding="utf-8")
    (out / "nodes").mkdir(exist_ok=True)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    logs = {}
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmds: dict[int, list[str]] = {}
    restarts: dict[int, int] = {}  # churn: how often each node's process was started again
    from .imports import import_roots, merged_pythonpath

    # the user's model/data modules: the children also look where this process found them
    pythonpath = merged_pythonpath(import_roots([cfg.train.model, cfg.data.dataset]), env)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        for i in range(cfg.nodes):
            cmd = [python or sys.executable, "-m", "p2pfl", "node", "--deployment", str(dep_path),
                   "--id", str(i), "--out", str(out)]
            cmd += ["--only-data-dirs"]
            for d in data_dirs:
                cmd += ["--data-dir", str(d)]
            cmds[i] = cmd
            logs[i] = (out / "nodes" / f"node-{i}.log").open("ab")
            procs[i] = subprocess.Popen(cmd, stdout=logs[i], stderr=subprocess.STDOUT, env=env)
        seen: dict[int, int] = {i: 0 for i in range(cfg.nodes)}
        while True:
            for i, p in list(procs.items()):  # a node that left (churn) exits 0 and leaves a note:
                if p.poll() == 0 and (out / "nodes" / f"node-{i}.away").exists():
                    # start it again at once; it loads its data, then stays away until its rejoin
                    # time (no socket open) and resumes from its checkpoint
                    procs[i] = subprocess.Popen(cmds[i], stdout=logs[i], stderr=subprocess.STDOUT, env=env)
                    restarts[i] = restarts.get(i, 0) + 1
            if all(p.poll() is not None for p in procs.values()):
                break
            time.sleep(0.3)
            _poll_progress(out, seen, progress)
            failed = [i for i, p in procs.items() if p.returncode not in (None, 0)]
            if failed:
                raise RuntimeError(f"node process(es) {failed} exited with an error; see {out}/nodes/node-*.log")
        _poll_progress(out, seen, progress)
        failed = [i for i, p in procs.items() if p.returncode != 0]
        if failed:
            raise RuntimeError(f"node process(es) {failed} exited with an error; see {out}/nodes/node-*.log")
    finally:
        stop_processes(procs, logs, sockdir)
    records: list[dict[str, Any]] = []
    for i in range(cfg.nodes):
        path = out / "nodes" / f"node-{i}.jsonl"
        if path.exists():
            records.extend(read_records(path))
    return collect_run(plan, out, records, started, extra={"restarts": restarts} if restarts else {})


def _poll_progress(out: Path, seen: dict[int, int], progress: Progress | None) -> None:
    if progress is None:
        return
    for i in seen:
        path = out / "nodes" / f"node-{i}.jsonl"
        if not path.exists():
            continue
        recs = read_records(path)
        for rec in recs[seen[i]:]:
            progress(rec)
        seen[i] = len(recs)


# ---- the entry point: `p2pfl run`, the Python API and the sweep ------------------------------------
def run(
    config: RunConfig,
    *,
    out: str | Path | None = None,
    processes: bool = False,
    search: Sequence[str | os.PathLike] = (),
    progress: Progress | None = None,
    overwrite: bool = False,
    plan: Plan | None = None,
    workers: int | None = None,
    hooks: Sequence[RunHook] = (),
    tensorboard: str | os.PathLike | bool | None = None,
    hosts: int | None = None,
    backend: str = "local",
    ray_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run a whole experiment on this machine and write its run folder (if ``out``).

    The one function that runs an experiment: ``p2pfl run``, :meth:`p2pfl.Experiment.run`
    and every sweep cell call it. All nodes run in this process (an asyncio task each, on
    real sockets; ``workers`` training threads), with ``processes`` one ``p2pfl node``
    process per node, or with ``hosts=W`` W node hosts (``p2pfl node --ids``,
    :func:`p2pfl.host.run_hosts`; ``p2pfl run --workers W``). ``search`` is the data search path, ``plan`` a plan already built from
    ``config`` (else it is built here, before anything is written), ``progress`` gets every
    record as it arrives, and ``hooks`` (:class:`RunHook`) watch the run. ``tensorboard``
    (default: ``config.report.tensorboard``): also write every record as TensorBoard scalars
    there (:class:`p2pfl.metrics.TensorBoardWriter`; ``result.extra["tensorboard"]``).
    ``backend="ray"`` runs the ``hosts`` node hosts as actors of a Ray cluster instead
    (:func:`p2pfl.rayhosts.run_ray`, given ``ray_options``: address, placement, restarts, insecure).
    """
    check_backend(backend, hosts=hosts, processes=processes)
    set_torch_threads(1)
    plan = plan or Plan.build(config, search=search)  # fails fast, before anything is written
    tb_dir = tensorboard if tensorboard is not None else config.report.tensorboard
    if tb_dir:  # False: already wrapped
        from .metrics import TensorBoardWriter

        with TensorBoardWriter(tb_dir) as tb:  # fails (package missing) before the run starts
            result = run(config, out=out, processes=processes, search=search, progress=tb.progress(progress),
                         overwrite=overwrite, plan=plan, workers=workers, hooks=hooks, tensorboard=False,
                         hosts=hosts, backend=backend, ray_options=ray_options)
        result.extra["tensorboard"] = str(tb_dir)
        return result
    out_path = prepare_out(out, overwrite=overwrite)
    if processes and hosts:
        raise ConfigError("workers", hosts, "either node hosts (--workers) or one process per node (--processes)")
    if (processes or hosts) and out_path is None:
        out_path = Path(tempfile.mkdtemp(prefix="p2pfl-run-"))
    if out_path is not None:
        write_plan(out_path, plan)
    for hook in hooks:
        hook.start(plan, out_path)
    result = None
    try:
        if backend == "ray":
            from .rayhosts import run_ray

            result = run_ray(plan, out=out_path, hosts=hosts, progress=progress, search=search,
                             **dict(ray_options or {}))
        elif hosts:
            from .host import run_hosts

            result = run_hosts(plan, out=out_path, hosts=hosts, progress=progress, search=search)
        elif processes:
            result = run_processes(plan, out=out_path, progress=progress, search=search)
        else:
            def configure(node: Node) -> None:
                for hook in hooks:
                    hook.attach(node)

            result = asyncio.run(run_inprocess_async(plan, out=out_path, progress=progress, workers=workers,
                                                     configure=configure if hooks else None))
    finally:
        for hook in hooks:
            hook.finish(result)
    return result


__all__ = ["BACKENDS", "Deployment", "check_backend", "RunHook", "RunResult", "free_tcp_ports", "make_node", "prepare_out", "run",
           "run_inprocess_async", "run_node_async", "run_processes"]
