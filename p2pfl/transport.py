"""ZeroMQ sockets of one node (pyzmq asyncio).

Each node binds exactly one PULL socket at its own address and connects one PUSH socket to
each graph neighbour's address, so a node can only ever send to its neighbours: there is no
socket towards anybody else. Messages are multipart (see :mod:`p2pfl.wire`) and sent
zero-copy. Every socket has explicit high-water marks, linger, a maximum inbound message
size and ZMTP heartbeats on the sending side, and :meth:`Transport.close` is idempotent and never blocks the
event loop (:meth:`Transport.aclose` also waits, off the loop, for a private context to end).

Inbound size: ZMQ_MAXMSGSIZE bounds each *frame* only, so :meth:`Transport.recv` reads a
message frame by frame and refuses one with more than ``max_frames`` frames or more than
``max_message_bytes`` in total: the rest of it is drained without being kept and the
:class:`Inbound` carries the rejection instead of frames. This bounds what *this process's
Python side* keeps, not libzmq's own buffer: libzmq queues a multipart message whole (up to
RCVHWM messages per peer, any number of frames of up to ZMQ_MAXMSGSIZE each) before its
first frame can be read, and a raw ZMTP peer that never sends the final frame grows that
buffer without the application seeing anything. Only CurveZMQ (strangers fail the handshake)
bounds it.

Works over ``tcp://`` and ``ipc://``. CurveZMQ is configured through :class:`CurveKeys`
(see :mod:`p2pfl.security`): the PULL socket is a CURVE server whose ZAP handler admits only
the neighbours' public keys and stamps each frame with the sender's node id as ``User-Id``.
Binding a CURVE server fails unless a ZAP handler is bound in the same context: without one
libzmq would accept any client key.

Liveness: every PUSH socket is monitored (ZMTP heartbeats drop a connection whose peer
stopped answering); :meth:`Transport.down_since` says since when (on the monotonic clock)
a neighbour's link has been down, ``None`` while it is up. The PULL socket has no heartbeat
(see :meth:`Transport.bind`); a receiver that reads nothing for longer than the heartbeat
timeout while a sender's pipe is full looks dead to that sender, which reconnects (what was
in flight is lost, and the protocol's gaps and snapshots repair it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from .errors import TransportError

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_UP_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED
_DOWN_EVENTS = (zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_monitor_ids = itertools.count()


@dataclass(frozen=True)
class CurveKeys:
    """This node's key pair and the public keys of the peers it talks to (z85 bytes)."""

    public: bytes
    secret: bytes
    peers: Mapping[int, bytes]


@dataclass(frozen=True)
class Inbound:
    """A received multipart message and the authenticated sender (ZAP ``User-Id``), if any.

    ``error`` is ``None`` for a message that was kept whole. For one refused while it was
    read it is ``(reason, detail)``, reason ``"frames"`` (more than ``max_frames`` frames)
    or ``"oversized"`` (more than ``max_message_bytes`` in total); ``frames`` is then empty
    (nothing of the message was kept) and ``user_id`` is still the sender's.
    """

    frames: list[zmq.Frame]
    user_id: str | None  # "" when CURVE is on but the frame carries no User-Id (never matches a src)
    error: tuple[str, str] | None = None

    @property
    def nbytes(self) -> int:
        return sum(len(f.buffer) for f in self.frames)


