"""Node hosts as actors of a Ray cluster: ``p2pfl run --backend ray --address auto --workers W``.

Each of the W node hosts (:func:`p2pfl.host.run_host_async`) runs in a Ray actor, placed by a
placement group (one bundle per host: ``spread`` over the cluster's machines, ``strict-spread``
one per raylet, ``pack``). The driver asks every actor where it runs, gives every node an
address (loopback when all hosts share one machine: ``ipc://`` with ``net.transport = "ipc"``,
else a free tcp port on 127.0.0.1; across machines a free tcp port each host reserved on its
raylet's IP), writes
the :class:`~p2pfl.deployment.Deployment`, and starts the hosts. The nodes then talk ZeroMQ to
each other exactly as ``p2pfl node --ids`` hosts do; Ray carries only the start, the progress
and the results (records and final models travel back through the object store, so the
driver's run folder is complete even when the workers' file systems are not shared).

Failures: an actor whose process dies is restarted by Ray (``restarts`` times) and its run is
retried; its nodes resume from their checkpoints in the run folder, as a ``p2pfl node``
started again after ``kill -9`` does, while their neighbours skip them. Checkpoints live in
the run folder *on the machine the host runs on*: a host restarted on another machine
resumes only if that folder is shared (NFS), else its nodes start over.

Ray is an optional extra: ``pip install 'p2pfl[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .deployment import Deployment, free_tcp_ports, is_loopback
from .errors import ConfigError
from .host import collect_run, ids_text, split_blocks
from .metrics import read_records
from .plan import Plan
from .runfolder import Progress, RunResult

log = logging.getLogger(__name__)

RAY_HELP = "pip install 'p2pfl[ray]'"
PLACEMENTS = {"spread": "SPREAD", "strict-spread": "STRICT_SPREAD", "pack": "PACK"}
#: Seconds to wait for the cluster to place every host before giving up with an error.
PLACEMENT_TIMEOUT = 120.0


def import_ray() -> Any:
    """``ray``, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend", "ray", f"Ray installed ({RAY_HELP})") from None
    return ray


