"""Starting nodes: all in one process, one OS process per node, or one node from a deployment.

* :func:`run_inprocess` runs every node as an asyncio task in one event loop; each node is
  still a real ZeroMQ endpoint (tcp on loopback or ipc) and talks only over sockets.
* :func:`run_processes` writes a deployment file and starts ``p2pfl node`` once per node.
* :func:`run_node` is what ``p2pfl node`` runs: one node from a :class:`Deployment`.

All three produce the same run folder::

    config.toml      the resolved settings
    plan.json        graph, adversaries, data source, parameter count
    metrics.jsonl    one line per node per round
    summary.json     per-round aggregates over benign nodes and a ``final`` object
    final/node-I.npy the final model of every node
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from .behaviour import Honest
from .config import RunConfig, read_toml
from .errors import ConfigError
from .metrics import MetricsWriter, read_records, summarize, write_summary
from .node import Node
from .plan import Plan, set_torch_threads
from .transport import CurveKeys, Transport

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]


@dataclass
class RunResult:
    """What a finished run leaves behind (also on disk in ``out``)."""

    config: RunConfig
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    final_models: dict[int, np.ndarray]
    adversaries: tuple[int, ...]
    out: Path | None
    wall_time: float
    data_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.summary.get("final", {})


# ---- run folders ---------------------------------------------------------------------------------
def prepare_out(out: str | Path | None, *, overwrite: bool = False) -> Path | None:
    """Create the run folder; refuse to mix a new run into an existing one."""
    if out is None:
        return None
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError("out", str(path), "a new or empty folder (pass --overwrite to replace it)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_plan(out: Path, plan: Plan) -> None:
    (out / "config.toml").write_text(plan.config.to_toml(), encoding="utf-8")
    (out / "plan.json").write_text(json.dumps(plan.describe(), indent=2) + "\n", encoding="utf-8")


def _finish(out: Path | None, plan: Plan, records: list[dict[str, Any]],
            models: dict[int, np.ndarray], wall: float) -> dict[str, Any]:
    records.sort(key=lambda r: (int(r["round"]), int(r["node"])))
    hops = plan.topology.hops(plan.adversaries) if plan.adversaries else None
    advs = set(plan.adversaries)
    n_mal = {i: sum(j in advs for j in plan.topology.neighbours(i)) for i in range(plan.config.nodes)}
    summary = summarize(
        records,
        hops={i: int(h) for i, h in enumerate(hops)} if hops is not None else None,
        malicious_neighbours=n_mal if advs else None,
        extra={"wall_time": round(wall, 3), "data": plan.bundle.source, "adversaries": list(plan.adversaries),
               "params": plan.dim},
        last_per_node=plan.config.mode == "async",
    )
    if out is not None:
        write_summary(out / "summary.json", summary)
        final_dir = out / "final"
        final_dir.mkdir(exist_ok=True)
        for i, x in models.items():
            np.save(final_dir / f"node-{i}.npy", x)
    return summary


# ---- one node ------------------------------------------------------------------------------------
def make_node(
    plan: Plan,
    node_id: int,
    transport: Transport,
    *,
    executor: ThreadPoolExecutor | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    x_init: np.ndarray | None = None,
) -> Node:
    """Build node ``node_id`` of ``plan`` on a bound and connected transport."""
    from .data import identity_difference
    from .filters import build_filter

    cfg = plan.config
    data, validation = plan.node_data(node_id)
    trainer = plan.trainer(node_id)
    test = plan.test  # clean: never stamped or relabelled
    backdoor = getattr(plan, "backdoor", None)
    success = backdoor.success_set if backdoor is not None else plan.aux  # single: the aux set
    behaviour = Honest()
    attack = plan.attack_for(node_id)
    if attack.name != "none":
        from .attacks import build_attack

        behaviour = build_attack(attack.name, dict(attack.params), plan=plan, node=node_id)
    filt = None
    defence = plan.defence_for(node_id)
    if defence.name != "none":
        filt = build_filter(defence.name, dict(defence.params))
        filt.check(len(plan.topology.neighbours(node_id)))

    def evaluate(x: np.ndarray) -> dict[str, float]:
        ev = trainer.evaluate(x, test)
        out = {"accuracy": round(ev.accuracy, 6), "loss": round(ev.loss, 6)}
        if success is not None:
            out.update(attack_metrics(trainer, x, success))
        return out

    validate = None
    if validation is not None:
        def validate(x: np.ndarray) -> float:
            return trainer.evaluate(x, validation).accuracy

    return Node(
        node_id=node_id,
        exp_id=plan.exp_id,
        x0=plan.x0,
        neighbours=plan.topology.neighbours(node_id),
        weights=plan.neighbour_weights(node_id),
        rounds=cfg.rounds,
        transport=transport,
        trainer=trainer,
        data=data,
        behaviour=behaviour,
        filter=filt,
        evaluate=evaluate,
        validate=validate,
        executor=executor,
        on_record=on_record,
        net=cfg.net,
        epochs=cfg.train.epochs,
        seed=cfg.seed,
        role=plan.role(node_id),
        eval_every=cfg.eval_every,
        config_digest=plan.exp_id,
        x_init=x_init,
        max_message_bytes=plan.max_message_bytes(),
        data_identity=plan.data_identity,
        data_difference=identity_difference,
        mode=cfg.mode,
        speed=cfg.speed_of(node_id),
        churn=_churn_ticks(cfg, node_id),
        time_budget=cfg.time_budget,
        keep_deltas=attack.name != "none",  # only attacks read their neighbours' last deltas
    )


def _reopener(plan: Plan, node_id: int, addresses: Mapping[int, str], context: zmq.asyncio.Context | None,
              curve: CurveKeys | None = None, factory: Callable[..., Transport] = Transport
              ) -> Callable[[], Transport]:
    """A function that builds node ``node_id``'s transport again, bound at the same address and
    connected to its neighbours (a node rejoining after churn)."""
    def reopen() -> Transport:
        tr = _transport(plan, node_id, addresses[node_id], context, curve, factory=factory)
        try:
            tr.bind()
            tr.connect({j: addresses[j] for j in plan.topology.neighbours(node_id)})
        except Exception:
            tr.close(linger_ms=0)
            raise
        return tr

    return reopen


def _churn_ticks(cfg: RunConfig, node_id: int) -> tuple[int, int] | None:
    entry = cfg.churn_of(node_id)
    return (entry.leave, entry.rejoin) if entry is not None else None


def attack_metrics(trainer: Any, x: np.ndarray, success: Any) -> dict[str, float]:
    """Share of the backdoor's success set classified as its target, and the mean target confidence.

    ``success`` is :attr:`p2pfl.backdoor.Backdoor.success_set`: the auxiliary examples
    (single), held-out class-S test examples labelled T (class), or held-out stamped test
    images of the other classes labelled T (trigger).
    """
    probs = trainer.predict_proba(x, success.x)
    target = success.y.numpy()
    hit = probs.argmax(axis=1) == target
    conf = probs[np.arange(len(target)), target]
    return {"attack_success": round(float(hit.mean()), 6), "target_confidence": round(float(conf.mean()), 6)}


def _transport(plan: Plan, node_id: int, listen: str, context: zmq.asyncio.Context | None,
               curve: CurveKeys | None = None, factory: Callable[..., Transport] = Transport) -> Transport:
    """Build node ``node_id``'s transport with ``factory`` (a Transport class or callable).

    When the run injects network faults (``net.loss``, ``net.delay_ms``, ...) the transport is a
    :class:`~p2pfl.faults.FaultyTransport`: a Transport ``factory`` is combined with it (its
    ``send`` runs underneath the faults), a FaultyTransport ``factory`` receives ``faults=``.
    """
    net = plan.config.net
    kwargs: dict[str, Any] = dict(context=context, hwm=net.hwm, linger_ms=net.linger_ms,
                                  max_message_bytes=plan.max_message_bytes(), send_timeout=net.send_timeout,
                                  curve=curve)
    faults = net.faults(plan.config.seed)
    if faults is None:
        return factory(node_id, listen, **kwargs)
    from .faults import FaultyTransport

    if not (isinstance(factory, type) and issubclass(factory, Transport)):
        raise TypeError(f"network faults ({faults}) need a Transport subclass as transport factory, "
                        f"not {factory!r}")
    if factory is Transport:
        factory = FaultyTransport
    elif not issubclass(factory, FaultyTransport):
        factory = type(f"Faulty{factory.__name__}", (FaultyTransport, factory), {})
    return factory(node_id, listen, faults=faults, **kwargs)


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
            transports[i] = _transport(plan, i, listen, ctx, factory=transport_factory)
            transports[i].bind()
        for i, tr in transports.items():
            tr.connect({j: transports[j].address or "" for j in plan.topology.neighbours(i)})
        nodes = [make_node(plan, i, transports[i], executor=executor, on_record=on_record,
                           x_init=(x_init or {}).get(i)) for i in range(cfg.nodes)]
        addresses = {i: tr.address or "" for i, tr in transports.items()}
        for node in nodes:
            if cfg.churn_of(node.id) is not None:  # a departing node closes its sockets and rebinds
                node.reopen = _reopener(plan, node.id, addresses, ctx, factory=transport_factory)
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
    summary = _finish(out, plan, records, models, wall)
    return RunResult(config=cfg, summary=summary, records=records, final_models=models,
                     adversaries=plan.adversaries, out=out, wall_time=wall, data_source=plan.bundle.source)


def run_inprocess(plan: Plan, **kwargs: Any) -> RunResult:
    return asyncio.run(run_inprocess_async(plan, **kwargs))


# ---- deployments: one node per process -------------------------------------------------------------
@dataclass(frozen=True)
class Deployment:
    """A run config plus where every node listens (and, optionally, its CurveZMQ keys)."""

    config: RunConfig
    addresses: Mapping[int, str]
    keys_dir: Path | None = None
    public_keys: Mapping[int, str] = field(default_factory=dict)  # [deployment.keys] id = "z85 key"

    @classmethod
    def from_toml(cls, path: str | Path) -> Deployment:
        path = Path(path)
        raw = read_toml(path, "deployment")
        dep = raw.pop("deployment", None)
        if not isinstance(dep, dict) or not isinstance(dep.get("nodes"), dict):
            raise ConfigError("deployment.nodes", None, "a [deployment.nodes] table mapping node ids to host:port")
        config = RunConfig.from_mapping(raw)
        addresses: dict[int, str] = {}
        for key, addr in dep["nodes"].items():
            try:
                nid = int(key)
            except ValueError:
                raise ConfigError("deployment.nodes", key, "node ids 0..nodes-1") from None
            if not 0 <= nid < config.nodes:
                raise ConfigError("deployment.nodes", key, f"node ids 0..{config.nodes - 1}")
            if not isinstance(addr, str) or not addr:
                raise ConfigError(f"deployment.nodes.{key}", addr, "an address such as 10.0.0.3:7000")
            addresses[nid] = addr if "://" in addr else f"tcp://{addr}"
        missing = sorted(set(range(config.nodes)) - set(addresses))
        if missing:
            raise ConfigError("deployment.nodes", missing, f"an address for every node 0..{config.nodes - 1}")
        unknown = set(dep) - {"nodes", "keys_dir", "keys"}
        if unknown:
            raise ConfigError("deployment", sorted(unknown), "only the keys nodes, keys_dir and keys")
        keys_dir = dep.get("keys_dir")
        if keys_dir is not None:
            if not isinstance(keys_dir, str) or not keys_dir:
                raise ConfigError("deployment.keys_dir", keys_dir, "a directory made by `p2pfl keygen`")
            keys_dir = (path.parent / keys_dir).resolve()
        public_keys: dict[int, str] = {}
        raw_keys = dep.get("keys", {})
        if not isinstance(raw_keys, dict):
            raise ConfigError("deployment.keys", raw_keys, "a table mapping node ids to public keys (z85)")
        for key, value in raw_keys.items():
            if not key.isdigit() or int(key) not in addresses:
                raise ConfigError("deployment.keys", key, f"node ids 0..{config.nodes - 1}")
            if not isinstance(value, str) or len(value) != 40:
                raise ConfigError(f"deployment.keys.{key}", value, "a 40-character z85 public key (node-I.key)")
            public_keys[int(key)] = value
        if public_keys and keys_dir is None:
            raise ConfigError("deployment.keys_dir", None, "a directory with this node's secret key (keys are listed)")
        return cls(config=config, addresses=addresses, keys_dir=keys_dir, public_keys=public_keys)

    def to_toml(self) -> str:
        import tomli_w

        text = self.config.to_toml()
        dep: dict[str, Any] = {"nodes": {str(i): a for i, a in sorted(self.addresses.items())}}
        if self.keys_dir is not None:
            dep["keys_dir"] = str(self.keys_dir)
        if self.public_keys:
            dep["keys"] = {str(i): k for i, k in sorted(self.public_keys.items())}
        return text + "\n" + tomli_w.dumps({"deployment": dep})


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS reports free right now (bound together, then released)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


INSECURE_HELP = (
    "keys (--keys-dir or keys_dir) to listen on a non-loopback address; or --insecure to run "
    "without them, which gives up: encryption, the neighbours-only allow-list, and identity "
    "(any host that reaches the port can claim to be a neighbour, send forged messages and "
    "make ZeroMQ buffer up to hwm x frames x max_message_mb of it before p2pfl sees a byte)"
)


def is_loopback(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// addresses on the loopback interface."""
    import ipaddress

    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_node_async(
    deployment: Deployment,
    node_id: int,
    *,
    out: Path | None,
    listen: str | None = None,
    search: Sequence[str | os.PathLike] = (),
    on_record: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: bool = True,
    insecure: bool = False,
    plan: Plan | None = None,
    context: zmq.asyncio.Context | None = None,
    executor: ThreadPoolExecutor | None = None,
    handle_signals: bool = True,
) -> np.ndarray:
    """Run one node of a deployment until the experiment ends; returns its final model.

    A node host (:mod:`p2pfl.host`) runs many of these in one event loop and passes what they
    share: the ``plan``, the ZeroMQ ``context`` and the training ``executor`` (each left to
    the caller to close), with ``handle_signals=False`` (the host handles SIGINT/SIGTERM).

    With ``out``, the node checkpoints every round to ``out/checkpoints`` and, started again
    with the same arguments, resumes from there (see :mod:`p2pfl.checkpoint`). SIGINT and
    SIGTERM stop it cleanly (the last round's checkpoint stays) and raise KeyboardInterrupt.
    With keys, keys are loaded and the ZAP handler started before any socket exists; any
    missing piece raises instead of running unauthenticated.
    """
    from .checkpoint import Checkpointer, capture, restore
    from .config import flat_settings

    cfg = deployment.config
    if not 0 <= node_id < cfg.nodes:
        raise ConfigError("id", node_id, f"a node id in 0..{cfg.nodes - 1}")
    plan = plan or Plan.build(cfg, search=search)
    neighbours = plan.topology.neighbours(node_id)
    listen = listen or deployment.addresses.get(node_id)
    if listen is None:
        raise ConfigError("--listen", None, f"an address for node {node_id} (in the deployment or --listen)")
    unknown = [j for j in neighbours if j not in deployment.addresses]
    if unknown:
        raise ConfigError("--peer", unknown, f"an address for every neighbour of node {node_id}: {list(neighbours)}")
    if deployment.keys_dir is None and not insecure and not is_loopback(listen):
        raise ConfigError("--insecure", listen, INSECURE_HELP)
    curve = None
    if deployment.keys_dir is not None:
        from .security import load_curve_keys

        curve = load_curve_keys(deployment.keys_dir, node_id, neighbours, public_keys=deployment.public_keys)
    ckpt = Checkpointer(out / "checkpoints", node_id) if out is not None and checkpoints else None
    state = ckpt.load() if ckpt is not None else None
    if state is not None and state.exp_id != plan.exp_id:
        raise ConfigError("checkpoint", str(ckpt.json_path if ckpt else ""),
                          "a checkpoint of these settings (it belongs to another experiment; use another --out)")
    if state is not None and state.finished:
        log.info("node %d: the checkpoint in %s says this node already finished", node_id, out)
        if out is not None:
            (out / "final").mkdir(parents=True, exist_ok=True)
            np.save(out / "final" / f"node-{node_id}.npy", state.x)
        return state.x
    writer = MetricsWriter(out / "nodes" / f"node-{node_id}.jsonl") if out is not None else None

    auth = None

    def record(rec: dict[str, Any]) -> None:
        if auth is not None and auth.policy.denied:  # connections refused by CurveZMQ/ZAP
            rec["denied"] = dict(auth.policy.denied)
        if writer is not None:
            writer.write(rec)
        if on_record is not None:
            on_record(rec)

    own_executor, own_context = executor is None, context is None
    executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"p2pfl-node{node_id}")
    ctx = context or zmq.asyncio.Context()
    transport = _transport(plan, node_id, listen, ctx, curve)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopped: list[int] = []

    signalled_at: list[float] = []

    def on_signal(signum: int) -> None:
        if not stopped and main is not None:
            log.warning("node %d: %s received; stopping (the last round's checkpoint stays)",
                        node_id, signal.Signals(signum).name)
            signalled_at.append(time.monotonic())
            main.cancel()
        stopped.append(signum)

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM) if handle_signals else ():
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    try:
        if curve is not None:
            from .security import start_authenticator

            auth = start_authenticator(ctx, curve, neighbours)  # before bind: fail closed
        transport.bind()
        transport.connect({j: deployment.addresses[j] for j in neighbours})
        node = make_node(plan, node_id, transport, executor=executor, on_record=record)
        if cfg.churn_of(node_id) is not None:  # a departing node closes its sockets and rebinds
            bound = {**{j: deployment.addresses[j] for j in neighbours}, node_id: transport.address or listen}
            node.reopen = _reopener(plan, node_id, bound, ctx, curve)
        tree = cfg.to_mapping()
        tree.pop("name", None)
        tree.get("data", {}).pop("data_dir", None)
        tree.get("data", {}).pop("download", None)
        node.settings = flat_settings(tree)
        if ckpt is not None:
            def checkpointer(n: Node, finished: bool) -> Callable[[], Any]:
                snapshot = capture(n, finished=finished)
                return lambda: ckpt.save(snapshot)

            node.checkpointer = checkpointer
        start = 1
        if state is not None:
            restore(node, state)
            start = state.round + 1
            log.info("node %d: resuming after round %d from %s", node_id, state.round, ckpt.json_path if ckpt else "")
        try:
            x = await node.run(start, resume=state is not None)
        except asyncio.CancelledError:
            if stopped:
                raise KeyboardInterrupt from None
            raise
        if out is not None:
            (out / "final").mkdir(parents=True, exist_ok=True)
            np.save(out / "final" / f"node-{node_id}.npy", x)
        return x
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await transport.aclose(linger_ms=0 if stopped else None)  # Ctrl-C: neighbours repair what is lost
        if auth is not None:
            auth.stop()
        # Off the loop: both can block (a training thread finishing its batch, linger).
        if own_context:
            await asyncio.to_thread(ctx.term)
        if own_executor:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        if writer is not None:
            writer.close()
        if signalled_at:
            log.info("node %d: stopped %.2f s after the signal", node_id, time.monotonic() - signalled_at[0])


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
    if cfg.net.transport == "ipc":
        sockdir = Path(tempfile.mkdtemp(prefix="p2pfl-"))
        addresses = {i: f"ipc://{sockdir}/node-{i}" for i in range(cfg.nodes)}
    else:
        sockdir = None
        addresses = {i: f"tcp://{cfg.net.host}:{p}" for i, p in enumerate(free_tcp_ports(cfg.nodes, cfg.net.host))}
    dep = Deployment(config=cfg, addresses=addresses)
    dep_path = out / "deployment.toml"
    dep_path.write_text(dep.to_toml(), encoding="utf-8")
    (out / "nodes").mkdir(exist_ok=True)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    logs = {}
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        for i in range(cfg.nodes):
            cmd = [python or sys.executable, "-m", "p2pfl", "node", "--deployment", str(dep_path),
                   "--id", str(i), "--out", str(out)]
            cmd += ["--only-data-dirs"]
            for d in data_dirs:
                cmd += ["--data-dir", str(d)]
            logs[i] = (out / "nodes" / f"node-{i}.log").open("wb")
            procs[i] = subprocess.Popen(cmd, stdout=logs[i], stderr=subprocess.STDOUT, env=env)
        seen: dict[int, int] = {i: 0 for i in range(cfg.nodes)}
        while any(p.poll() is None for p in procs.values()):
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
    records: list[dict[str, Any]] = []
    for i in range(cfg.nodes):
        path = out / "nodes" / f"node-{i}.jsonl"
        if path.exists():
            records.extend(read_records(path))
    records.sort(key=lambda r: (int(r["round"]), int(r["node"])))
    with MetricsWriter(out / "metrics.jsonl") as writer:
        for rec in records:
            writer.write(rec)
    models = {i: np.load(out / "final" / f"node-{i}.npy") for i in range(cfg.nodes)}
    wall = time.perf_counter() - started
    summary = _finish(out, plan, records, models, wall)
    return RunResult(config=cfg, summary=summary, records=records, final_models=models,
                     adversaries=plan.adversaries, out=out, wall_time=wall, data_source=plan.bundle.source)


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


