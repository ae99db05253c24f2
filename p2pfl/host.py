"""Node hosts: one OS process runs a block of nodes of one experiment.

A host imports torch once, loads the data once and builds the :class:`~p2pfl.plan.Plan`
once, then runs every node of its block as a task of one event loop (as
:func:`p2pfl.deployment.run_node_async` does for one node). Each node is still its own ZeroMQ
endpoint, at its deployment address (``ipc://`` within a machine, ``tcp://`` between
machines), with its own metrics file, checkpoints and final model in the run folder, so a
block of nodes behaves on the wire and on disk exactly like the same nodes in separate
``p2pfl node --id`` processes. The nodes of a host share one ZeroMQ context, one training
executor and (through the plan) one torch module per executor thread
(:class:`p2pfl.train.ModelPool`).

* :func:`parse_ids` reads ``--ids 0-49`` (ranges and lists: ``0-9,20,30-39``);
  :func:`block_ids` gives rank r of a job its block (``--ids-from-env SLURM_PROCID --block 50``).
* :func:`run_host_async` runs a block from a :class:`~p2pfl.deployment.Deployment`.
* :func:`run_hosts` is ``p2pfl run --workers W``: W node hosts on this machine.

CurveZMQ keys need one ZAP handler per context, so a host with keys runs one node (use
``p2pfl node --id`` per node there).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import signal
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
from .metrics import MetricsWriter
from .plan import Plan, set_torch_threads
from .runfolder import Progress, RunResult, finish_run
from .validate import integer

log = logging.getLogger(__name__)

#: Descriptors per link of a node: its PUSH socket's mailbox, the monitor's two PAIR sockets, the
#: outgoing connection, and the incoming one from the same neighbour (every socket has an eventfd).
FDS_PER_LINK = 5


def parse_ids(text: str, nodes: int | None = None) -> list[int]:
    """Node ids from ``"0-49"``, ``"3"`` or ``"0-9,20,30-39"`` (sorted, without repeats).

    Raises :class:`ConfigError` (field ``--ids``) for anything else, or for ids outside
    ``0..nodes-1`` when ``nodes`` is given.
    """
    allowed = "node ids and ranges, e.g. 0-49 or 0-9,20,30-39" + (f" within 0..{nodes - 1}" if nodes else "")
    ids: set[int] = set()
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise ConfigError("--ids", text, allowed)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ConfigError("--ids", text, allowed)
        ids.update(range(a, b + 1))
    if nodes is not None and max(ids) >= nodes:
        raise ConfigError("--ids", text, allowed)
    return sorted(ids)


def block_ids(rank: int, block: int, nodes: int) -> list[int]:
    """The ids of rank ``rank``'s block: ``rank*block .. rank*block+block-1`` (cut at ``nodes``)."""
    block = integer("--block", block, lo=1)
    last_rank = (nodes - 1) // block
    rank = integer("rank", rank, lo=0, hi=last_rank,
                   allowed=f"a rank in 0..{last_rank} ({nodes} nodes in blocks of {block})")
    return list(range(rank * block, min(nodes, (rank + 1) * block)))


def split_blocks(nodes: int, hosts: int) -> list[list[int]]:
    """``nodes`` ids in ``hosts`` contiguous blocks whose sizes differ by at most one."""
    hosts = integer("--workers", hosts, lo=1, hi=nodes, allowed=f"an integer in 1..{nodes} (the number of nodes)")
    size, extra = divmod(nodes, hosts)
    blocks, start = [], 0
    for k in range(hosts):
        n = size + (k < extra)
        blocks.append(list(range(start, start + n)))
        start += n
    return blocks