class HostActor:
    """One node host inside a Ray worker process (made an actor by :func:`run_ray`).

    Threaded (two calls at once): :meth:`run` blocks for the whole experiment while the
    driver polls :meth:`records_since` for progress.
    """

    def __init__(self, index: int, out: str) -> None:
        self.index = index
        self.out = Path(out)
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def where(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {"host": self.index, "ip": ray.util.get_node_ip_address(), "raylet": ctx.get_node_id(),
                "pid": os.getpid(), "machine": os.uname().nodename}

    def reserve_ports(self, count: int, ip: str) -> list[int]:
        return free_tcp_ports(count, ip)

    def records_since(self, n: int) -> tuple[int, list[dict[str, Any]]]:
        """(how many records this incarnation has, the ones after the first ``n``)."""
        with self._lock:
            return len(self._records), self._records[n:]

    def _record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(rec)

    def run(self, deployment: Deployment, ids: list[int], search: list[str], checkpoints: bool,
            threads: int, insecure: bool) -> dict[str, Any]:
        """Run the block ``ids``; returns its records (the nodes' whole metrics files, so a
        restarted host's earlier rounds are included), final models and where it ran."""
        from .host import host_main

        hosts_dir = self.out / "hosts"
        hosts_dir.mkdir(parents=True, exist_ok=True)
        where = self.where()
        (hosts_dir / f"host-{self.index}.json").write_text(json.dumps(where), encoding="utf-8")
        handler = logging.FileHandler(hosts_dir / f"host-{self.index}.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        try:
            models = host_main(deployment, ids, out=self.out, search=search, on_record=self._record,
                               checkpoints=checkpoints, threads=threads, insecure=insecure)
        finally:
            root.removeHandler(handler)
            handler.close()
        records = [rec for i in ids for rec in read_records(self.out / "nodes" / f"node-{i}.jsonl")]
        return {"models": {i: np.asarray(x) for i, x in models.items()}, "records": records, "where": where}


def _addresses(plan: Plan, blocks: list[list[int]], where: list[dict[str, Any]], actors: list[Any],
               ray: Any) -> tuple[Path | None, dict[int, str]]:
    """Loopback when every host is on one machine (``ipc://`` sockets if the config asks for
    ipc, else tcp ports on 127.0.0.1), else tcp ports each host reserved on its raylet's IP."""
    cfg = plan.config
    one_machine = len({w["machine"] for w in where}) == 1
    if one_machine and cfg.net.transport == "ipc":
        sockdir = Path(tempfile.mkdtemp(prefix="p2pfl-"))
        return sockdir, {i: f"ipc://{sockdir}/n{i}" for i in range(cfg.nodes)}
    ips = ["127.0.0.1" if one_machine else w["ip"] for w in where]
    ports = ray.get([a.reserve_ports.remote(len(b), ip) for a, b, ip in zip(actors, blocks, ips, strict=True)])
    addresses: dict[int, str] = {}
    for block, ip, block_ports in zip(blocks, ips, ports, strict=True):
        for i, port in zip(block, block_ports, strict=True):
            addresses[i] = f"tcp://{ip}:{port}"
    return None, addresses


def run_ray(
    plan: Plan,
    *,
    out: Path,
    hosts: int,
    address: str | None = None,
    progress: Progress | None = None,
    search: Sequence[str | os.PathLike] = (),
    checkpoints: bool = True,
    threads: int | None = None,
    placement: str = "spread",
    restarts: int = 1,
    insecure: bool = False,
) -> RunResult:
    """Run the experiment of ``plan`` as ``hosts`` node hosts on a Ray cluster.

    ``address``: the cluster (``"auto"``: the one ``ray start`` made on this machine, or
    ``host:port``, or ``ray://host:10001``); ``"local"``: a private one-machine cluster for
    this run (a logical CPU per host); ``None``: Ray's default (``$RAY_ADDRESS``, a cluster
    running on this machine, else a private one). ``placement``: ``spread``, ``strict-spread`` (one host per raylet)
    or ``pack``. ``restarts``: how often a host whose process dies is restarted (its nodes
    resume from their checkpoints). ``insecure``: allow plain-text sockets on non-loopback
    addresses (nodes with CurveZMQ keys cannot share a host).
    """
    ray = import_ray()
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if placement not in PLACEMENTS:
        raise ConfigError("--ray-placement", placement, ", ".join(PLACEMENTS))
    if restarts < 0:
        raise ConfigError("--ray-restarts", restarts, "an integer >= 0")
    cfg = plan.config
    blocks = split_blocks(cfg.nodes, hosts)
    data_dirs = [str(Path(d).expanduser().absolute()) for d in (plan.search or search)]
    threads = threads or 1
    started = time.perf_counter()
    root = str(Path(__file__).resolve().parent.parent)  # so workers import this p2pfl, installed or not
    pythonpath = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    init: dict[str, Any] = dict(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, log_to_driver=False,
                                configure_logging=False)
    if address == "local":  # a private cluster for this run, with a logical CPU per host
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        init.update(address="local", num_cpus=max(len(blocks), os.cpu_count() or 1), include_dashboard=False)
    elif address is not None:
        init["address"] = address
    try:
        ray.init(**init)
    except ConnectionError as exc:
        raise ConfigError("--address", address, f"a running Ray cluster ({exc}); start one with `ray start --head`, "
                                                "or use --address local (a cluster with token authentication also "
                                                "needs RAY_AUTH_MODE=token here)") from None
    pg = None
    actors: list[Any] = []
    sockdir: Path | None = None
    try:
        pg = placement_group([{"CPU": 1}] * len(blocks), strategy=PLACEMENTS[placement])
        ready, _ = ray.wait([pg.ready()], timeout=PLACEMENT_TIMEOUT)
        if not ready:
            raise ConfigError("--workers", hosts, f"hosts the Ray cluster can place with --ray-placement {placement} "
                                                  f"(one CPU each; waited {PLACEMENT_TIMEOUT:.0f} s; the cluster has "
                                                  f"{ray.cluster_resources()})")
        remote = ray.remote(HostActor)
        for k in range(len(blocks)):
            actors.append(remote.options(
                num_cpus=1, max_restarts=restarts, max_task_retries=restarts, max_concurrency=2,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=k),
            ).remote(k, str(out)))
        where = ray.get([a.where.remote() for a in actors])
        sockdir, addresses = _addresses(plan, blocks, where, actors, ray)
        if not insecure and not all(is_loopback(a) for a in addresses.values()):
            raise ConfigError("--insecure", sorted({w["ip"] for w in where}),
                              "loopback addresses, or --insecure: hosts on several machines talk plain ZeroMQ "
                              "(CurveZMQ needs one node per process: use `p2pfl node --id` per node there)")
        deployment = Deployment(config=cfg, addresses=addresses)
        (out / "deployment.toml").write_text(deployment.to_toml(), encoding="utf-8")
        runs = [a.run.remote(deployment, block, data_dirs, checkpoints, threads, insecure)
                for a, block in zip(actors, blocks, strict=True)]
        seen: set[tuple[int, int]] = set()
        counts = [0] * len(actors)
        pending = list(runs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            if progress is not None:
                _poll(ray, actors, counts, seen, progress)
        results = []
        for k, ref in enumerate(runs):
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                raise RuntimeError(f"node host {k} (nodes {ids_text(blocks[k])}) failed on the Ray cluster: "
                                   f"{exc}; see {out}/hosts/host-{k}.log") from None
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
        if pg is not None:
            remove_placement_group(pg)
        if sockdir is not None:
            shutil.rmtree(sockdir, ignore_errors=True)
        ray.shutdown()
    records: list[dict[str, Any]] = []
    (out / "final").mkdir(parents=True, exist_ok=True)
    for res in results:
        records += res["records"]
        for i, x in res["models"].items():
            np.save(out / "final" / f"node-{i}.npy", x)
    _write_missing_node_files(out, records)
    extra = {"hosts": [ids_text(b) for b in blocks], "backend": "ray",
             "ray": [res["where"] for res in results]}
    return collect_run(plan, out, records, started, extra=extra)


def _poll(ray: Any, actors: list[Any], counts: list[int], seen: set[tuple[int, int]], progress: Progress) -> None:
    """New records of every host, each (node, round) shown once (a restarted host counts anew)."""
    for k, actor in enumerate(actors):
        try:
            total, new = ray.get(actor.records_since.remote(counts[k]), timeout=5)
        except ray.exceptions.RayError:
            continue  # restarting or busy: next time
        if total < counts[k]:  # a new incarnation: it starts from its checkpoints
            counts[k] = 0
            total, new = ray.get(actor.records_since.remote(0), timeout=5)
        counts[k] = total
        for rec in new:
            key = (int(rec["node"]), int(rec["round"]))
            if key not in seen:
                seen.add(key)
                progress(rec)


def _write_missing_node_files(out: Path, records: list[dict[str, Any]]) -> None:
    """The nodes' metrics files in the driver's run folder (already there when it is shared)."""
    by_node: dict[int, list[dict[str, Any]]] = {}
    for rec in records:
        by_node.setdefault(int(rec["node"]), []).append(rec)
    folder = out / "nodes"
    folder.mkdir(parents=True, exist_ok=True)
    for i, recs in by_node.items():
        path = folder / f"node-{i}.jsonl"
        if not path.exists():
            path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")


__all__ = ["HostActor", "PLACEMENTS", "RAY_HELP", "import_ray", "run_ray"]
