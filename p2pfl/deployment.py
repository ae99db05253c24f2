"""Deployments: a run's settings plus where every node listens, and running one node of it
(``p2pfl node``: one machine or process per node, resumable from checkpoints, CurveZMQ keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from . import validate
from .config import RunConfig, read_toml
from .errors import ConfigError
from .metrics import MetricsWriter
from .node import Node
from .plan import Plan
from .wiring import make_node, reopener, transport_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """A run config plus where every node listens (and, optionally, its CurveZMQ keys)."""

    config: RunConfig
    addresses: Mapping[int, str]
    keys_dir: Path | None = None
    public_keys: Mapping[int, str] = field(default_factory=dict)  # [deployment.keys] id = "z85 key"
    #: Churn: a departing node's process exits (writing ``nodes/node-I.away``) and whoever started
    #: it starts it again at rejoin, when it resumes from its checkpoint (:func:`p2pfl.launch.run_processes`
    #: does). Off: a departing node closes its sockets and rebinds them in the same process.
    churn_exit: bool = False

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
        unknown = set(dep) - {"nodes", "keys_dir", "keys", "churn_exit"}
        if unknown:
            raise ConfigError("deployment", sorted(unknown), "only the keys nodes, keys_dir, keys and churn_exit")
        churn_exit = validate.flag("deployment.churn_exit", dep.get("churn_exit", False))
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
        return cls(config=config, addresses=addresses, keys_dir=keys_dir, public_keys=public_keys,
                   churn_exit=churn_exit)

    def to_toml(self) -> str:
        import tomli_w

        text = self.config.to_toml()
        dep: dict[str, Any] = {"nodes": {str(i): a for i, a in sorted(self.addresses.items())}}
        if self.keys_dir is not None:
            dep["keys_dir"] = str(self.keys_dir)
        if self.public_keys:
            dep["keys"] = {str(i): k for i, k in sorted(self.public_keys.items())}
        if self.churn_exit:
            dep["churn_exit"] = True
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
    away_file = out / "nodes" / f"node-{node_id}.away" if out is not None else None
    away: dict[str, float] | None = None
    if away_file is not None and away_file.exists():  # started again after it left (churn)
        away = json.loads(away_file.read_text(encoding="utf-8"))
        away_file.unlink()
        rest = float(away["rejoin_at"]) - time.time()
        if rest > 0:  # away until its rejoin tick: no socket is open meanwhile
            log.info("node %d: away (churn) for %.1fs more", node_id, rest)
            await asyncio.sleep(rest)
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
    transport = transport_for(plan, node_id, listen, ctx, curve)
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
        if cfg.churn_of(node_id) is not None and deployment.churn_exit:
            node.leave_exits = True
        elif cfg.churn_of(node_id) is not None:  # a departing node closes its sockets and rebinds
            bound = {**{j: deployment.addresses[j] for j in neighbours}, node_id: transport.address or listen}
            node.reopen = reopener(plan, node_id, bound, ctx, curve)
        node.settings = flat_settings(cfg.shared_mapping())
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
        if away is not None:  # its wall time goes on from when it left
            node.wall_offset = float(away["left_at"]) + max(0.0, time.time() - float(away["written"]))
        try:
            x = await node.run(start, resume=state is not None)
        except asyncio.CancelledError:
            if stopped:
                raise KeyboardInterrupt from None
            raise
        if node.away_for is not None:  # left (churn): the launcher starts it again after away_for
            if away_file is not None:
                away_file.parent.mkdir(parents=True, exist_ok=True)
                now = time.time()
                away_file.write_text(json.dumps({"rejoin_at": now + node.away_for, "left_at": node.left_at,
                                                 "written": now}), encoding="utf-8")
            return x
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


__all__ = ["INSECURE_HELP", "Deployment", "free_tcp_ports", "is_loopback", "run_node_async"]