class Transport:
    """One node's sockets: a bound PULL and one PUSH per neighbour.

    Parameters
    ----------
    node_id:
        This node's id.
    listen:
        Address to bind, e.g. ``tcp://127.0.0.1:0`` (random port) or ``ipc:///tmp/n3``.
    context:
        A shared :class:`zmq.asyncio.Context` (nodes in one process share one); a private
        one is created (and terminated on close) when omitted.
    hwm:
        Send/receive high-water mark in messages. Delta messages are large, so it is small.
    linger_ms:
        How long close() waits for queued messages to be delivered.
    max_message_bytes:
        ZMQ_MAXMSGSIZE of the PULL socket: a larger frame disconnects its sender. It also
        bounds a message's total size (all frames): a larger one is drained and refused
        as ``"oversized"``. -1: no limit.
    max_frames:
        Most frames a message may have (the protocol needs a header and at most two
        tensors); a message with more is drained and refused as ``"frames"``.
    send_timeout:
        Seconds a send may wait for room in the queue before it is dropped (and counted).
    curve:
        CurveZMQ keys; ``None`` for plain sockets.
    """

    def __init__(
        self,
        node_id: int,
        listen: str,
        *,
        context: zmq.asyncio.Context | None = None,
        hwm: int = 16,
        linger_ms: int = 1000,
        max_message_bytes: int = -1,
        send_timeout: float = 30.0,
        heartbeat_ms: int = 1000,
        curve: CurveKeys | None = None,
        max_frames: int = 8,
    ) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.node_id = node_id
        self._listen = listen
        self._own_context = context is None
        self._ctx = context or zmq.asyncio.Context()
        self._hwm = hwm
        self._linger = linger_ms
        self._max_bytes = max_message_bytes
        self._max_frames = max_frames
        self._send_timeout = send_timeout
        self._heartbeat = heartbeat_ms
        self._curve = curve
        self._pull: zmq.asyncio.Socket | None = None
        self._push: dict[int, zmq.asyncio.Socket] = {}
        self._monitors: dict[int, zmq.Socket] = {}
        self._down_since: dict[int, float | None] = {}
        self._peers: dict[int, str] = {}
        self.address: str | None = None
        self.sent = 0
        self.send_dropped = 0
        self.recv_refused = 0  # messages refused while read (Inbound.error set)
        self._closed = False
        self._term_thread: threading.Thread | None = None

    # ---- life cycle -----------------------------------------------------------------------
    def _tune(self, sock: zmq.Socket, *, heartbeat: bool = True) -> None:
        sock.setsockopt(zmq.LINGER, self._linger)
        sock.setsockopt(zmq.SNDHWM, self._hwm)
        sock.setsockopt(zmq.RCVHWM, self._hwm)
        if heartbeat and self._heartbeat > 0:
            sock.setsockopt(zmq.HEARTBEAT_IVL, self._heartbeat)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self._heartbeat * 3)
            sock.setsockopt(zmq.HEARTBEAT_TTL, self._heartbeat * 5)

    def bind(self) -> str:
        """Bind the PULL socket; returns the actual address (random tcp port resolved)."""
        if self._pull is not None:
            return self.address or ""
        pull = self._ctx.socket(zmq.PULL)
        # No ZMTP heartbeat on the receiving side: once a sender fills its pipe, backpressure
        # stops libzmq reading that connection, so the heartbeat cannot see the sender's
        # traffic, drops a healthy connection with everything in flight, and libzmq may abort
        # on the reconnect (zeromq/libzmq#3937, #4767). The senders' heartbeats are the
        # liveness signal; TCP keepalive reaps half-open inbound connections.
        self._tune(pull, heartbeat=False)
        pull.setsockopt(zmq.TCP_KEEPALIVE, 1)
        pull.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 60)
        pull.setsockopt(zmq.MAXMSGSIZE, self._max_bytes)
        if self._curve is not None:
            try:
                self._require_zap_handler()
            except TransportError:
                pull.close(linger=0)
                raise
            pull.setsockopt(zmq.CURVE_SERVER, 1)
            pull.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret)
            pull.setsockopt(zmq.CURVE_PUBLICKEY, self._curve.public)
            pull.setsockopt(zmq.ZAP_DOMAIN, b"p2pfl")
        try:
            if self._listen.startswith("tcp://") and self._listen.endswith(":0"):
                host = self._listen[len("tcp://"):-2]
                port = pull.bind_to_random_port(f"tcp://{host}")
                self.address = f"tcp://{host}:{port}"
            else:
                pull.bind(self._listen)
                self.address = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
        except zmq.ZMQError as exc:
            pull.close(linger=0)
            raise TransportError(f"node {self.node_id}: cannot bind {self._listen}: {exc}") from None
        self._pull = pull
        return self.address

    def _require_zap_handler(self) -> None:
        """Fail closed: a CURVE server with no ZAP handler in its context admits any key."""
        probe = self._ctx.socket(zmq.REP)
        try:
            probe.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            return  # the endpoint is taken: a handler is serving it
        finally:
            with contextlib.suppress(zmq.ZMQError):
                probe.unbind(ZAP_ENDPOINT)  # synchronous, unlike close: free the name at once
            probe.close(linger=0)
        raise TransportError(f"node {self.node_id}: CURVE is on but no ZAP handler runs in this context; "
                             "start p2pfl.security.start_authenticator() before binding")

    def connect(self, peers: Mapping[int, str]) -> None:
        """Connect one PUSH socket to each neighbour (ZeroMQ reconnects by itself)."""
        for peer, address in peers.items():
            if peer in self._push:
                continue
            sock = self._ctx.socket(zmq.PUSH)
            self._tune(sock)
            if self._curve is not None:
                key = self._curve.peers.get(peer)
                if key is None:
                    sock.close(linger=0)
                    raise TransportError(f"node {self.node_id}: no public key for neighbour {peer}")
                sock.setsockopt(zmq.CURVE_SERVERKEY, key)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, self._curve.public)
                sock.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret)
            self._watch(peer, sock)  # before connecting, or the first handshake event is missed
            try:
                sock.connect(address)
            except zmq.ZMQError as exc:
                mon = self._monitors.pop(peer, None)
                if mon is not None:
                    mon.close(linger=0)
                sock.close(linger=0)
                raise TransportError(f"node {self.node_id}: cannot connect to {peer} at {address}: {exc}") from None
            self._push[peer] = sock
            self._peers[peer] = address

    def _watch(self, peer: int, sock: zmq.Socket) -> None:
        """Monitor a PUSH socket's connection; polled without a task by :meth:`down_since`."""
        self._down_since[peer] = time.monotonic()  # down until the first handshake succeeds
        addr = f"inproc://p2pfl-monitor-{self.node_id}-{peer}-{next(_monitor_ids)}"
        try:
            sock.monitor(addr, _UP_EVENTS | _DOWN_EVENTS)
            mon = zmq.Context.shadow(self._ctx.underlying).socket(zmq.PAIR)
            mon.setsockopt(zmq.LINGER, 0)
            mon.connect(addr)
        except zmq.ZMQError as exc:  # liveness is an optimisation; the round timeout still applies
            log.warning("node %d: cannot monitor the link to %d (%s); it will never count as down",
                        self.node_id, peer, exc)
            self._down_since[peer] = None
            return
        self._monitors[peer] = mon

    def down_since(self, peer: int) -> float | None:
        """Monotonic time since which the link to ``peer`` is down; ``None`` while it is up."""
        mon = self._monitors.get(peer)
        if mon is not None:
            try:
                while mon.poll(0):
                    event = parse_monitor_message(mon.recv_multipart())["event"]
                    if event & _UP_EVENTS:
                        self._down_since[peer] = None
                    elif event & _DOWN_EVENTS and self._down_since.get(peer) is None:
                        self._down_since[peer] = time.monotonic()
            except (zmq.ZMQError, ValueError, KeyError):
                pass
        return self._down_since.get(peer)

    async def __aenter__(self) -> Transport:
        self.bind()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def close(self, linger_ms: int | None = None) -> None:
        """Close every socket (idempotent, never blocks). Queued messages get ``linger_ms`` to leave.

        A shared context is left to its owner. A private one is destroyed at once when the
        linger is 0; otherwise ``ctx.term()``, which waits for the linger, runs in a
        (non-daemon) thread, so the caller, typically the event loop, is not held up and
        queued messages still get their time. Await :meth:`aclose` to wait for it.
        """
        if self._closed:
            return
        self._closed = True
        linger = self._linger if linger_ms is None else linger_ms
        for peer, sock in self._push.items():
            if peer in self._monitors:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
                self._monitors.pop(peer).close(linger=0)
            sock.close(linger=linger)
        self._push.clear()
        if self._pull is not None:
            self._pull.close(linger=0)
            self._pull = None
        if self._own_context:
            if linger == 0:
                self._ctx.destroy(linger=0)
            else:
                self._term_thread = threading.Thread(target=self._ctx.term, name=f"p2pfl-term-{self.node_id}")
                self._term_thread.start()

    async def aclose(self, linger_ms: int | None = None) -> None:
        """:meth:`close`, then wait off the loop until a private context has terminated."""
        self.close(linger_ms)
        thread = self._term_thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join)

    @property
    def neighbours(self) -> tuple[int, ...]:
        """The peers this transport has (or had, before close) a socket to."""
        return tuple(sorted(self._peers))

    # ---- traffic --------------------------------------------------------------------------
    async def send(self, dst: int, frames: Sequence[Any]) -> bool:
        """Send a multipart message to neighbour ``dst``; False if it was dropped.

        Only neighbours have a socket: sending anywhere else is a programming error.
        """
        sock = self._push.get(dst)
        if sock is None:
            raise KeyError(f"node {self.node_id} has no link to {dst} (not a neighbour)")
        try:
            async with asyncio.timeout(self._send_timeout):
                await sock.send_multipart(frames, copy=False)
        except TimeoutError:
            self.send_dropped += 1
            log.warning("node %d: send to %d timed out after %.1fs; dropped", self.node_id, dst, self._send_timeout)
            return False
        except zmq.ZMQError as exc:
            self.send_dropped += 1
            log.warning("node %d: send to %d failed: %s", self.node_id, dst, exc)
            return False
        self.sent += 1
        return True

    async def recv(self) -> Inbound:
        """Wait for the next message on the PULL socket.

        Frames are read one at a time; once a message has more than ``max_frames`` frames
        or more than ``max_message_bytes`` bytes, its remaining frames are read and
        dropped at once and the returned :class:`Inbound` has ``error`` set and no frames.
        """
        pull = self._pull
        if pull is None:
            raise TransportError(f"node {self.node_id}: recv before bind")
        while True:
            try:
                first = await pull.recv(copy=False)
                break
            except zmq.Again:  # woken without a message (e.g. a refused peer); wait again
                continue
        user_id = None
        if self._curve is not None:
            try:
                user_id = first.get("User-Id") or ""
            except zmq.ZMQError:
                user_id = ""  # unauthenticated: matches no node id, so the message is refused
        frames = [first]
        count = 1
        total = len(first.buffer)
        limit = self._max_bytes if self._max_bytes > 0 else None
        reason: str | None = None
        if limit is not None and total > limit:
            reason, frames = "oversized", []
        while pull.getsockopt(zmq.RCVMORE):
            # The parts of a multipart message arrive together: once the first is read the
            # rest are queued, so a non-blocking read returns an already finished future
            # (no suspension, so a cancellation cannot split a message).
            try:
                part = await pull.recv(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:  # not expected (atomic delivery); wait rather than desynchronise
                part = await pull.recv(copy=False)
            count += 1
            total += len(part.buffer)
            if reason is not None:
                continue  # draining: the part is dropped here
            if count > self._max_frames:
                reason, frames = "frames", []
            elif limit is not None and total > limit:
                reason, frames = "oversized", []
            else:
                frames.append(part)
        if reason is not None:
            self.recv_refused += 1
            bound = f"max {self._max_frames} frames" if reason == "frames" else f"max {limit} bytes"
            return Inbound(frames=[], user_id=user_id, error=(reason, f"{count} frames, {total} bytes ({bound})"))
        return Inbound(frames=frames, user_id=user_id)


__all__ = ["CurveKeys", "Inbound", "Transport"]
