"""Network fault injection: per-link seeded loss, duplication, reordering and delay.

:class:`FaultyTransport` is a :class:`~p2pfl.transport.Transport` whose ``send`` applies a
:class:`LinkFaults` to every outbound message before it reaches the socket, so a run (or a
test) can be made to go over a lossy, slow, duplicating or reordering network while every
byte still travels over real ZeroMQ sockets. Only the sending side is faulty: each directed
link i -> j is faulted by i's transport.

Semantics, per message whose kind is in ``LinkFaults.kinds`` (other messages, and frames
whose header does not parse, are sent untouched and at once):

- **loss**: the message is dropped; ``send`` still returns True (a lost datagram looks sent).
  A ``drop(src, dst, kind, round)`` hook returning True drops it too (targeted, deterministic).
- **duplicate**: the message is delivered twice, back to back, with identical bytes.
- **delay_ms / jitter_ms**: it leaves after ``delay_ms`` plus a uniform ``[0, jitter_ms)``;
  ``link_delay_ms`` adds a fixed delay of its own to named directed links (slow links).
  Delay and jitter alone never reorder a link: a message never overtakes an earlier one.
- **reorder**: it is held back and delivered right after the *next* message on the same
  link, or, if no message follows in time, after an extra uniform ``[0, hold_ms)``.

Every decision draws from the link's own generator,
``default_rng(SeedSequence([seed, src, dst]))``, a fixed five draws per faultable message,
so a run is reproducible whatever order links are used in, and raising ``loss`` with the
same seed drops a superset of the messages dropped before.

A message that must wait (delayed, duplicated, held) is copied to bytes first: the caller's
frames are zero-copy views of arrays it may change once ``send`` returns. The waiting
messages of a link are sent by one background task per link owned by the transport (so at
most one task per neighbour); the total number and size of waiting messages is bounded
(``max_pending``, ``max_pending_bytes``) and a message over the bound is dropped and counted
as ``overflow``. :meth:`FaultyTransport.aclose` gives waiting messages up to ``linger_ms`` to
leave, then cancels and awaits the tasks; :meth:`FaultyTransport.close` (synchronous) cancels
them at once. Both are idempotent.

Counters (``FaultyTransport.fault_counts``): ``dropped`` (loss and hook), ``duplicated``,
``delayed``, ``reordered`` (messages held back), ``overflow`` (over the pending bound) and
``discarded`` (still waiting when the transport closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .transport import Transport
from .wire import KINDS, MAX_HEADER_BYTES

log = logging.getLogger(__name__)

DropHook = Callable[[int, int, str, int], bool]
COUNTERS = ("dropped", "duplicated", "delayed", "reordered", "overflow", "discarded")


@dataclass(frozen=True, kw_only=True)
class LinkFaults:
    """What the network does to the messages of every link (see the module docstring).

    Probabilities are per message; times are in milliseconds. ``seed`` seeds each directed
    link's generator together with its end points. ``hold_ms`` bounds how long a reordered
    message waits for a successor (``None``: ``max(50, 2 * (delay_ms + jitter_ms))``).
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    link_delay_ms: tuple[tuple[int, int, float], ...] = ()  # (src, dst, extra ms) per directed link
    kinds: tuple[str, ...] = KINDS
    drop: DropHook | None = field(default=None, compare=False)
    seed: int = 0
    hold_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"LinkFaults.{name}: {value!r} is invalid; a probability in [0, 1]")
        for name in ("delay_ms", "jitter_ms", "hold_ms"):
            value = getattr(self, name)
            if value is None and name == "hold_ms":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < float("inf"):
                raise ValueError(f"LinkFaults.{name}: {value!r} is invalid; a finite number >= 0")
        links = tuple(tuple(x) for x in self.link_delay_ms)
        for link in links:
            if (len(link) != 3 or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in link[:2])
                    or isinstance(link[2], bool) or not isinstance(link[2], int | float)
                    or not 0.0 <= link[2] < float("inf")):
                raise ValueError(f"LinkFaults.link_delay_ms: {link!r} is invalid; (src, dst, finite ms >= 0)")
        object.__setattr__(self, "link_delay_ms", links)
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"LinkFaults.kinds: {unknown!r} are not message kinds; allowed {KINDS}")
        object.__setattr__(self, "kinds", kinds)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"LinkFaults.seed: {self.seed!r} is invalid; an integer >= 0")
        if self.drop is not None and not callable(self.drop):
            raise ValueError("LinkFaults.drop: must be callable (src, dst, kind, round) -> bool")

    @property
    def active(self) -> bool:
        """Whether these settings can change any message at all."""
        return bool(self.loss or self.duplicate or self.reorder or self.delay_ms or self.jitter_ms
                    or any(ms for _s, _d, ms in self.link_delay_ms) or self.drop is not None) and bool(self.kinds)

    def link_delay(self, src: int, dst: int) -> float:
        """The extra delay of the directed link src -> dst, in milliseconds."""
        return sum(ms for s, d, ms in self.link_delay_ms if s == src and d == dst)

    @property
    def hold(self) -> float:
        """Longest wait of a reordered message for its successor, in milliseconds."""
        return self.hold_ms if self.hold_ms is not None else max(50.0, 2.0 * (self.delay_ms + self.jitter_ms))

    def link_rng(self, src: int, dst: int) -> np.random.Generator:
        """The generator of the directed link src -> dst (independent of every other link)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, src, dst]))


class _Link:
    """The delay line of one directed link: waiting messages in send order, one held back."""

    __slots__ = ("rng", "extra_ms", "queue", "held", "held_until", "last_due", "lock", "wake", "task")

    def __init__(self, rng: np.random.Generator, extra_ms: float = 0.0) -> None:
        self.rng = rng
        self.extra_ms = extra_ms  # this link's own delay (LinkFaults.link_delay_ms)
        self.queue: deque[tuple[float, list[bytes]]] = deque()  # (due on the loop clock, frames)
        self.held: list[list[bytes]] = []  # a reordered message (and its duplicate)
        self.held_until = 0.0
        self.last_due = float("-inf")
        self.lock = asyncio.Lock()  # one socket send at a time, in request order
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


def _peek(frames: Sequence[Any]) -> tuple[str, int] | None:
    """(kind, round) from a header frame, or None when it is not a readable header."""
    if not frames:
        return None
    try:
        head = memoryview(getattr(frames[0], "buffer", frames[0]))
        if head.nbytes > MAX_HEADER_BYTES:
            return None
        header = msgpack.unpackb(head, raw=False, max_array_len=4096, max_map_len=64, max_str_len=4096,
                                 max_bin_len=4096, max_ext_len=0)
    except Exception:  # any malformed header: not ours to judge, send it untouched
        return None
    if not isinstance(header, dict):
        return None
    kind, rnd = header.get("kind"), header.get("round")
    if type(kind) is not str or type(rnd) is not int:
        return None
    return kind, rnd


def _copy(frames: Sequence[Any]) -> list[bytes]:
    return [bytes(getattr(f, "buffer", f)) for f in frames]


class FaultyTransport(Transport):
    """A :class:`Transport` that drops, duplicates, delays and reorders what it sends.

    Takes the arguments of :class:`Transport` plus ``faults``; ``max_pending`` and
    ``max_pending_bytes`` bound the messages waiting in the delay lines of all links.
    """

    def __init__(self, node_id: int, listen: str, *, faults: LinkFaults, max_pending: int = 1024,
                 max_pending_bytes: int = 256 << 20, **kwargs: Any) -> None:
        super().__init__(node_id, listen, **kwargs)
        if not isinstance(faults, LinkFaults):
            raise TypeError(f"faults must be a LinkFaults, not {type(faults).__name__}")
        self.faults = faults
        self.fault_counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._pending = 0
        self._pending_bytes = 0
        self._links: dict[int, _Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- sending ----------------------------------------------------------------------------
    def _link(self, dst: int) -> _Link:
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = _Link(self.faults.link_rng(self.node_id, dst),
                                            self.faults.link_delay(self.node_id, dst))
        return link

    async def send(self, dst: int, frames: Sequence[Any]) -> bool:
        """Send through the faulty link to ``dst``; True unless a real send failed at once."""
        f = self.faults
        peek = _peek(frames) if f.active and not self._closed and dst in self._push else None
        if peek is None or peek[0] not in f.kinds:
            return await super().send(dst, frames)
        kind, rnd = peek
        link = self._link(dst)
        u_loss, u_dup, u_reorder, u_jitter, u_hold = link.rng.random(5)  # always five: streams stay aligned
        if u_loss < f.loss or (f.drop is not None and f.drop(self.node_id, dst, kind, rnd)):
            self.fault_counts["dropped"] += 1
            return True
        copies = 2 if u_dup < f.duplicate else 1
        held = u_reorder < f.reorder and not link.held
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait = (f.delay_ms + link.extra_ms + f.jitter_ms * u_jitter) / 1000.0
        if copies == 1 and not held and wait <= 0.0 and not link.queue and not link.lock.locked():
            self._release_held(link, now)  # this is the message a held one was waiting for
            async with link.lock:  # free, so taken without yielding: nothing can overtake us
                return await super().send(dst, frames)
        data = _copy(frames)
        size = sum(len(b) for b in data) * copies
        if (self._pending + copies > self._max_pending
                or self._pending_bytes + size > self._max_pending_bytes):
            self.fault_counts["overflow"] += 1
            return True
        self._pending += copies
        self._pending_bytes += size
        if copies == 2:
            self.fault_counts["duplicated"] += 1
        if wait > 0.0:
            self.fault_counts["delayed"] += 1
        due = max(now + wait, link.last_due)
        if held:
            self.fault_counts["reordered"] += 1
            link.held = [data] * copies
            link.held_until = due + f.hold * u_hold / 1000.0
        else:
            link.last_due = due
            link.queue.extend((due, data) for _ in range(copies))
            self._release_held(link, due)
        link.wake.set()
        if link.task is None:
            link.task = loop.create_task(self._pump(dst, link), name=f"p2pfl-faults-{self.node_id}-{dst}")
            self._tasks.add(link.task)
            link.task.add_done_callback(self._tasks.discard)
        return True

    def _release_held(self, link: _Link, due: float) -> None:
        """Queue the held message (if any) behind everything queued so far."""
        if link.held:
            due = max(due, link.last_due)
            link.last_due = due
            link.queue.extend((due, data) for data in link.held)
            link.held = []
            link.wake.set()

    async def _pump(self, dst: int, link: _Link) -> None:
        """Send the link's waiting messages in order, each at its due time."""
        loop = asyncio.get_running_loop()
        while True:
            if link.queue:
                due, data = link.queue[0]
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                if not self._closed:
                    try:
                        async with link.lock:  # a failure is counted by Transport (send_dropped)
                            await super().send(dst, data)
                    except Exception as exc:  # e.g. closed under us: never let the link's task die
                        log.warning("node %d: delayed send to %d failed: %r", self.node_id, dst, exc)
                link.queue.popleft()  # only now: while it is being sent, nothing may take the fast path
                self._pending -= 1
                self._pending_bytes -= sum(len(b) for b in data)
            elif link.held:
                timeout = link.held_until - loop.time()
                if timeout <= 0:
                    self._release_held(link, link.held_until)
                    continue
                link.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await link.wake.wait()
            else:
                link.wake.clear()
                await link.wake.wait()

    # ---- life cycle -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages waiting in the delay lines (queued or held back)."""
        return self._pending

    def _discard(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for link in self._links.values():
            link.task = None
            waiting = len(link.queue) + len(link.held)
            self.fault_counts["discarded"] += waiting
            link.queue.clear()
            link.held = []
        self._pending = 0
        self._pending_bytes = 0

    def close(self, linger_ms: int | None = None) -> None:
        """Cancel the delay-line tasks (messages still waiting are discarded), close the sockets."""
        self._discard()
        super().close(linger_ms)

    async def aclose(self, linger_ms: int | None = None) -> None:
        """Give waiting messages up to ``linger_ms`` to leave, cancel and await the tasks, close.

        Idempotent; ``linger_ms`` defaults to the transport's linger and also applies to the sockets.
        """
        if not self._closed and self._pending:
            limit = (self._linger if linger_ms is None else linger_ms) / 1000.0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + limit
            while self._pending and loop.time() < deadline:
                await asyncio.sleep(min(0.01, max(0.0, deadline - loop.time())))
        tasks = list(self._tasks)
        self._discard()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        super().close(linger_ms)

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


__all__ = ["COUNTERS", "DropHook", "FaultyTransport", "LinkFaults"]