def block_addresses(nodes: int, machines: Sequence[str], block: int, *, port: int = 7000,
                    tasks_per_machine: int = 1) -> dict[int, str]:
    """Every node's address when rank r runs the block ``r*block ..`` (:func:`block_ids`) and
    ranks are laid out on ``machines`` ``tasks_per_machine`` at a time (rank r on machine
    ``r // tasks_per_machine``, Slurm's default "block" distribution): node i listens on
    ``tcp://MACHINE:port+i``, a port of its own on any machine."""
    block = integer("--block", block, lo=1)
    tasks_per_machine = integer("--tasks-per-machine", tasks_per_machine, lo=1)
    port = integer("--port", port, lo=1, hi=65535 - nodes + 1,
                   allowed=f"a port in 1..{65535 - nodes + 1} (node i listens on port + i, {nodes} nodes)")
    machines = [m.strip() for m in machines if m.strip()]
    ranks = -(-nodes // block)
    needed = -(-ranks // tasks_per_machine)
    if len(machines) < needed:
        raise ConfigError("--machines", ",".join(machines) or None,
                          f"at least {needed} machine(s): {nodes} nodes in blocks of {block} are {ranks} rank(s), "
                          f"{tasks_per_machine} per machine")
    return {i: f"tcp://{machines[(i // block) // tasks_per_machine]}:{port + i}" for i in range(nodes)}


def ids_text(ids: Sequence[int]) -> str:
    """The shortest ``--ids`` text for ``ids`` (contiguous runs as ``a-b``)."""
    parts: list[str] = []
    ids = sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (up to the hard limit, or beyond it
    where the process may); returns the (soft, hard) limits in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:  # privileged (CAP_SYS_RESOURCE): the hard limit can go up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted, wanted
        except (ValueError, OSError):
            pass
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new, hard


def fds_needed(plan: Plan, ids: Sequence[int]) -> int:
    """Descriptors a host of ``ids`` needs: per node its PULL socket and metrics file, per link
    :data:`FDS_PER_LINK`, plus room for the interpreter, torch and checkpoint writes. Under a
    20,000 limit that is about 1,600 ring nodes or 900 nodes of a 4-regular graph per host."""
    links = sum(len(plan.topology.neighbours(i)) for i in ids)
    return 256 + 3 * len(ids) + FDS_PER_LINK * links


async def run_host_async(
    deployment: Deployment,
    ids: Sequence[int],
    *,
    out: Path | None,
    search: Sequence[str | os.PathLike] = (),
    on_record: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: bool = True,
    insecure: bool = False,
    threads: int | None = None,
    plan: Plan | None = None,
) -> dict[int, np.ndarray]:
    """Run the nodes ``ids`` of ``deployment`` in this event loop; returns their final models.

    Every node runs as :func:`~p2pfl.deployment.run_node_async` would run it alone (same
    addresses, metrics, checkpoints, resume), sharing one plan, one ZeroMQ context and one
    executor of ``threads`` training threads (default: the CPU count, at most 4). SIGINT and
    SIGTERM stop every node (their last checkpoints stay) and raise KeyboardInterrupt; if one
    node fails, the others are cancelled and the error is raised.
    """
    cfg = deployment.config
    ids = sorted(set(ids))
    if not ids:
        raise ConfigError("--ids", "", "at least one node id")
    bad = [i for i in ids if not 0 <= i < cfg.nodes]
    if bad:
        raise ConfigError("--ids", bad, f"node ids in 0..{cfg.nodes - 1}")
    if deployment.keys_dir is not None and len(ids) > 1:
        raise ConfigError("--ids", ids_text(ids), "one node per host with CurveZMQ keys (one ZAP handler per "
                          "process); run `p2pfl node --id I` per node")
    plan = plan or Plan.build(cfg, search=search)
    needed = fds_needed(plan, ids)
    soft, hard = raise_fd_limit(needed)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise ConfigError("--ids", ids_text(ids), f"fewer nodes per host: {len(ids)} nodes need about {needed} file "
                          f"descriptors, RLIMIT_NOFILE allows {soft} (hard {hard}); use more hosts (--workers, "
                          "smaller --block) or raise the hard limit (ulimit -Hn)")
    ctx = zmq.asyncio.Context()
    ctx.set(zmq.MAX_SOCKETS, max(1024, 4 * len(ids) + 3 * sum(len(plan.topology.neighbours(i)) for i in ids)))
    executor = ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 2),
                                  thread_name_prefix="p2pfl-host")
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopped: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped and main is not None:
            log.warning("host %s: %s received; stopping every node (the last checkpoints stay)",
                        ids_text(ids), signal.Signals(signum).name)
            main.cancel()
        stopped.append(signum)

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    models: dict[int, np.ndarray] = {}

    async def one(i: int) -> None:
        models[i] = await run_node_async(deployment, i, out=out, search=search, on_record=on_record,
                                         checkpoints=checkpoints, insecure=insecure, plan=plan,
                                         context=ctx, executor=executor, handle_signals=False)

    try:
        async with asyncio.TaskGroup() as tg:
            for i in ids:
                tg.create_task(one(i), name=f"node{i}")
    except asyncio.CancelledError:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(ctx.term)
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
    return models