# ---- the entry point of `p2pfl run` and of the Python API ----------------------------------------
def run(
    config: RunConfig,
    *,
    out: str | Path | None = None,
    processes: bool = False,
    search: Sequence[str | os.PathLike] = (),
    progress: Progress | None = None,
    overwrite: bool = False,
    plan: Plan | None = None,
    hosts: int | None = None,
) -> RunResult:
    """Run a whole experiment on this machine and write its run folder (if ``out``).

    ``processes``: one ``p2pfl node`` process per node; ``hosts=W``: W node hosts
    (``p2pfl node --ids``, :func:`p2pfl.host.run_hosts`); neither: every node in this process.
    """
    set_torch_threads(1)
    plan = plan or Plan.build(config, search=search)  # fails fast, before anything is written
    out_path = prepare_out(out, overwrite=overwrite)
    if out_path is not None:
        _write_plan(out_path, plan)
    if hosts:
        from .host import run_hosts

        if out_path is None:
            out_path = Path(tempfile.mkdtemp(prefix="p2pfl-run-"))
            _write_plan(out_path, plan)
        return run_hosts(plan, out=out_path, hosts=hosts, progress=progress, search=search)
    if processes:
        if out_path is None:
            out_path = Path(tempfile.mkdtemp(prefix="p2pfl-run-"))
            _write_plan(out_path, plan)
        return run_processes(plan, out=out_path, progress=progress, search=search)
    return run_inprocess(plan, out=out_path, progress=progress)


__all__ = ["Deployment", "RunResult", "free_tcp_ports", "make_node", "prepare_out", "run", "run_inprocess",
           "run_inprocess_async", "run_node_async", "run_processes"]
