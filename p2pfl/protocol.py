"""The gossip protocol of one node as a sans-IO state machine (docs/protocol.md).

:class:`GossipProtocol` holds everything the protocol knows: the public copies this node
announced (per neighbour), its copies of every neighbour x̂_j with their rounds, sequence
numbers, pending deltas, gaps and snapshot requests, handshakes and liveness. It is fed

* decoded messages (:meth:`receive`) and decode failures (:meth:`reject`),
* the node's own announcements (:meth:`announce`),
* clock ticks with the links' state (:meth:`tick`), and
* send results (:meth:`send_failed`, :meth:`sent`),

and it returns the messages to send. Rejections are counted in :attr:`rejected` and queued
as :class:`Rejection` events (:meth:`drain_rejections`) for the driver to log. It never
touches a socket, a clock (``now`` is always passed in), a thread or a logger, so every
transition is a plain function call in tests (``tests/test_protocol.py``) and the asyncio
:class:`~p2pfl.node.Node` is a thin driver around it.

Recovery, by design
-------------------
* A **gap** (a later delta, a checksum mismatch, a copy invalidated by a restarted
  neighbour) or a **silent neighbour** (no message for the current round ``gap_grace``
  seconds after the node started waiting for it) makes the node ask that neighbour for a
  snapshot. The request carries the round and checksum of the copy it holds; the neighbour
  answers with a snapshot only when its public copy differs, so asking a neighbour that is
  merely slow costs a small message per ``gap_grace``.
* A **failed send** (the transport gave up) marks the link; once the link is up again the
  node pushes a snapshot of its public copy to that neighbour (the neighbour accepts an
  unrequested snapshot only while it waits for that neighbour's round).
* **Bounded work**: at most one snapshot in flight per neighbour (extra requests are
  rejected as ``busy`` and counted), at most ``window + 1`` pending deltas per neighbour,
  at most one hello reply per neighbour per ``gap_grace``.

Hostile peers
-------------
A message's sequence number must exceed the last one *accepted* from that neighbour, and
only messages whose content checks out move it: a delta whose result matches its checksum,
a snapshot that was asked for (or that repairs a copy the node is waiting for), an accepted
hello. Requests and ``done`` carry no state that a replay could corrupt and never move it,
so a forged message with a huge sequence number cannot lock the real neighbour out. A
snapshot is validated like a delta (round window, checksum, magnitude) and must have been
asked for. Values beyond ``max_abs`` are rejected (``magnitude``): no float32 model trains
with weights there, and they are how an overflow to Inf would start.

Asynchronous mode
-----------------
With ``asynchronous=True`` (``mode = "async"``) a delta's round is the sender's tick and
nodes run at their own pace, so the round checks against this node's own round are off:
a delta or snapshot from a neighbour far ahead is accepted, pending deltas are applied as
soon as their base matches the copy (not only up to the current round), a snapshot is
taken whenever it is newer than the copy (a neighbour whose send failed pushes one), and
there is no silent-neighbour rule (a slow neighbour is not a gap). Gap repair stays: a
broken chain or a checksum mismatch still leads to a snapshot request after ``gap_grace``,
and pending deltas stay bounded (``window + 1`` per neighbour). :meth:`announce` may go to
a subset of the neighbours (``fanout``); then every neighbour gets its own public copy
(``pub_private``) and its own base round (:meth:`announced_round`), so deltas and
checksums stay exact per link.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import wire
from .errors import ProtocolError

MAX_SETTINGS_TEXT = 3500  # the codec caps strings at 4096 bytes
MAX_JSON_DEPTH = 8  # hello payloads are flat maps; anything deeper is refused before parsing
DONE_ASKS = 5  # unanswered dones after which a silent neighbour is taken to have finished


class _Late(Exception):
    """A requested snapshot that arrives after a delta brought the copy to the same round."""


@dataclass(frozen=True)
class Rejection:
    """A message that was refused: who claimed to send it (if known), why, and a detail."""

    src: int | None
    reason: str
    detail: str = ""
    authenticated: bool = False  # ``src`` is the key's node id, not just a claim


@dataclass
class Peer:
    """Receiver-side state of one neighbour j (and the sender-side bits towards it)."""

    copy: np.ndarray  # x̂_j
    round: int = 0  # round of the announcement x̂_j reflects; -1 = invalid, waiting for a snapshot
    last_seq: int = -1
    pending: dict[int, wire.Message] = field(default_factory=dict)  # round -> delta message
    last_delta: np.ndarray | None = None
    gap_since: float | None = None  # a gap is known since then (snapshot wanted)
    asked_at: float = float("-inf")  # when a snapshot was last requested from j
    asked: bool = False  # a request is outstanding: a snapshot from j is welcome
    done: bool = False
    hello: bool = False
    last_seen: float = float("-inf")  # time of the last accepted message
    their_round: int = -1  # the round the neighbour said it was in (hello)
    their_pub_round: int = -1  # the round of the public copy it said it holds of itself (hello)
    refused: str = ""  # why its hello was refused, if it was
    down: bool = False  # considered dead
    down_since: float | None = None  # link state, from the transport
    # Sender side, towards j.
    serving: bool = False  # a snapshot to j is in flight
    resend: bool = False  # a send to j failed: push a snapshot once the link is up
    hello_replied_at: float = float("-inf")
    hello_sent_at: float = float("-inf")  # our hello (repeated until j answers)
    done_sent_at: float = float("-inf")  # our done (repeated until j's done arrives)
    done_asks: int = 0  # dones sent since j last said anything


def _depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if the JSON text nests brackets at most ``limit`` deep (checked before parsing)."""
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_flat_json(text: Any) -> dict[str, Any] | None:
    """A hello's JSON map, or None when it is not a flat-enough JSON object (never raises)."""
    if not isinstance(text, str) or len(text) > 4096 or not _depth_ok(text):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def settings_difference(theirs: Mapping[str, Any], ours: Mapping[str, Any], src: int, here: int,
                        limit: int = 3) -> str:
    """Name the settings that differ, e.g. ``seed differs: 1 at node 2, 0 here``."""
    keys = sorted(set(map(str, theirs)) | set(map(str, ours)))
    diff = [k for k in keys if theirs.get(k) != ours.get(k)]
    parts = [f"{k} differs: {theirs.get(k, 'unset')!r} at node {src}, {ours.get(k, 'unset')!r} here"[:300]
             for k in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    return "; ".join(parts)


class GossipProtocol:
    """The protocol state of node ``node_id`` (see the module docstring).

    Parameters
    ----------
    node_id, exp_id:
        This node and its experiment (messages of other experiments are refused).
    x0:
        The common initial model: every public copy starts there.
    neighbours:
        Graph neighbours.
    window:
        How many rounds ahead of the current one a delta is buffered.
    compression:
        Fraction of coordinates a delta carries (top-k with implicit error feedback); 0: dense.
    gap_grace:
        Seconds a gap or a silent neighbour is tolerated before a snapshot is requested
        (and between repeated requests).
    dead_after:
        Seconds a neighbour's link must be down, with nothing heard, before it is skipped.
    max_abs:
        Largest magnitude accepted in a public copy.
    config_digest, settings, data_identity:
        What the handshake compares (with a message naming what differs).
    seq:
        The first sequence number (strictly increasing across restarts of this node).
    data_difference:
        ``f(theirs, ours, src) -> str`` naming how two data identities differ ("" if equal).
    """

    def __init__(
        self,
        *,
        node_id: int,
        exp_id: str,
        x0: np.ndarray,
        neighbours: Sequence[int],
        window: int = 4,
        compression: float = 0.0,
        gap_grace: float = 1.0,
        dead_after: float = 3.0,
        max_abs: float = 1e6,
        config_digest: str = "",
        settings: Mapping[str, Any] | None = None,
        data_identity: Mapping[str, Any] | None = None,
        data_difference: Callable[[Any, Mapping[str, Any], int], str] | None = None,
        seq: int = 0,
        asynchronous: bool = False,
        keep_last_delta: bool = True,
    ) -> None:
        self.id = node_id
        self.asynchronous = asynchronous
        #: Keep each neighbour's last delta (:attr:`Peer.last_delta`, a model size per neighbour,
        #: read by attacks through NodeView.last_deltas); off for nodes that never read it.
        self.keep_last_delta = keep_last_delta
        self.exp_id = exp_id
        self.neighbours = tuple(sorted(neighbours))
        self.window = window
        self.compression = compression
        self.gap_grace = gap_grace
        self.dead_after = dead_after
        self.max_abs = max_abs
        self.config_digest = config_digest
        self.settings = dict(settings or {})
        self.data_identity = dict(data_identity or {})
        self._data_difference = data_difference
        x0 = np.ascontiguousarray(x0, dtype=np.float32)
        self.dim = int(x0.shape[0])
        self.x0_sum = wire.checksum(x0)
        # Sender side: the public copy each neighbour holds of us. Honest nodes share one array
        # for every neighbour; an equivocating behaviour gets private copies per neighbour.
        self.pub_shared = x0.copy()
        self.pub_private: dict[int, np.ndarray] = {}
        self.pub_round = 0
        # Round of the copy towards j when it differs from pub_round (announcements to a subset).
        self.pub_rounds: dict[int, int] = {}
        self.seq = seq
        self.peers: dict[int, Peer] = {j: Peer(copy=x0.copy()) for j in self.neighbours}
        self.round = 0
        self.wait_since: float | None = None  # when the current round's wait began
        self.finished = False  # this node said done: it answers a neighbour's done with its own
        self.rejected: dict[str, int] = {}
        self._rejections: list[Rejection] = []
        self.max_events = 1024  # rejections kept for the driver between two drains

    # ---- public copies and messages --------------------------------------------------------------
    def announced_to(self, j: int) -> np.ndarray:
        """The model neighbour j holds as ours (our public copy towards j)."""
        return self.pub_private.get(j, self.pub_shared)

    def announced_round(self, j: int) -> int:
        """The round (tick) of our public copy towards j."""
        return self.pub_rounds.get(j, self.pub_round)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def message(self, kind: str, dst: int, *, round: int, base: int = -1, checksum: bytes = b"",
                tensors: Mapping[str, np.ndarray] | None = None, info: Mapping[str, Any] | None = None
                ) -> wire.Message:
        return wire.Message(kind=kind, exp=self.exp_id, src=self.id, dst=dst, round=round,
                            seq=self._next_seq(), base=base, checksum=checksum,
                            tensors=tensors or {}, info=info or {})

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

    def announce(self, t: int, announce: np.ndarray | Mapping[int, np.ndarray],
                 targets: Sequence[int] | None = None) -> list[wire.Message]:
        """Round t's deltas towards every live neighbour; the public copies move to round t.

        A neighbour known to be down gets nothing (a send would only wait for the send
        timeout); its copy has a gap, which a snapshot repairs when it is back.
        ``targets``: announce to these neighbours only (async fan-out); the others' copies
        stay where they are.
        """
        if targets is not None:
            return self._announce_to(t, announce, targets)
        base = self.pub_round
        if self.pub_rounds:  # earlier announcements went to subsets: per-neighbour bases
            return self._announce_to(t, announce, self.neighbours)
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
        out = []
        for dsts, tensors, chk in batches:
            for j in dsts:
                if self.alive(j):
                    out.append(self.message("delta", j, round=t, base=base, checksum=chk, tensors=tensors))
                else:
                    self.peers[j].resend = True
        return out

    def _announce_to(self, t: int, announce: np.ndarray | Mapping[int, np.ndarray],
                     targets: Sequence[int]) -> list[wire.Message]:
        """Deltas to ``targets`` only, each against its own public copy and base round."""
        for j in self.neighbours:  # from now on every neighbour has its own copy and round
            if j not in self.pub_private:
                self.pub_private[j] = self.pub_shared.copy()
            self.pub_rounds.setdefault(j, self.pub_round)
        out = []
        for j in sorted(set(targets)):
            if j not in self.peers:
                continue
            pub = self.pub_private[j]
            base = self.pub_rounds[j]
            target = announce if isinstance(announce, np.ndarray) else announce.get(j, pub)
            tensors = self._delta_tensors(target, pub)
            self.pub_rounds[j] = t
            if self.alive(j):
                out.append(self.message("delta", j, round=t, base=base, checksum=wire.checksum(pub),
                                        tensors=tensors))
            else:
                self.peers[j].resend = True
        self.pub_round = t
        return out

    def snapshot(self, j: int) -> wire.Message:
        """A snapshot of our public copy towards j (a private copy: the live array changes)."""
        pub = self.announced_to(j).copy()
        self.peers[j].serving = True
        return self.message("snapshot", j, round=self.announced_round(j), checksum=wire.checksum(pub),
                            tensors={"model": pub})

    def snapshot_request(self, j: int, now: float) -> wire.Message:
        peer = self.peers[j]
        peer.asked_at = now
        peer.asked = True
        have = {"have_round": peer.round}
        if peer.round >= 0:
            have["have_sum"] = wire.checksum(peer.copy)
        return self.message("snapshot_req", j, round=self.round, info=have)

    def sent(self, msg: wire.Message) -> None:
        """A message left (or was handed to the network): a snapshot is no longer in flight."""
        peer = self.peers.get(msg.dst)
        if peer is not None and msg.kind == "snapshot":
            peer.serving = False

    def send_failed(self, msg: wire.Message) -> None:
        """The transport gave up on ``msg``: the neighbour's copy of us may now have a gap."""
        peer = self.peers.get(msg.dst)
        if peer is None:
            return
        if msg.kind == "snapshot":
            peer.serving = False
        if msg.kind in ("delta", "snapshot"):
            peer.resend = True
        elif msg.kind == "snapshot_req":
            peer.asked_at = float("-inf")  # ask again at the next tick

    # ---- rejections ------------------------------------------------------------------------------------
    def reject(self, src: int | None, reason: str, detail: str = "", *, authenticated: bool = False) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if len(self._rejections) < self.max_events:
            self._rejections.append(Rejection(src, reason, detail[:300], authenticated))

    def drain_rejections(self) -> list[Rejection]:
        out, self._rejections = self._rejections, []
        return out

    # ---- receiving ---------------------------------------------------------------------------------------
    def receive(self, msg: wire.Message, user_id: str | None, now: float) -> list[wire.Message]:
        """Check and apply one decoded message; returns the messages to send in reply.

        Anything wrong is rejected (counted, queued for the log) and changes no state.
        """
        authenticated = user_id is not None
        try:
            peer = self._check(msg, user_id)
            return self._handle(peer, msg, now)
        except _Late:
            return []
        except ProtocolError as exc:
            src = msg.src if (not authenticated or user_id == str(msg.src)) else None
            if authenticated and src is None and user_id and user_id.isdigit():
                src = int(user_id)
            self.reject(src, exc.reason, exc.detail, authenticated=authenticated)
            if exc.reason == "handshake" and msg.src in self.peers:
                self.peers[msg.src].refused = exc.detail
            return []

    def _check(self, msg: wire.Message, user_id: str | None) -> Peer:
        if msg.exp != self.exp_id and msg.kind != "hello":  # a hello says *what* differs
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
            if msg.round > self.round + self.window and not self.asynchronous:
                raise ProtocolError("future", f"round {msg.round} while at {self.round}")
            if msg.round in peer.pending:
                raise ProtocolError("duplicate", f"second delta for round {msg.round}")
            if msg.base >= msg.round:
                raise ProtocolError("schema", f"base {msg.base} not before round {msg.round}")
            self._check_magnitude(msg.tensors.get("delta", msg.tensors.get("val")), 2 * self.max_abs)
        elif msg.kind == "snapshot":
            if msg.round > self.round + self.window and not self.asynchronous:
                raise ProtocolError("future", f"snapshot round {msg.round} while at {self.round}")
            if msg.round <= peer.round and peer.round >= 0:
                if peer.asked and msg.round == peer.round:
                    peer.asked = False
                    raise _Late()  # the answer to a request that the delta overtook: not an error
                raise ProtocolError("stale", f"snapshot of round {msg.round}, copy already at {peer.round}")
            # Only a snapshot asked for, or one that repairs a copy this node waits for (a
            # neighbour whose send failed pushes one), is taken; never one from the future.
            # In async mode there is no "future": any snapshot newer than the copy repairs it.
            repairs = self.asynchronous or (peer.round < self.round and msg.round <= self.round)
            if not (peer.asked or repairs):
                raise ProtocolError("unsolicited", f"snapshot of round {msg.round} nobody asked for")
            self._check_magnitude(msg.tensors["model"], self.max_abs)
            if wire.checksum(msg.tensors["model"]) != msg.checksum:
                raise ProtocolError("checksum", "snapshot does not match its checksum")
        elif msg.kind == "hello":
            bad = self._check_hello(msg)
            if bad:
                raise ProtocolError("handshake", bad)
        return peer

    def _check_magnitude(self, arr: np.ndarray | None, bound: float) -> None:
        # max and -min read the payload without the temporary array abs() would allocate
        if arr is not None and arr.size and max(float(arr.max()), -float(arr.min())) > bound:
            raise ProtocolError("magnitude", f"values beyond {bound:g}")

    def _check_hello(self, msg: wire.Message) -> str:
        cfg, x0 = msg.info.get("config"), msg.info.get("x0")
        if cfg != self.config_digest or msg.exp != self.exp_id:
            theirs = parse_flat_json(msg.info.get("settings"))
            if theirs is not None and self.settings:
                named = settings_difference(theirs, self.settings, msg.src, self.id)
                if named:
                    return named
            return (f"settings differ (config digest {str(cfg)[:40]!r} at node {msg.src}, "
                    f"{self.config_digest!r} here)")
        if x0 != self.x0_sum:
            return "initial model x0 differs (different seed or model)"
        if self.data_identity:
            theirs_data = parse_flat_json(msg.info.get("data"))
            if self._data_difference is not None:
                named = self._data_difference(theirs_data, self.data_identity, msg.src)
            elif theirs_data != self.data_identity:
                named = f"data differs at node {msg.src}"
            else:
                named = ""
            if named:
                return named
        return ""

    def hello_info(self, reply: bool = False, j: int | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"config": self.config_digest, "x0": self.x0_sum, "reply": reply,
                                "pub_round": self.pub_round if j is None else self.announced_round(j)}
        if j is not None and self.asynchronous:  # async: the copy towards j, whichever it is
            info["pub_sum"] = wire.checksum(self.announced_to(j))
        elif not self.pub_private:  # with per-neighbour copies there is no single one to compare
            info["pub_sum"] = wire.checksum(self.pub_shared)
        for key, value in (("settings", self.settings), ("data", self.data_identity)):
            if value:
                text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
                if len(text) <= MAX_SETTINGS_TEXT:
                    info[key] = text
        return info

    def hellos(self, now: float = 0.0) -> list[wire.Message]:
        """Hellos to every neighbour; repeated by :meth:`tick` until each one answers."""
        out = []
        for j in self.neighbours:
            self.peers[j].hello_sent_at = now
            out.append(self.message("hello", j, round=self.round, info=self.hello_info(j=j)))
        return out

    def _accept(self, peer: Peer, msg: wire.Message, now: float) -> None:
        peer.last_seq = msg.seq
        peer.last_seen = now
        peer.done_asks = 0

    def _handle(self, peer: Peer, msg: wire.Message, now: float) -> list[wire.Message]:
        j = msg.src
        out: list[wire.Message] = []
        if msg.kind == "delta":
            peer.pending[msg.round] = msg
            while len(peer.pending) > self.window + 1:  # bounded: a stuck chain waits for a snapshot
                del peer.pending[min(peer.pending)]
                self.reject(j, "overflow", "too many unapplied deltas")
            peer.last_seen = now
            peer.done_asks = 0
            self._advance(j, now)
        elif msg.kind == "snapshot":
            peer.copy = np.array(msg.tensors["model"], dtype=np.float32)  # own the memory
            peer.round = msg.round
            peer.gap_since = None
            peer.asked = False
            peer.pending = {r: m for r, m in peer.pending.items() if r > msg.round}
            self._accept(peer, msg, now)
            self._advance(j, now)
        elif msg.kind == "snapshot_req":
            # Stateless and idempotent: it never moves the sequence window (a forged one with a
            # huge number must not lock the real neighbour out); bounded by one in flight.
            have_round, have_sum = msg.info.get("have_round"), msg.info.get("have_sum")
            pub = self.announced_to(j)
            if (have_round == self.announced_round(j) and isinstance(have_sum, bytes)
                    and have_sum == wire.checksum(pub)):
                return []  # its copy is current: nothing to send
            if peer.serving:
                self.reject(j, "busy", "a snapshot to this neighbour is already in flight")
                return []
            out.append(self.snapshot(j))
        elif msg.kind == "done":
            peer.done_asks = 0
            if msg.info.get("finished") is False:  # "still running": it answers our done, not done itself
                return out
            peer.done = True
            if now - peer.done_sent_at >= self.gap_grace:  # j repeats its done: ours may be lost, or
                peer.done_sent_at = now                   # we are still running; say which
                info = {} if self.finished else {"finished": False}
                out.append(self.message("done", j, round=self.round, info=info))
        elif msg.kind == "hello":
            out.extend(self._hello(peer, msg, now))
        return out

    def _hello(self, peer: Peer, msg: wire.Message, now: float) -> list[wire.Message]:
        j = msg.src
        out: list[wire.Message] = []
        self._accept(peer, msg, now)
        peer.their_round = msg.round
        pub_round, pub_sum = msg.info.get("pub_round"), msg.info.get("pub_sum")
        if type(pub_round) is int:
            peer.their_pub_round = pub_round
        peer.down = False
        reply = msg.info.get("reply") is True
        if (not reply and type(pub_round) is int and isinstance(pub_sum, bytes)
                and (pub_round != peer.round or wire.checksum(peer.copy) != pub_sum)):
            # A restarted neighbour whose announced copy is not ours (it resumed from an
            # older checkpoint, or our last delta from it is one it never committed).
            peer.round = -1
            peer.pending.clear()
            peer.gap_since = now
            out.append(self.snapshot_request(j, now))
        peer.hello = True
        peer.refused = ""
        if not reply and now - peer.hello_replied_at >= self.gap_grace:
            peer.hello_replied_at = now  # a (re)started neighbour: answer it (once per grace)
            out.append(self.message("hello", j, round=self.round, info=self.hello_info(reply=True, j=j)))
        return out

    def _advance(self, j: int, now: float) -> None:
        """Apply j's pending deltas that continue its chain, up to the current round."""
        peer = self.peers[j]
        while peer.round >= 0:
            nxt = next((m for r, m in sorted(peer.pending.items())
                        if m.base == peer.round and (r <= self.round or self.asynchronous)), None)
            if nxt is None:
                break
            del peer.pending[nxt.round]
            candidate = peer.copy.copy()  # the copy itself changes only if the result checks out
            wire.apply_delta(candidate, nxt)
            if wire.checksum(candidate) != nxt.checksum:
                self.reject(j, "checksum", f"delta of round {nxt.round} does not give the sender's copy")
                if peer.gap_since is None:  # the chain is broken here: repair with a snapshot
                    peer.gap_since = now
                break
            peer.copy = candidate
            peer.round = nxt.round
            peer.gap_since = None
            peer.last_seq = max(peer.last_seq, nxt.seq)
            if not self.keep_last_delta:
                pass
            elif "delta" in nxt.tensors:
                peer.last_delta = nxt.tensors["delta"]
            else:
                dense = np.zeros(self.dim, dtype=np.float32)
                dense[nxt.tensors["idx"]] = nxt.tensors["val"]
                peer.last_delta = dense
        # Drop what the chain has passed.
        for r in [r for r in peer.pending if r <= peer.round]:
            del peer.pending[r]
        behind = peer.round < self.round or self.asynchronous  # async: a pending delta is a gap
        if behind and (peer.pending or peer.round < 0) and peer.gap_since is None:
            peer.gap_since = now

    # ---- rounds, time and liveness --------------------------------------------------------------------------
    def begin_round(self, t: int, now: float) -> None:
        """The node enters round t (it announces next; then it waits for its neighbours)."""
        self.round = t
        self.wait_since = now
        for j in self.neighbours:
            self._advance(j, now)

    def alive(self, j: int, now: float | None = None) -> bool:
        """False once j's link has been down, with nothing heard from j since, for ``dead_after`` s.

        A message accepted from j after the link went down proves j was alive when it came,
        whatever the socket monitor still says; silence for ``dead_after`` after that message,
        with the link still down, makes j down again (a neighbour that sent a last message and
        left must not count as alive forever). ``now`` defaults to the time of the last
        :meth:`tick`.
        """
        peer = self.peers[j]
        since = peer.down_since
        if since is None:
            return True
        quiet_since = max(since, peer.last_seen)  # no link, and no message since either
        return (self._now if now is None else now) - quiet_since < self.dead_after

    _now: float = 0.0

    def tick(self, now: float, down_since: Mapping[int, float | None] | None = None) -> list[wire.Message]:
        """Time passes: update liveness, request snapshots for gaps and silent neighbours, push
        snapshots over links whose sends failed. Returns the messages to send."""
        self._now = now
        if down_since is not None:
            for j, since in down_since.items():
                if j in self.peers:
                    self.peers[j].down_since = since
        out: list[wire.Message] = []
        for j, peer in self.peers.items():
            alive = self.alive(j, now)
            peer.down = not alive
            if not alive:
                continue
            if peer.resend and not peer.serving and peer.down_since is None:
                peer.resend = False
                out.append(self.snapshot(j))
            link_up = peer.down_since is None
            if not peer.hello and link_up and now - peer.hello_sent_at >= self.gap_grace:
                peer.hello_sent_at = now  # a lost hello (or a neighbour that started late)
                out.append(self.message("hello", j, round=self.round, info=self.hello_info(j=j)))
            if self.finished and not peer.done and link_up and now - peer.done_sent_at >= self.gap_grace:
                if peer.done_asks >= DONE_ASKS:
                    # j answered none of our dones and said nothing else: it finished and left (its
                    # done was lost) while its socket still accepts. A neighbour still running
                    # answers a done with "not finished", so it is never taken for done.
                    peer.done = True
                    continue
                peer.done_sent_at = now
                peer.done_asks += 1
                out.append(self.message("done", j, round=self.round))
            if self.asynchronous:  # no silent-neighbour rule (a slow neighbour is no gap); gaps only
                if (peer.gap_since is not None and now - peer.gap_since >= self.gap_grace
                        and now - peer.asked_at >= self.gap_grace):
                    out.append(self.snapshot_request(j, now))
                continue
            if peer.round >= self.round or self.round <= 0:
                continue
            if peer.gap_since is None and self.wait_since is not None and now - self.wait_since >= self.gap_grace:
                peer.gap_since = self.wait_since  # silent for its round past the grace: a gap
            if (peer.gap_since is not None and now - peer.gap_since >= self.gap_grace
                    and now - peer.asked_at >= self.gap_grace):
                out.append(self.snapshot_request(j, now))
        return out

    def waiting_for(self, t: int) -> list[int]:
        """Live neighbours whose round-t announcement this node does not hold yet."""
        return [j for j, p in self.peers.items() if p.round < t and self.alive(j)]

    def included(self, t: int) -> list[int]:
        """Neighbours whose copy reflects round t (or later): the proposals of round t."""
        return [j for j, p in self.peers.items() if p.round >= t]

    def finishing(self, now: float) -> None:
        """After the last round: every neighbour whose last round is missing has a gap."""
        for peer in self.peers.values():
            if peer.round < self.round and peer.gap_since is None:
                peer.gap_since = now - self.gap_grace  # ask at once

    def done_messages(self, now: float = 0.0) -> list[wire.Message]:
        """``done`` to every live neighbour; repeated by :meth:`tick` until theirs arrives."""
        self.finished = True
        out = []
        for j in self.neighbours:
            if self.alive(j):
                self.peers[j].done_sent_at = now
                out.append(self.message("done", j, round=self.round))
        return out

    def fast_forward(self, start_round: int, rounds: int, resume: bool, now: float) -> tuple[int, list[wire.Message]]:
        """After the handshake: the round to start at, and snapshot requests when resuming.

        A node that (re)joins while its neighbours are further on starts at their round:
        the rounds it missed are gone, and snapshots bring its copies up to date.
        """
        # Async: a node's ticks are its own; it never jumps to its neighbours' tick.
        ahead = [] if self.asynchronous else [p.their_round for p in self.peers.values() if p.hello]
        target = min(max([start_round, *ahead]), rounds + 1)
        out = []
        if resume or target > start_round:
            self.round = max(self.round, target - 1)
            for j, peer in self.peers.items():
                if peer.hello and peer.their_pub_round != peer.round:
                    peer.gap_since = now
                    out.append(self.snapshot_request(j, now))
        return target, out


__all__ = ["GossipProtocol", "Peer", "Rejection", "parse_flat_json", "settings_difference"]
