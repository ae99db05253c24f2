"""One gossip node: the round loop of DESIGN.md section 2.

Round t at node i::

    1. train      z_i = local training of x_i (a behaviour: honest, or an attack)
    2. announce   delta_ij = z_i - xhat_i[j]; send (t, delta) to neighbour j; xhat_i[j] += delta
    3. receive    xhat_j += delta_j for every neighbour j (checksummed; snapshot on gap)
    4. merge      x_i = z_i + F({u_ij = xhat_j - z_i, W_ij})

The node owns one :class:`~p2pfl.transport.Transport` and two tasks in one TaskGroup: the
receiver (decode, validate, apply to public copies) and the round loop. Heavy numeric
work (training, filtering, evaluation) runs in an executor thread, so the event loop keeps
serving sockets. Nothing a peer sends can crash the node: every rejection is counted under
its reason, logged once per (sender, reason), and dropped before it touches any state (a
delta is applied to a copy of the public copy and kept only if the checksum matches).

Faults: a neighbour whose link has been down (ZMTP heartbeats, socket monitor) and that has
sent nothing for ``dead_after`` seconds is skipped without waiting for the round timeout.
A node restarted from a checkpoint says hello again; its neighbours compare the public copy
it announces in the hello with theirs and ask for a snapshot if they differ, and it
fast-forwards to the neighbours' round and asks them for snapshots.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import wire
from .behaviour import Behaviour, Crafted, Honest, NodeView
from .config import flat_settings
from .errors import DecodeError, ProtocolError
from .transport import Inbound, Transport

log = logging.getLogger(__name__)


# ---- small records ---------------------------------------------------------------------------------
@dataclass
class _Peer:
    """Receiver-side state of one neighbour j."""

    copy: np.ndarray  # xhat_j
    round: int = 0  # round of the announcement xhat_j reflects; -1 = invalid, waiting for a snapshot
    last_seq: int = -1
    pending: dict[int, wire.Message] = field(default_factory=dict)  # round -> delta message
    last_delta: np.ndarray | None = None
    gap_since: float | None = None
    asked_at: float = float("-inf")  # when a snapshot was last requested
    done: bool = False
    hello: bool = False
    last_seen: float = float("-inf")  # monotonic time of the last admitted message
    their_round: int = -1  # the round the neighbour said it was in (hello)
    their_pub_round: int = -1  # the round of the public copy it said it holds of itself (hello)
    refused: str = ""  # why its hello was refused, if it was
    down: bool = False  # considered dead (and logged as such)


class Node:
    """A gossip-learning node.

    Parameters
    ----------
    node_id:
        This node's id.
    exp_id:
        Experiment id; messages of other experiments are rejected.
    x0:
        The common initial model (flat float32).
    neighbours, weights:
        Graph neighbours and the mixing weights W_ij of this node's row.
    rounds:
        Number of rounds to run.
    transport:
        A bound :class:`Transport` connected to every neighbour.
    trainer, data:
        Local training (:class:`p2pfl.train.Trainer`) and the own shard.
    behaviour:
        :class:`Honest` or an attack.
    filter:
        A :class:`p2pfl.filters.Filter` (``None``: plain weighted sum).
    evaluate:
        ``f(x) -> dict`` of metrics on held-out data, run after each round (in the executor).
    validate:
        ``f(x) -> accuracy`` on a local validation split, handed to filters that need it.
    """

    def __init__(
        self,
        *,
        node_id: int,
        exp_id: str,
        x0: np.ndarray,
        neighbours: tuple[int, ...],
        weights: Mapping[int, float],
        rounds: int,
        transport: Transport,
        trainer: Any,
        data: Any,
        behaviour: Behaviour | None = None,
        filter: Any = None,
        evaluate: Callable[[np.ndarray], dict[str, float]] | None = None,
        validate: Callable[[np.ndarray], float] | None = None,
        executor: Executor | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        round_timeout: float = 120.0,
        connect_timeout: float = 60.0,
        gap_grace: float | None = None,
        window: int = 4,
        compression: float = 0.0,
        epochs: int = 1,
        seed: int = 0,
        role: str = "benign",
        eval_every: int = 1,
        config_digest: str = "",
        x_init: np.ndarray | None = None,
        max_message_bytes: int | None = None,
        settings: Mapping[str, Any] | None = None,
        checkpointer: Callable[[Node, bool], Callable[[], Any]] | None = None,
        dead_after: float = 3.0,
    ) -> None:
        self.id = node_id
        self.exp_id = exp_id
        self.neighbours = tuple(sorted(neighbours))
        self.weights = {j: float(weights[j]) for j in self.neighbours}
        self.rounds = rounds
        self.transport = transport
        self.trainer = trainer
        self.data = data
        self.behaviour: Behaviour = behaviour or Honest()
        self.filter = filter
        self._evaluate = evaluate
        self._validate = validate
        self._executor = executor
        self._on_record = on_record
        self.round_timeout = round_timeout
        self.connect_timeout = connect_timeout
        self.gap_grace = min(2.0, round_timeout / 4) if gap_grace is None else gap_grace
        self.window = window
        self.compression = compression
        self.epochs = epochs
        self.seed = seed
        self.role = role
        self.eval_every = eval_every
        self.config_digest = config_digest
        #: Flat resolved settings, sent at handshake so a mismatch can name what differs.
        self.settings = dict(settings or {})
        #: ``f(node, finished)``, called on the loop after each round: captures the state and
        #: returns the function that writes it (run in the executor).
        self.checkpointer = checkpointer
        self.dead_after = dead_after
        x0 = np.ascontiguousarray(x0, dtype=np.float32)
        self.dim = int(x0.shape[0])
        self.x0_sum = wire.checksum(x0)
        self.max_bytes = max_message_bytes or (self.dim * 4 * 2 + (1 << 16))
        self.x = (x0 if x_init is None else np.asarray(x_init, dtype=np.float32)).copy()
        # Sender side: the public copy each neighbour holds of us. Honest nodes share one array
        # for every neighbour; an equivocating behaviour gets private copies per neighbour.
        self.pub_shared = x0.copy()
        self.pub_private: dict[int, np.ndarray] = {}
        self.pub_round = 0
        self._seq = time.time_ns()  # strictly increasing across restarts of this node
        # Receiver side.
        self.peers: dict[int, _Peer] = {j: _Peer(copy=x0.copy()) for j in self.neighbours}
        self.round = 0
        self.rejected: dict[str, int] = {}
        self._logged: set[tuple[int, str]] = set()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.history: list[dict[str, Any]] = []
        self.stopped = False

    # ---- public copies ----------------------------------------------------------------------------
    def announced_to(self, j: int) -> np.ndarray:
        """The model neighbour j holds as ours (our public copy towards j)."""
        return self.pub_private.get(j, self.pub_shared)

    # ---- sending -----------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _message(self, kind: str, dst: int, *, round: int, base: int = -1, checksum: bytes = b"",
                 tensors: Mapping[str, np.ndarray] | None = None, info: Mapping[str, Any] | None = None
                 ) -> wire.Message:
        return wire.Message(kind=kind, exp=self.exp_id, src=self.id, dst=dst, round=round,
                            seq=self._next_seq(), base=base, checksum=checksum,
                            tensors=tensors or {}, info=info or {})

    async def _send(self, msg: wire.Message) -> bool:
        return await self.transport.send(msg.dst, wire.encode(msg))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delta_tensors(self, target: np.ndarray, pub: np.ndarray) -> dict[str, np.ndarray]:
        """delta = target - pub (dense, or top-k sparse with implicit error feedback), applied to pub.

        The sender applies exactly what receivers apply (pub += delta), so both ends stay
        bit-identical; with compression, what is not sent stays in target - pub and is sent
        later (error feedback for free).
        """
        delta = np.subtract(target, pub, dtype=np.float32)
        if self.compression > 0.0:
            idx, val = wire.sparse_delta(delta, self.compression)
            pub[idx] += val
            return {"idx": idx, "val": val}
        pub += delta
        return {"delta": delta}

    async def _announce(self, t: int, announce: np.ndarray | Mapping[int, np.ndarray]) -> None:
        base = self.pub_round
        batches: list[tuple[list[int], dict[str, np.ndarray], bytes]] = []
        if isinstance(announce, np.ndarray):
            shared = [j for j in self.neighbours if j not in self.pub_private]
            if shared:
                tensors = self._delta_tensors(announce, self.pub_shared)
                batches.append((shared, tensors, wire.checksum(self.pub_shared)))
            for j, pub in self.pub_private.items():
                tensors = self._delta_tensors(announce, pub)
                batches.append(([j], tensors, wire.checksum(pub)))
        else:
            for j in self.neighbours:
                if j not in self.pub_private:
                    self.pub_private[j] = self.pub_shared.copy()
                pub = self.pub_private[j]
                tensors = self._delta_tensors(announce.get(j, pub), pub)
                batches.append(([j], tensors, wire.checksum(pub)))
        self.pub_round = t
        # A neighbour known to be down gets nothing (a send would only wait for the send
        # timeout); its copy has a gap, which it repairs with a snapshot when it is back.
        sends = [
            self._send(self._message("delta", j, round=t, base=base, checksum=chk, tensors=tensors))
            for dsts, tensors, chk in batches for j in dsts if self._alive(j)
        ]
        await asyncio.gather(*sends)

    async def _send_snapshot(self, j: int) -> None:
        pub = self.announced_to(j).copy()  # a copy: the live array changes next round
        await self._send(self._message("snapshot", j, round=self.pub_round, checksum=wire.checksum(pub),
                                       tensors={"model": pub}))

    # ---- receiving -----------------------------------------------------------------------------------
    def _reject(self, src: int | None, reason: str, detail: str = "") -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        key = (-1 if src is None else src, reason)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("node %d: rejected message from %s: %s %s (further ones only counted)",
                        self.id, "?" if src is None else src, reason, detail)

    def _admit(self, inbound: Inbound) -> wire.Message:
        """Decode and check a message against this node's state; raises ProtocolError."""
        msg = wire.decode(inbound.frames, max_bytes=self.max_bytes, dim=self.dim)
        try:
            return self._check(msg, inbound.user_id)
        except ProtocolError as exc:
            exc.src = msg.src  # claimed, for the log line; counted under the reason either way
            raise

    def _check(self, msg: wire.Message, user_id: str | None) -> wire.Message:
        if msg.exp != self.exp_id and msg.kind != "hello":  # a hello says *what* differs, below
            raise ProtocolError("experiment", f"experiment {msg.exp!r}, expected {self.exp_id!r}")
        if msg.dst != self.id:
            raise ProtocolError("misrouted", f"addressed to {msg.dst}")
        peer = self.peers.get(msg.src)
        if peer is None:
            raise ProtocolError("not-neighbour", f"sender {msg.src} is not a neighbour")
        if user_id is not None and user_id != str(msg.src):
            raise ProtocolError("identity", f"key of node {user_id or '(none)'} claims to be {msg.src}")
        if msg.seq <= peer.last_seq:
            raise ProtocolError("replay", f"sequence {msg.seq} <= {peer.last_seq}")
        if msg.kind == "delta":
            if msg.round <= peer.round and peer.round >= 0:
                raise ProtocolError("stale", f"round {msg.round}, copy already at {peer.round}")
            if msg.round > self.round + self.window:
                raise ProtocolError("future", f"round {msg.round} while at {self.round}")
            if msg.round in peer.pending:
                raise ProtocolError("duplicate", f"second delta for round {msg.round}")
            if msg.base >= msg.round:
                raise ProtocolError("schema", f"base {msg.base} not before round {msg.round}")
        elif msg.kind == "snapshot":
            if wire.checksum(msg.tensors["model"]) != msg.checksum:
                raise ProtocolError("checksum", "snapshot does not match its checksum")
            if msg.round > self.round + self.window:
                raise ProtocolError("future", f"snapshot round {msg.round} while at {self.round}")
        elif msg.kind == "hello":
            bad = self._check_hello(msg)
            if bad:
                peer.refused = bad
                raise ProtocolError("handshake", bad)
        peer.last_seq = msg.seq
        peer.last_seen = time.monotonic()
        return msg

    def _check_hello(self, msg: wire.Message) -> str:
        cfg, x0 = msg.info.get("config"), msg.info.get("x0")
        if cfg != self.config_digest or msg.exp != self.exp_id:
            theirs = msg.info.get("settings")
            if isinstance(theirs, str) and self.settings:
                try:
                    named = settings_difference(json.loads(theirs), self.settings, msg.src, self.id)
                except ValueError:
                    named = ""
                if named:
                    return named
            return f"settings differ (config digest {cfg!r} at node {msg.src}, {self.config_digest!r} here)"
        if x0 != self.x0_sum:
            return "initial model x0 differs (different seed or model)"
        return ""

    def _handle(self, msg: wire.Message) -> None:
        peer = self.peers[msg.src]
        if msg.kind == "delta":
            peer.pending[msg.round] = msg
            while len(peer.pending) > self.window + 1:  # bounded: a stuck chain waits for a snapshot
                del peer.pending[min(peer.pending)]
                self._reject(msg.src, "overflow", "too many unapplied deltas")
            self._advance(msg.src)
        elif msg.kind == "snapshot":
            if msg.round > peer.round or peer.round < 0:
                peer.copy = np.array(msg.tensors["model"], dtype=np.float32)  # own the memory
                peer.round = msg.round
                peer.gap_since = None
                peer.pending = {r: m for r, m in peer.pending.items() if r > msg.round}
                self._advance(msg.src)
        elif msg.kind == "snapshot_req":
            self._spawn(self._send_snapshot(msg.src))
        elif msg.kind == "done":
            peer.done = True
        elif msg.kind == "hello":
            peer.their_round = msg.round
            pub_round, pub_sum = msg.info.get("pub_round"), msg.info.get("pub_sum")
            if type(pub_round) is int:
                peer.their_pub_round = pub_round
            if peer.down:
                peer.down = False
                log.info("node %d: neighbour %d is back (at round %d)", self.id, msg.src, msg.round)
            if (msg.info.get("reply") is not True and type(pub_round) is int and isinstance(pub_sum, bytes)
                    and (pub_round != peer.round or wire.checksum(peer.copy) != pub_sum)):
                # A restarted neighbour whose announced copy is not ours (it resumed from an
                # older checkpoint, or our last delta from it is one it never committed).
                log.info("node %d: neighbour %d announces its copy at round %d, ours is at %d; resyncing it",
                         self.id, msg.src, pub_round, peer.round)
                peer.round = -1
                peer.pending.clear()
                peer.gap_since = time.monotonic()
                peer.asked_at = peer.gap_since
                self._spawn(self._send(self._message("snapshot_req", msg.src, round=self.round)))
            peer.hello = True
            peer.refused = ""
            if msg.info.get("reply") is not True:  # a (re)started neighbour: answer, and resync it
                self._spawn(self._send(self._message("hello", msg.src, round=self.round,
                                                     info=self._hello_info(reply=True))))
        self._changed.set()

    def _advance(self, j: int) -> None:
        """Apply j's pending deltas that continue its chain, up to the current round."""
        peer = self.peers[j]
        while peer.round >= 0:
            nxt = next((m for r, m in sorted(peer.pending.items())
                        if m.base == peer.round and r <= self.round), None)
            if nxt is None:
                break
            del peer.pending[nxt.round]
            candidate = peer.copy.copy()  # the copy itself changes only if the result checks out
            wire.apply_delta(candidate, nxt)
            if wire.checksum(candidate) != nxt.checksum:
                self._reject(j, "checksum", f"delta of round {nxt.round} does not give the sender's copy")
                if peer.gap_since is None:  # the chain is broken here: repair with a snapshot
                    peer.gap_since = time.monotonic()
                break
            peer.copy = candidate
            peer.round = nxt.round
            peer.gap_since = None
            if "delta" in nxt.tensors:
                peer.last_delta = nxt.tensors["delta"]
            else:
                dense = np.zeros(self.dim, dtype=np.float32)
                dense[nxt.tensors["idx"]] = nxt.tensors["val"]
                peer.last_delta = dense
        # Drop what the chain has passed.
        for r in [r for r in peer.pending if r <= peer.round]:
            del peer.pending[r]
        if peer.round < self.round and (peer.pending or peer.round < 0) and peer.gap_since is None:
            peer.gap_since = time.monotonic()

    async def _receive_loop(self) -> None:
        while True:
            inbound = await self.transport.recv()
            src: int | None = None
            try:
                msg = self._admit(inbound)
                src = msg.src
                self._handle(msg)
            except DecodeError as exc:
                self._reject(None, exc.reason, exc.detail)
            except ProtocolError as exc:
                self._reject(getattr(exc, "src", src), exc.reason, exc.detail)
            except Exception:  # never let a peer's bytes kill the node
                log.exception("node %d: unexpected error handling a message", self.id)
                self.rejected["internal"] = self.rejected.get("internal", 0) + 1

    # ---- liveness --------------------------------------------------------------------------------------
    def _alive(self, j: int) -> bool:
        """False once j's link has been down, with nothing heard from j since, for ``dead_after`` s.

        A message admitted from j after the link went down proves j is back, whatever the
        socket monitor still says (its "up" event is not reliable across reconnects): a
        restarted neighbour that trains for longer than ``dead_after`` per round must not be
        skipped every round. The round timeout still bounds every wait.
        """
        down_since = getattr(self.transport, "down_since", None)
        since = down_since(j) if down_since is not None else None
        if since is None or self.peers[j].last_seen >= since:
            return True
        return time.monotonic() - since < self.dead_after

    def _watch(self) -> None:
        """Log a neighbour going down (once per outage); coming back is logged at its hello."""
        for j, peer in self.peers.items():
            alive = self._alive(j)
            if not alive and not peer.down:
                peer.down = True
                log.warning("node %d: neighbour %d is down (no link and no message for %.1fs); "
                            "skipping it until it returns", self.id, j, self.dead_after)
            elif alive and peer.down and peer.last_seen > time.monotonic() - self.dead_after:
                peer.down = False
                log.info("node %d: neighbour %d is back", self.id, j)

    def _tick(self) -> None:
        self._watch()
        self._repair()

    # ---- waiting ---------------------------------------------------------------------------------------
    async def _wait(self, cond: Callable[[], bool], timeout: float, *, tick: Callable[[], None] | None = None
                    ) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self._changed.wait()
            except TimeoutError:
                pass
            if tick is not None:
                tick()
        return True

    def _repair(self) -> None:
        """Ask for a snapshot from neighbours whose chain has had a gap for gap_grace seconds.

        A gap is known when a later delta, a checksum mismatch or a neighbour's ``done``
        shows that something is missing. Requests are repeated at most every gap_grace
        seconds (a request or its answer may be lost too).
        """
        now = time.monotonic()
        for j, peer in self.peers.items():
            if peer.round >= self.round or peer.gap_since is None:
                continue
            if now - peer.gap_since >= self.gap_grace and now - peer.asked_at >= self.gap_grace:
                peer.asked_at = now
                log.info("node %d: asking %d for a snapshot (copy at round %d, now %d)",
                         self.id, j, peer.round, self.round)
                self._spawn(self._send(self._message("snapshot_req", j, round=self.round)))

    def _hello_info(self, reply: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {"config": self.config_digest, "x0": self.x0_sum, "reply": reply,
                                "pub_round": self.pub_round}
        if not self.pub_private:  # with per-neighbour copies there is no single one to compare
            info["pub_sum"] = wire.checksum(self.pub_shared)
        if self.settings:
            text = json.dumps(self.settings, sort_keys=True, separators=(",", ":"), default=str)
            if len(text) <= 3500:  # the codec caps strings at 4096 bytes
                info["settings"] = text
        return info

    async def _handshake(self, resume: bool = False) -> None:
        for j in self.neighbours:
            await self._send(self._message("hello", j, round=self.round, info=self._hello_info()))

        def ready() -> bool:  # a resumed node does not wait for neighbours that are down
            return all(p.hello or (resume and not self._alive(j)) for j, p in self.peers.items())

        ok = await self._wait(ready, self.connect_timeout)
        missing = [j for j, p in self.peers.items() if not p.hello]
        if missing:
            refused = "".join(f"; refused {j}: {self.peers[j].refused}" for j in missing if self.peers[j].refused)
            if ok:
                log.warning("node %d: neighbour(s) %s are down%s; starting without them", self.id, missing, refused)
            else:
                log.warning("node %d: neighbour(s) %s did not say hello within %.0fs%s; starting without them",
                            self.id, missing, self.connect_timeout, refused)

    def _fast_forward(self, start_round: int, resume: bool) -> int:
        """After the handshake: the round to start at, and snapshot requests when resuming.

        A node that (re)joins while its neighbours are further on starts at their round:
        the rounds it missed are gone, and snapshots bring its copies up to date.
        """
        ahead = [p.their_round for p in self.peers.values() if p.hello]
        target = min(max([start_round, *ahead]), self.rounds + 1)
        if target > start_round:
            log.info("node %d: neighbours are at round %d; resuming there (rounds %d..%d missed)",
                     self.id, target, start_round, target - 1)
        if resume or target > start_round:
            self.round = max(self.round, target - 1)
            now = time.monotonic()
            for j, peer in self.peers.items():
                if peer.hello and peer.their_pub_round != peer.round:
                    peer.asked_at = now
                    peer.gap_since = now
                    self._spawn(self._send(self._message("snapshot_req", j, round=self.round)))
        return target

    # ---- the round loop ----------------------------------------------------------------------------------
    async def _in_executor(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _view(self, t: int) -> NodeView:
        return NodeView(
            node=self.id, round=t, rounds=self.rounds, x=self.x, trainer=self.trainer, data=self.data,
            neighbours=self.neighbours, weights=self.weights,
            public={j: p.copy for j, p in self.peers.items()},
            public_round={j: p.round for j, p in self.peers.items()},
            last_deltas={j: p.last_delta for j, p in self.peers.items() if p.last_delta is not None},
            announced={j: self.announced_to(j) for j in self.neighbours},
            seed=self.seed, epochs=self.epochs,
        )

    def _merge(self, t: int, z: np.ndarray, included: list[int]) -> tuple[np.ndarray, dict[str, Any]]:
        """x = z + F(proposals). Runs in the executor."""
        if not included:
            return z, {}
        w = np.array([self.weights[j] for j in included], dtype=np.float64)
        if self.filter is None:
            update = np.zeros_like(z)
            for j, wj in zip(included, w, strict=True):
                update += np.float32(wj) * (self.peers[j].copy - z)
            return z + update, {}
        from .filters import FilterContext, Proposals

        u = np.empty((len(included), z.shape[0]), dtype=np.float32)
        for k, j in enumerate(included):
            np.subtract(self.peers[j].copy, z, out=u[k])
        ctx = FilterContext(node=self.id, round=t, rounds=self.rounds, own=z,
                            own_update=np.subtract(z, self.x, dtype=np.float32),
                            evaluate=self._validate, seed=self.seed)
        result = self.filter(Proposals(ids=tuple(included), u=u, w=w), ctx)
        stats = {
            "norm_in": {str(k): round(v, 6) for k, v in result.norm_in.items()},
            "norm_out": {str(k): round(v, 6) for k, v in result.norm_out.items()},
            "survived": {str(k): round(v, 6) for k, v in result.survived.items()},
            "dropped": list(result.dropped),
            "kept_coords": int(result.kept_coords),
        }
        return z + result.update, stats

    async def _round(self, t: int) -> None:
        t0 = time.perf_counter()
        self.round = t
        crafted: Crafted = await self._in_executor(self.behaviour.craft, self._view(t))
        t_train = time.perf_counter()
        await self._announce(t, crafted.announce)
        for j in self.neighbours:
            self._advance(j)
        self._repair()
        complete = await self._wait(lambda: all(p.round >= t or not self._alive(j) for j, p in self.peers.items()),
                                    self.round_timeout, tick=self._tick)
        t_wait = time.perf_counter()
        included = [j for j, p in self.peers.items() if p.round >= t]
        skipped = [j for j in self.neighbours if j not in included]
        if not complete:
            log.warning("node %d: round %d timed out after %.1fs waiting for %s; skipping them",
                        self.id, t, self.round_timeout, skipped)
        elif skipped:
            self._watch()
            log.info("node %d: round %d without %s (down)", self.id, t, skipped)
        self.x, filter_stats = await self._in_executor(self._merge, t, crafted.own, included)
        t_merge = time.perf_counter()
        due = t % self.eval_every == 0 or t == self.rounds
        metrics = await self._in_executor(self._evaluate, self.x) if self._evaluate and due else {}
        t_eval = time.perf_counter()
        record: dict[str, Any] = {
            "round": t,
            "node": self.id,
            "role": self.role,
            **metrics,
            "heard": len(included),
            "skipped": skipped,
            "rejected": dict(self.rejected),
            "time": {"train": round(t_train - t0, 4), "wait": round(t_wait - t_train, 4),
                     "merge": round(t_merge - t_wait, 4), "eval": round(t_eval - t_merge, 4),
                     "round": round(t_eval - t0, 4)},
        }
        if filter_stats:
            record["filter"] = filter_stats
        if crafted.info:
            record["attack"] = crafted.info
        await self._checkpoint(False)  # before the record: a record never outruns its checkpoint
        self.history.append(record)
        if self._on_record is not None:
            self._on_record(record)

    async def _checkpoint(self, finished: bool) -> None:
        if self.checkpointer is None:
            return
        try:
            write = self.checkpointer(self, finished)  # on the loop: a consistent copy
            await self._in_executor(write)
        except Exception:  # a full disk must not end the experiment; say so loudly
            log.exception("node %d: writing the checkpoint of round %d failed", self.id, self.round)

    async def _finish(self) -> None:
        """Catch up on every neighbour's last round, then say ``done`` and wait for theirs.

        ``done`` means "finished and caught up", so a neighbour is still serving snapshot
        requests while anybody may need one. A neighbour still missing after gap_grace is
        treated as having a gap (its last delta may have been lost) and asked for a snapshot.
        """
        self.round = self.rounds
        started = time.monotonic()

        def tick() -> None:
            for peer in self.peers.values():
                if peer.round < self.rounds and peer.gap_since is None:
                    peer.gap_since = started
            self._repair()

        await self._wait(lambda: all(p.round >= self.rounds or not self._alive(j) for j, p in self.peers.items()),
                         self.round_timeout, tick=tick)
        await self._checkpoint(True)
        await asyncio.gather(*(self._send(self._message("done", j, round=self.rounds))
                               for j in self.neighbours if self._alive(j)))
        await self._wait(lambda: all(p.done or not self._alive(j) for j, p in self.peers.items()),
                         self.round_timeout, tick=self._watch)

    async def _catch_up(self, target: int) -> None:
        """A node that missed rounds adopts its neighbours' current models before it trains.

        Its own model is from before the gap; training on it and mixing once would leave it
        W_ii of a stale model. Instead, once the snapshots requested by the fast-forward are
        in (bounded by the round timeout), x becomes the W-weighted mean of the fresh copies.
        """
        def fresh(p: _Peer) -> bool:
            return p.round >= target - 1

        waiting = [j for j, p in self.peers.items() if p.hello and self._alive(j)]
        await self._wait(lambda: all(fresh(self.peers[j]) for j in waiting), self.round_timeout, tick=self._tick)
        ready = [j for j in self.neighbours if fresh(self.peers[j])]
        if not ready:
            log.warning("node %d: no neighbour snapshot arrived; continuing from its own model", self.id)
            return
        w = np.array([self.weights[j] for j in ready], dtype=np.float64)
        mean = np.zeros(self.dim, dtype=np.float64)
        for j, wj in zip(ready, w / w.sum(), strict=True):
            mean += wj * self.peers[j].copy
        self.x = mean.astype(np.float32)
        log.info("node %d: caught up from %d neighbours' models at round %d", self.id, len(ready), target - 1)

    async def run(self, start_round: int = 1, *, resume: bool = False) -> np.ndarray:
        """Run rounds ``start_round..rounds``; returns the final model.

        ``resume``: the node's state was restored from a checkpoint (see
        :mod:`p2pfl.checkpoint`); it asks its neighbours for snapshots after the handshake.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                receiver = tg.create_task(self._receive_loop())
                await self._handshake(resume)
                target = self._fast_forward(start_round, resume)
                if target > start_round:
                    await self._catch_up(target)
                start_round = target
                for t in range(start_round, self.rounds + 1):
                    await self._round(t)
                await self._finish()
                receiver.cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.stopped = True
        return self.x


def settings_difference(theirs: Mapping[str, Any], ours: Mapping[str, Any], src: int, here: int,
                        limit: int = 3) -> str:
    """Name the settings that differ, e.g. ``seed differs: 1 at node 2, 0 here``."""
    keys = sorted(set(theirs) | set(ours))
    diff = [k for k in keys if theirs.get(k) != ours.get(k)]
    parts = [f"{k} differs: {theirs.get(k, 'unset')!r} at node {src}, {ours.get(k, 'unset')!r} here"
             for k in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    return "; ".join(parts)


__all__ = ["Behaviour", "Crafted", "Honest", "Node", "NodeView", "flat_settings", "settings_difference"]