# ---- p2pfl run --workers W: W node hosts on this machine ---------------------------------------------
def run_hosts(
    plan: Plan,
    *,
    out: Path,
    hosts: int,
    progress: Progress | None = None,
    search: Sequence[str | os.PathLike] = (),
    python: str | None = None,
    checkpoints: bool = True,
    threads: int | None = None,
) -> RunResult:
    """Start ``hosts`` node hosts (``p2pfl node --ids``) on this machine and wait for all.

    Nodes are split into contiguous blocks; each node gets an ``ipc://`` address (``net.transport
    = "ipc"``) or a free loopback tcp port. Hosts look for data in exactly the folders this
    plan used (``--only-data-dirs``). A host that fails stops the run with its log's name.
    ``threads`` is each host's training threads (default: CPU count / hosts, at least 1).
    """
    cfg = plan.config
    blocks = split_blocks(cfg.nodes, hosts)
    data_dirs = [Path(d).expanduser().absolute() for d in (plan.search or search)]
    threads = threads or max(1, (os.cpu_count() or 2) // len(blocks))
    started = time.perf_counter()
    sockdir, addresses = loopback_addresses(cfg)
    dep_path = out / "deployment.toml"
    dep_path.write_text(Deployment(config=cfg, addresses=addresses).to_toml(), encoding="utf-8")
    (out / "hosts").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    procs: dict[int, subprocess.Popen[bytes]] = {}
    logs = {}
    tail = _Tail(out, cfg.nodes)
    try:
        for k, block in enumerate(blocks):
            cmd = [python or sys.executable, "-m", "p2pfl", "node", "--deployment", str(dep_path),
                   "--ids", ids_text(block), "--out", str(out), "--threads", str(threads), "-q",
                   "--only-data-dirs"]
            if not checkpoints:
                cmd.append("--no-checkpoints")
            for d in data_dirs:
                cmd += ["--data-dir", str(d)]
            logs[k] = (out / "hosts" / f"host-{k}.log").open("wb")
            procs[k] = subprocess.Popen(cmd, stdout=logs[k], stderr=subprocess.STDOUT, env=env)
        while any(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
            tail.poll(progress)
            _raise_failed(procs, out, running_ok=True)
        tail.poll(progress)
        _raise_failed(procs, out, running_ok=False)
    finally:
        stop_processes(procs, logs, sockdir)
    return collect_run(plan, out, tail.records, started, extra={"hosts": [ids_text(b) for b in blocks]})


def loopback_addresses(cfg: RunConfig) -> tuple[Path | None, dict[int, str]]:
    """Every node's address for a run of OS processes on this machine: ``ipc://`` sockets in
    a fresh folder (returned, to be removed by :func:`stop_processes`), or free tcp ports."""
    if cfg.net.transport == "ipc":
        sockdir = Path(tempfile.mkdtemp(prefix="p2pfl-"))
        return sockdir, {i: f"ipc://{sockdir}/n{i}" for i in range(cfg.nodes)}  # short: sun_path is 108 bytes
    ports = free_tcp_ports(cfg.nodes, cfg.net.host)
    return None, {i: f"tcp://{cfg.net.host}:{p}" for i, p in enumerate(ports)}


def stop_processes(procs: Mapping[int, subprocess.Popen[bytes]], logs: Mapping[int, Any],
                   sockdir: str | Path | None) -> None:
    """End what is still running (terminate, then kill after 10 s), close the log files and
    remove the ipc socket folder: the ``finally`` of every launcher of OS processes."""
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    for fh in logs.values():
        fh.close()
    if sockdir is not None:
        shutil.rmtree(sockdir, ignore_errors=True)


def collect_run(plan: Plan, out: Path, records: list[dict[str, Any]], started: float, *,
                extra: dict[str, Any] | None = None) -> RunResult:
    """The result of a run whose nodes ran in other processes: their records in round order
    in ``metrics.jsonl``, their final models from ``out/final``, the summary."""
    cfg = plan.config
    records.sort(key=lambda r: (int(r["round"]), int(r["node"])))
    with MetricsWriter(out / "metrics.jsonl") as writer:
        for rec in records:
            writer.write(rec)
    models = {i: np.load(out / "final" / f"node-{i}.npy") for i in range(cfg.nodes)}
    wall = time.perf_counter() - started
    summary = finish_run(out, plan, records, models, wall)
    return RunResult(config=cfg, summary=summary, records=records, final_models=models,
                     adversaries=plan.adversaries, out=out, wall_time=wall, data_source=plan.bundle.source,
                     extra=extra or {})


def _raise_failed(procs: dict[int, subprocess.Popen[bytes]], out: Path, *, running_ok: bool) -> None:
    failed = [k for k, p in procs.items() if p.returncode not in ((None, 0) if running_ok else (0,))]
    if failed:
        raise RuntimeError(f"node host(s) {failed} exited with an error; see {out}/hosts/host-*.log")


class _Tail:
    """Reads the nodes' metrics files incrementally (new complete lines only)."""

    def __init__(self, out: Path, nodes: int) -> None:
        self.paths = {i: out / "nodes" / f"node-{i}.jsonl" for i in range(nodes)}
        self.offsets = dict.fromkeys(self.paths, 0)
        self.records: list[dict[str, Any]] = []

    def poll(self, progress: Progress | None) -> None:
        import json

        for i, path in self.paths.items():
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets[i])
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1
            if not end:
                continue
            self.offsets[i] += end
            for line in chunk[:end].splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.records.append(rec)
                    if progress is not None:
                        progress(rec)


def host_main(deployment: Deployment, ids: Sequence[int], **kwargs: Any) -> dict[int, np.ndarray]:
    """``p2pfl node --ids``: one torch thread per training thread, then :func:`run_host_async`."""
    set_torch_threads(1)
    return asyncio.run(run_host_async(deployment, ids, **kwargs))


__all__ = ["block_addresses", "block_ids", "fds_needed", "host_main", "ids_text", "parse_ids", "raise_fd_limit", "run_host_async",
           "run_hosts", "split_blocks"]
