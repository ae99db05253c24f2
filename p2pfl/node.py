"""One gossip node: the asyncio driver of :class:`~p2pfl.protocol.GossipProtocol`.

Round t at node i (docs/protocol.md)::

    1. train      z_i = local training of x_i (a behaviour: honest, or an attack)
    2. announce   delta_ij = z_i - xhat_i[j]; send (t, delta) to neighbour j; xhat_i[j] += delta
    3. receive    xhat_j += delta_j for every neighbour j (checksummed; snapshot on gap)
    4. merge      x_i = z_i + F({u_ij = xhat_j - z_i, W_ij})

In async mode (``mode="async"``) the node runs ``rounds`` *ticks* on
its own clock with no round barrier: train -> announce (to all neighbours, or to ``fanout``
of them drawn at random) -> merge with the latest public copy of every neighbour heard from
at least once -> evaluate. The latest copy replaces the previous one, so a neighbour's
weight W_ij does not grow with how often it announces (``net.staleness`` may discount old
copies). ``speed`` < 1 stretches a node's ticks by real sleeping; a churn entry makes it
leave and rejoin (see :meth:`Node._run_async`).

The protocol state (public copies, gaps, snapshots, handshakes, liveness, rejections) lives
in the sans-IO :class:`~p2pfl.protocol.GossipProtocol`; this module only moves bytes and
time in and out of it. Every task the node starts belongs to one ``asyncio.TaskGroup``: the
receiver (decode, then feed the protocol) and one sender per neighbour (a bounded queue, so
nothing a peer asks for can pile up). Heavy numeric work (training, filtering, evaluation,
decoding large messages) runs in threads, so the event loop keeps serving sockets. Log
lines about rejected input are rate-limited (:class:`LogLimiter`), so a flood costs counters,
not disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

import numpy as np

from . import wire
from .behaviour import Behaviour, Crafted, Honest, NodeView
from .config import NetConfig
from .errors import DecodeError
from .gossip_async import AsyncMode
from .protocol import GossipProtocol, Peer, Rejection, settings_difference
from .timing import AnnounceTiming, MergeClock
from .transport import Inbound, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

_DECODE_IN_THREAD = 1 << 20  # messages larger than this are decoded off the event loop


class LogLimiter:
    """At most one line per (sender, reason) and ``burst`` lines per ``period`` seconds.

    The (sender, reason) set is capped (``max_keys``): without CurveZMQ a sender id is only a
    claim, and a flood of forged ids must not grow it. What is not logged is counted and
    summarised in the next line that is.
    """

    def __init__(self, *, burst: int = 20, period: float = 60.0, max_keys: int = 256) -> None:
        self.burst = burst
        self.period = period
        self.max_keys = max_keys
        self._keys: set[tuple[Any, str]] = set()
        self._window_start = float("-inf")
        self._in_window = 0
        self.suppressed = 0

    def allow(self, key: tuple[Any, str], now: float) -> bool:
        if key in self._keys:
            self.suppressed += 1
            return False
        if len(self._keys) >= self.max_keys:
            key = ("*", key[1])  # past the cap: one line per reason, whoever claims to send
            if key in self._keys:
                self.suppressed += 1
                return False
        if now - self._window_start >= self.period:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self.burst:
            self.suppressed += 1
            return False
        self._in_window += 1
        self._keys.add(key)
        return True

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class _ProtocolState(Generic[T]):
    """A Node attribute that is the protocol's attribute of the same name (one source of truth)."""

    def __init__(self, name: str, *, readonly: bool = False, convert: Callable[[Any], Any] | None = None) -> None:
        self.name, self.readonly, self.convert = name, readonly, convert

    def __get__(self, node: Node | None, owner: type) -> Any:
        return self if node is None else getattr(node.protocol, self.name)

    def __set__(self, node: Node, value: T) -> None:
        if self.readonly:
            raise AttributeError(f"{self.name} is the protocol's; change node.protocol.{self.name}")
        setattr(node.protocol, self.name, self.convert(value) if self.convert else value)


class Node(AsyncMode):
    """A gossip-learning node.

    Parameters
    ----------
    node_id, exp_id:
        This node's id and the experiment id (messages of other experiments are rejected).
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
    net:
        Network settings: timeouts, window, compression, grace periods, limits.
    data_identity, data_difference:
        What this node's data is, compared at the handshake (see :mod:`p2pfl.protocol`).
    keep_deltas:
        Keep every neighbour's last delta for the behaviour's view (``last_deltas``); a node
        whose behaviour never reads it (honest) saves a model size per neighbour.
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
        net: NetConfig | None = None,
        epochs: int = 1,
        seed: int = 0,
        role: str = "benign",
        eval_every: int = 1,
        config_digest: str = "",
        x_init: np.ndarray | None = None,
        max_message_bytes: int | None = None,
        settings: Mapping[str, Any] | None = None,
        data_identity: Mapping[str, Any] | None = None,
        data_difference: Callable[[Any, Mapping[str, Any], int], str] | None = None,
        checkpointer: Callable[[Node, bool], Callable[[], Any]] | None = None,
        mode: str = "sync",
        speed: float = 1.0,
        churn: tuple[int, int] | None = None,
        time_budget: float = 0.0,
        reopen: Callable[[], Transport] | None = None,
        timing: AnnounceTiming | None = None,
        keep_deltas: bool = True,
    ) -> None:
        net = net or NetConfig()
        self.net = net
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
        self.round_timeout = net.round_timeout
        self.connect_timeout = net.connect_timeout
        self.epochs = epochs
        self.seed = seed
        self.role = role
        self.eval_every = eval_every
        self.mode = mode
        self.asynchronous = mode == "async"
        self.speed = float(speed)
        #: (leave, rejoin) ticks of this node's churn entry (rejoin 0: never), async mode only
        self.churn = churn
        self.time_budget = float(time_budget)  # async: stop ticking after this many seconds (0: never)
        #: Churn: builds, binds and connects a new transport at this node's address. With it, a
        #: departing node really closes its sockets (neighbours see the link go down) and
        #: rebinds on rejoin; without it, it only drops what arrives.
        self.reopen = reopen
        self._own_transport = False  # the transport is one this node reopened: it closes it
        #: Churn with one process per node: a departing node ends its run (its process exits and
        #: is started again at rejoin, resuming from its checkpoint); ``away_for`` is then how
        #: many seconds it should stay away.
        self.leave_exits = False
        self.away_for: float | None = None
        self.wall_offset = 0.0  # seconds this node ran before (a process restarted after churn)
        self._tg: asyncio.TaskGroup | None = None
        self._workers: list[asyncio.Task[Any]] = []
        self.away = False  # left (churn): drops whatever arrives
        self.left_at: float | None = None  # wall time it left (churn), for tests and logs
        self.finish_complete: bool | None = None  # async: every neighbour said done (or is down)
        self._seen_copy: dict[int, np.ndarray] = {}  # async: the copy of j seen at the last merge
        self._changed_tick: dict[int, int] = {}  # async: own tick at which j's copy last changed
        self._copy_time: dict[int, float] = {}  # async: when j's copy last changed (monotonic)
        self._last_update: np.ndarray | None = None  # async merge-first: the last training update
        self._worked_after = 0.0  # seconds of merge and evaluation since the last craft (speed < 1)
        #: An adversary's announcement timing (async; :mod:`p2pfl.timing`); None: eager, own pace.
        self.timing = timing if timing is not None and not timing.default else None
        self._clock = MergeClock() if self.timing is not None and self.timing.mode == "before-merge" else None
        self._t_start = time.perf_counter()
        #: ``f(node, finished)``, called on the loop after each round: captures the state and
        #: returns the function that writes it (run in the executor).
        self.checkpointer = checkpointer
        x0 = np.ascontiguousarray(x0, dtype=np.float32)
        self.dim = int(x0.shape[0])
        self.max_bytes = max_message_bytes or (self.dim * 4 * 2 + (1 << 16))
        self.protocol = GossipProtocol(
            node_id=node_id, exp_id=exp_id, x0=x0, neighbours=self.neighbours, window=net.window,
            compression=net.compression, gap_grace=net.gap_grace, dead_after=net.dead_after,
            max_abs=net.max_abs, config_digest=config_digest, settings=settings,
            data_identity=data_identity, data_difference=data_difference,
            seq=time.time_ns(),  # strictly increasing across restarts of this node
            asynchronous=self.asynchronous, keep_last_delta=keep_deltas,
        )
        self.x = (x0 if x_init is None else np.asarray(x_init, dtype=np.float32)).copy()
        self.history: list[dict[str, Any]] = []
        self.stopped = False
        self._changed = asyncio.Event()
        self._outbox: dict[int, asyncio.Queue[wire.Message]] = {}
        self._limiter = LogLimiter()
        self._internal_logged = 0
        self.merge_dropped = 0  # contributions dropped because the merge would be non-finite

    # ---- the protocol's state, as attributes (checkpoints, tests, attacks' views) ------------------------
    peers = _ProtocolState[dict[int, Peer]]("peers", readonly=True)
    rejected = _ProtocolState[dict[str, int]]("rejected", convert=dict)
    round = _ProtocolState[int]("round")
    settings = _ProtocolState[dict[str, Any]]("settings", convert=dict)
    gap_grace = _ProtocolState[float]("gap_grace", convert=float)
    pub_shared = _ProtocolState[np.ndarray]("pub_shared")
    pub_private = _ProtocolState[dict[int, np.ndarray]]("pub_private")
    pub_round = _ProtocolState[int]("pub_round")

    def announced_to(self, j: int) -> np.ndarray:
        """The model neighbour j holds as ours (our public copy towards j)."""
        return self.protocol.announced_to(j)

    # ---- sending ---------------------------------------------------------------------------------------------
    def _post(self, messages: list[wire.Message]) -> None:
        """Queue messages for their neighbours' senders; a full queue drops (and marks the link)."""
        for msg in messages:
            queue = self._outbox.get(msg.dst)
            if queue is None:  # not running (yet): nothing can be sent
                self.protocol.send_failed(msg)
                continue
            try:
                queue.put_nowait(msg)
            except asyncio.QueueFull:
                self.protocol.send_failed(msg)
                self._count_local("send-queue-full", msg.dst)

    async def _sender(self, j: int, queue: asyncio.Queue[wire.Message]) -> None:
        while True:
            msg = await queue.get()
            try:
                ok = await self.transport.send(j, wire.encode(msg))
            finally:
                queue.task_done()
            if ok:
                self.protocol.sent(msg)
            else:
                self.protocol.send_failed(msg)
            self._changed.set()

    async def _flush(self, timeout: float) -> None:
        """Wait (bounded) until every queued message was handed to the transport."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(q.join() for q in self._outbox.values()))
        except TimeoutError:
            pass

    def _count_local(self, what: str, j: int) -> None:
        key = (j, what)
        if self._limiter.allow(key, time.monotonic()):
            log.warning("node %d: %s towards %d (further ones only counted)", self.id, what, j)

    # ---- receiving -------------------------------------------------------------------------------------------
    def _log_rejections(self) -> None:
        now = time.monotonic()
        for r in self.protocol.drain_rejections():
            self._log_rejection(r, now)

    def _log_rejection(self, r: Rejection, now: float) -> None:
        if self._limiter.allow((r.src if r.src is not None else "?", r.reason), now):
            skipped = self._limiter.take_suppressed()
            log.warning("node %d: rejected message from %s: %s %s (further ones only counted%s)",
                        self.id, "?" if r.src is None else r.src, r.reason, r.detail,
                        f"; {skipped} not logged before this" if skipped else "")

    async def _decode(self, inbound: Inbound) -> wire.Message:
        if inbound.nbytes > _DECODE_IN_THREAD:  # the finite check reads every value
            return await asyncio.to_thread(wire.decode, inbound.frames, max_bytes=self.max_bytes, dim=self.dim)
        return wire.decode(inbound.frames, max_bytes=self.max_bytes, dim=self.dim)

    async def _receive_loop(self) -> None:
        while True:
            inbound = await self.transport.recv()
            error = getattr(inbound, "error", None)
            if self.away:  # departed (churn): nothing is read, answered or counted
                continue
            try:
                if error is not None:
                    self.protocol.reject(None, error[0], error[1])
                else:
                    msg = await self._decode(inbound)
                    peer = self.peers.get(msg.src)
                    before = peer.copy if peer is not None else None
                    now = time.monotonic()
                    self._post(self.protocol.receive(msg, inbound.user_id, now))
                    if peer is not None and peer.copy is not before:
                        self._copy_time[msg.src] = now
                        if self._clock is not None and peer.round >= 1:
                            self._clock.observe(msg.src, peer.round, now)
            except DecodeError as exc:
                self.protocol.reject(None, exc.reason, exc.detail)
            except Exception:  # never let a peer's bytes kill the node
                self.protocol.reject(None, "internal", "unexpected error handling a message")
                self._internal_logged += 1
                if self._internal_logged <= 3:
                    log.exception("node %d: unexpected error handling a message (traceback logged for the "
                                  "first 3 only)", self.id)
            self._log_rejections()
            self._changed.set()

    # ---- time and waiting ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        down_since = getattr(self.transport, "down_since", None)
        links = {j: down_since(j) for j in self.neighbours} if down_since is not None else None
        before = {j: p.down for j, p in self.peers.items()}
        self._post(self.protocol.tick(time.monotonic(), links))
        for j, p in self.peers.items():
            if p.down and not before[j]:
                log.warning("node %d: neighbour %d is down (no link and no message for %.1fs); "
                            "skipping it until it returns", self.id, j, self.net.dead_after)
            elif before[j] and not p.down:
                log.info("node %d: neighbour %d is back", self.id, j)
        self._log_rejections()

    def _alive(self, j: int) -> bool:
        return self.protocol.alive(j, time.monotonic())

    async def _wait(self, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._tick()
            if cond():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    # ---- handshake -------------------------------------------------------------------------------------------
    async def _handshake(self, resume: bool = False) -> None:
        self._post(self.protocol.hellos(time.monotonic()))

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

    # ---- the round loop --------------------------------------------------------------------------------------
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

    def _merge(self, t: int, z: np.ndarray, included: list[int], copies: Mapping[int, np.ndarray],
               weights: Mapping[int, float] | None = None, own_update: np.ndarray | None = None
               ) -> tuple[np.ndarray, dict[str, Any], list[int]]:
        """x = z + F(proposals), never non-finite. Runs in the executor.

        A contribution that would make the model non-finite is dropped (and returned, to be
        counted): public copies are bounded in magnitude, but a sum of large finite values can
        still overflow float32.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            x, stats = self._combine(t, z, included, copies, weights, own_update)
            if np.isfinite(x).all():
                return x, stats, []
            w_of = weights or self.weights
            bad = [j for j in included
                   if not np.isfinite(np.float32(w_of[j]) * (copies[j] - z)).all()]
            kept = [j for j in included if j not in bad]
            x, stats = self._combine(t, z, kept, copies, weights, own_update)
            if not np.isfinite(x).all():
                return z, {}, included
        return x, stats, bad

    def _combine(self, t: int, z: np.ndarray, included: list[int], copies: Mapping[int, np.ndarray],
                 weights: Mapping[int, float] | None = None, own_update: np.ndarray | None = None
                 ) -> tuple[np.ndarray, dict[str, Any]]:
        if not included:
            return z, {}
        w_of = weights or self.weights
        w = np.array([w_of[j] for j in included], dtype=np.float64)
        if self.filter is None:
            update = np.zeros_like(z)
            for j, wj in zip(included, w, strict=True):
                update += np.float32(wj) * (copies[j] - z)
            return z + update, {}
        from .filters import FilterContext, Proposals

        u = np.empty((len(included), z.shape[0]), dtype=np.float32)
        for k, j in enumerate(included):
            np.subtract(copies[j], z, out=u[k])
        ctx = FilterContext(node=self.id, round=t, rounds=self.rounds, own=z,
                            own_update=np.subtract(z, self.x, dtype=np.float32) if own_update is None else own_update,
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

    async def _merge_and_record(self, t: int, crafted: Crafted, included: list[int], skipped: list[int],
                                t0: float, times: dict[str, float], mix: Mapping[int, float] | None = None,
                                **fields: Any) -> None:
        """Steps 4 and after of a round (sync) or tick (async): filter and merge, evaluate,
        checkpoint, then emit the record (``times`` and ``fields`` are the caller's part of it).
        ``mix``: the mixing weights of this merge (async staleness); ``None``: W_ij."""
        t_merge0 = time.perf_counter()
        # The copies are replaced (never modified in place) by the receiver: this mapping is a
        # consistent view for the merge thread.
        copies = {j: self.peers[j].copy for j in included}
        self.x, filter_stats, dropped = await self._in_executor(self._merge, t, crafted.own, included,
                                                                copies, mix)
        if dropped:
            self.merge_dropped += len(dropped)
            for j in dropped:
                self.protocol.reject(j, "nonfinite-merge", f"round {t}: contribution would make the model non-finite")
            self._log_rejections()
        t_merge = time.perf_counter()
        due = t % self.eval_every == 0 or t == self.rounds
        if self.timing is not None:  # an adversary at its own rate (p2pfl.timing): measured once, not
            due = t == self.rounds   # at every one of its announcements (that would throttle it)
        metrics = await self._in_executor(self._evaluate, self.x) if self._evaluate and due else {}
        t_eval = time.perf_counter()
        self._worked_after = t_eval - t_merge0  # merge and evaluation (the work after announcing)
        record: dict[str, Any] = {
            "round": t,
            "tick": t,
            "node": self.id,
            "role": self.role,
            "wall": round(t_eval - self._t_start + self.wall_offset, 4),
            **metrics,
            "heard": len(included),
            "skipped": skipped,
            **fields,
            "rejected": dict(self.rejected),
            "time": {**times, "merge": round(t_merge - t_merge0, 4), "eval": round(t_eval - t_merge, 4),
                     "round": round(t_eval - t0, 4)},
        }
        faults = getattr(self.transport, "fault_counts", None)
        if faults:  # injected network faults on this node's outgoing links, so far
            record["faults"] = {k: v for k, v in faults.items() if v}
        if filter_stats:
            record["filter"] = filter_stats
        if crafted.info:
            record["attack"] = crafted.info
        await self._checkpoint(False)  # before the record: a record never outruns its checkpoint
        self.history.append(record)
        if self._on_record is not None:
            self._on_record(record)

    async def _round(self, t: int) -> None:
        t0 = time.perf_counter()
        self.protocol.begin_round(t, time.monotonic())
        crafted = await self._in_executor(self.behaviour.craft, self._view(t))
        t_work = time.perf_counter()
        await self._slow_down(t_work - t0)
        t_train = time.perf_counter()
        self._post(self.protocol.announce(t, crafted.announce))
        self.protocol.wait_since = time.monotonic()  # silence is measured from here
        complete = await self._wait(lambda: not self.protocol.waiting_for(t), self.round_timeout)
        t_wait = time.perf_counter()
        included = self.protocol.included(t)
        skipped = [j for j in self.neighbours if j not in included]
        if not complete:
            log.warning("node %d: round %d timed out after %.1fs waiting for %s; skipping them",
                        self.id, t, self.round_timeout, skipped)
        elif skipped:
            log.info("node %d: round %d without %s (down)", self.id, t, skipped)
        await self._merge_and_record(t, crafted, included, skipped, t0, {
            "train": round(t_work - t0, 4), "slow": round(t_train - t_work, 4), "wait": round(t_wait - t_train, 4)})

    async def _slow_down(self, worked: float) -> None:
        """A node of speed s < 1 takes 1/s as long per tick: after crafting, before it announces
        (so the network sees a slow machine), it sleeps (1/s - 1) x its work of the tick: this
        craft plus the previous tick's merge and evaluation (the work after announcing), in wall
        time as this node saw it (in-process, waiting for a shared worker thread is part of it:
        that is how long the tick takes here, and it is what a slow machine stretches)."""
        worked += self._worked_after
        self._worked_after = 0.0
        if self.speed < 1.0 and worked > 0:
            await asyncio.sleep((1.0 / self.speed - 1.0) * worked)

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
        requests while anybody may need one. A neighbour still missing is treated as having a
        gap (its last delta may have been lost) and asked for a snapshot.
        """
        self.round = self.rounds
        self.protocol.finishing(time.monotonic())
        await self._wait(lambda: not self.protocol.waiting_for(self.rounds), self.round_timeout)
        await self._checkpoint(True)
        self._post(self.protocol.done_messages(time.monotonic()))
        await self._wait(lambda: all(p.done or not self._alive(j) for j, p in self.peers.items()),
                         self.round_timeout)

    async def _catch_up(self, target: int) -> None:
        """A node that missed rounds adopts its neighbours' current models before it trains.

        Its own model is from before the gap; training on it and mixing once would leave it
        W_ii of a stale model. Instead, once the snapshots requested by the fast-forward are
        in (bounded by the round timeout), x becomes the W-weighted mean of the fresh copies.
        """
        def fresh(p: Peer) -> bool:
            return p.round >= target - 1

        waiting = [j for j, p in self.peers.items() if p.hello and self._alive(j)]
        await self._wait(lambda: all(fresh(self.peers[j]) for j in waiting), self.round_timeout)
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
        Cancelling the task stops the node: its training is interrupted at the next batch and
        every task it started is cancelled and awaited.
        """
        stop = getattr(self.trainer, "stop", None)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                workers = self._workers = [tg.create_task(self._receive_loop(), name=f"node{self.id}-recv")]
                for j in self.neighbours:
                    queue: asyncio.Queue[wire.Message] = asyncio.Queue(maxsize=self.net.send_queue)
                    self._outbox[j] = queue
                    workers.append(tg.create_task(self._sender(j, queue), name=f"node{self.id}-send{j}"))
                try:
                    self._t_start = time.perf_counter()
                    await self._handshake(resume)
                    target, requests = self.protocol.fast_forward(start_round, self.rounds, resume,
                                                                  time.monotonic())
                    if target > start_round:
                        log.info("node %d: neighbours are at round %d; resuming there (rounds %d..%d missed)",
                                 self.id, target, start_round, target - 1)
                    self._post(requests)
                    if self.asynchronous:
                        if await self._run_async(target, workers, resume):
                            await self._finish_async()
                            await self._flush(max(self.net.linger_ms / 1000, 0.1))
                    else:
                        if target > start_round:
                            await self._catch_up(target)
                        for t in range(target, self.rounds + 1):
                            await self._round(t)
                        await self._finish()
                        await self._flush(max(self.net.linger_ms / 1000, 0.1))
                finally:
                    if stop is not None:
                        stop.set()  # a training thread still running stops at its next batch
                    for task in workers:
                        task.cancel()
        finally:
            self._outbox.clear()
            self.stopped = True
            self._tg = None
            if self._own_transport:
                self.transport.close()
        return self.x


__all__ = ["LogLimiter", "Node", "settings_difference"]
