"""Async mode of a :class:`~p2pfl.node.Node`: ticks on the node's own clock, no round barrier.

Each tick: train -> announce (to all neighbours, or ``fanout`` of them drawn at random; an
adversary may time its announcements, :mod:`p2pfl.timing`) -> optionally wait a bounded
time for fresh copies (``net.merge_wait``/``net.merge_quorum``) -> merge with the latest
public copy of every neighbour heard from -> evaluate. Churn entries make a node leave and
rejoin. These methods are a mixin of :class:`~p2pfl.node.Node`, which owns the sockets,
the protocol state and the sync rounds; they use its attributes and helpers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import TransportError

if TYPE_CHECKING:
    pass

log = logging.getLogger("p2pfl.node")


class AsyncMode:
    """The async-mode methods of :class:`~p2pfl.node.Node` (a mixin: ``self`` is a Node)."""

    def _async_weights(self, t: int, included: list[int]) -> tuple[dict[int, float], dict[int, int]]:
        """W_ij, discounted by staleness (1 + age_j)^-a; the own weight absorbs the rest.

        age_j is how many of this node's ticks ago j's copy last changed. Only the latest
        copy counts, so a neighbour gets W_ij however often it announces.
        """
        ages: dict[int, int] = {}
        for j in included:
            copy = self.peers[j].copy
            if self._seen_copy.get(j) is not copy:
                self._seen_copy[j] = copy
                self._changed_tick[j] = t
            ages[j] = t - self._changed_tick.get(j, t)
        a = self.net.staleness
        weights = {j: self.weights[j] * (1.0 + ages[j]) ** -a if a > 0 else self.weights[j] for j in included}
        return weights, ages

    async def _before_merge(self) -> list[int] | None:
        """A before-merge adversary waits until ``lead`` seconds before the next predicted merge
        of a neighbour and returns the neighbours to announce to (None: no prediction yet, eager)."""
        assert self._clock is not None and self.timing is not None
        now = time.monotonic()
        alive = [j for j in self.neighbours if self._alive(j) and not self.peers[j].done]
        at, merges = self._clock.due(alive, now, self.timing.lead)
        if at is None:
            return None
        if at > now:  # bounded: a neighbour that stops announcing must not park the adversary
            await self._wait(self._neighbours_finished, min(at - now, self.round_timeout))
        for j, merge in merges.items():
            self._clock.served(j, merge)
        return sorted(merges)

    def _neighbours_finished(self) -> bool:
        return all(p.done or not self._alive(j) for j, p in self.peers.items())

    def _fresh_enough(self, t: int) -> bool:
        """``net.merge_quorum`` of the live, unfinished neighbours have announced tick t or later."""
        live = [j for j, p in self.peers.items() if not p.done and self._alive(j)]
        fresh = sum(self.peers[j].round >= t for j in live)
        return fresh >= math.ceil(self.net.merge_quorum * len(live) - 1e-9)

    def _heard(self) -> list[int]:
        return [j for j, p in self.peers.items() if p.round >= 1]  # heard from at least once

    async def _async_tick(self, t: int, rng: np.random.Generator) -> None:
        t0 = time.perf_counter()
        self.protocol.begin_round(t, time.monotonic())
        timed = await self._before_merge() if self._clock is not None else None
        early: dict[str, Any] = {}
        if self.net.merge_order == "merge-first":  # merge the latest copies, then train from there
            included = self._heard()
            weights, ages = self._async_weights(t, included)
            copies = {j: self.peers[j].copy for j in included}
            self.x, stats, dropped = await self._in_executor(self._merge, t, self.x, included, copies, weights,
                                                             self._last_update)
            self.merge_dropped += len(dropped)
            early = {"weights": {str(j): round(w, 6) for j, w in weights.items()},
                     "ages": {str(j): a for j, a in ages.items()}, **({"filter": stats} if stats else {})}
        x_before = self.x
        t_craft = time.perf_counter()
        crafted = await self._in_executor(self.behaviour.craft, self._view(t))
        t_work = time.perf_counter()
        if early:
            self._last_update = np.subtract(crafted.own, x_before, dtype=np.float32)
        await self._slow_down(t_work - t_craft)
        t_train = time.perf_counter()
        fanout = self.net.fanout
        targets = timed
        if timed is None and 0 < fanout < len(self.neighbours):
            targets = sorted(int(j) for j in rng.choice(self.neighbours, size=fanout, replace=False))
        self._post(self.protocol.announce(t, crafted.announce, targets))
        self._tick()
        await asyncio.sleep(0)  # let the receiver apply what has arrived
        if self.net.merge_wait > 0 and not early:  # bounded: never a barrier
            await self._wait(lambda: self._fresh_enough(t), self.net.merge_wait)
        t_wait = time.perf_counter()
        included = [] if early else self._heard()
        weights, ages = self._async_weights(t, included)
        now = time.monotonic()
        await self._merge_and_record(
            t, crafted, included, [j for j in self.neighbours if j not in included], t0,
            {"train": round(t_work - t0, 4), "slow": round(t_train - t_work, 4), "wait": round(t_wait - t_train, 4)},
            weights,
            announced_to=list(self.neighbours) if targets is None else targets,
            **({"weights": {str(j): round(w, 6) for j, w in weights.items()},
                "ages": {str(j): a for j, a in ages.items()}} | early),
            fresh={str(j): round(now - self._copy_time[j], 4) for j in included if j in self._copy_time},
            peer_rounds={str(j): self.peers[j].round for j in self.neighbours})
        if timed is not None:  # paced by its neighbours' merges
            return
        period = self.timing.every if self.timing is not None and self.timing.every > 0 else self.net.tick_period
        period /= self.speed
        rest = period - (time.perf_counter() - t0)
        if rest > 0:  # a node wakes at most once per tick period (serving its sockets meanwhile)
            await self._wait(lambda: False, rest)

    def _tick_seconds(self) -> float:
        """How long this node's ticks take (mean so far), for the time a departed node stays away."""
        times = [r["time"]["round"] for r in self.history if "time" in r]
        if len(times) > 1:  # the first tick carries start-up costs (a cold training step, imports)
            times = times[1:]
        mean = sum(times) / len(times) if times else 0.0
        return max(mean, self.net.tick_period / self.speed, 0.05)

    async def _leave(self, ticks: int) -> None:
        """Churn: stop training, announcing and answering for ``ticks`` of this node's ticks."""
        log.info("node %d: leaving for %d ticks (churn)", self.id, ticks)
        self.away = True
        self.left_at = time.perf_counter() - self._t_start
        for queue in self._outbox.values():  # what was queued is lost with the node
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()
        closed = self.reopen is not None and self._tg is not None and bool(self._workers)
        if closed:
            recv = self._workers[0]
            recv.cancel()
            await asyncio.gather(recv, return_exceptions=True)
            self.transport.close(linger_ms=0)
        await asyncio.sleep(ticks * self._tick_seconds())
        if closed:
            assert self._tg is not None and self.reopen is not None
            for attempt in range(100):  # the port may take a moment to be released
                try:
                    self.transport = self.reopen()
                    break
                except TransportError:
                    if attempt == 99:
                        raise
                    await asyncio.sleep(0.05)
            self._own_transport = True
            self._workers[0] = self._tg.create_task(self._receive_loop(), name=f"node{self.id}-recv")
        self.away = False

    async def _rejoin(self) -> None:
        """Back from churn: hello again, ask every neighbour for a snapshot, adopt their models.

        Like a resumed node (:meth:`_catch_up`): its own model is from before it left, so x
        becomes the W-weighted mean of the neighbours' copies that moved since (bounded wait).
        """
        now = time.monotonic()
        before = {j: p.copy for j, p in self.peers.items()}
        self._post(self.protocol.hellos(now))
        for j, peer in self.peers.items():
            peer.gap_since = now
            self._post([self.protocol.snapshot_request(j, now)])
        wait = min(self.round_timeout, max(2 * self.gap_grace, 1.0))
        await self._wait(lambda: all(not p.asked or not self._alive(j) for j, p in self.peers.items()), wait)
        for peer in self.peers.values():
            if peer.asked:  # not answered: its copy was current (or it is away too)
                peer.asked = False
            if not peer.pending and peer.round >= 0:
                peer.gap_since = None
        fresh = [j for j, p in self.peers.items() if p.copy is not before[j] and p.round >= 1]
        if fresh:
            w = np.array([self.weights[j] for j in fresh], dtype=np.float64)
            mean = np.zeros(self.dim, dtype=np.float64)
            for j, wj in zip(fresh, w / w.sum(), strict=True):
                mean += wj * self.peers[j].copy
            self.x = mean.astype(np.float32)
        log.info("node %d: rejoined; caught up from %d neighbours' models", self.id, len(fresh))

    async def _run_async(self, start: int, workers: list[asyncio.Task[Any]], resume: bool = False) -> bool:
        """Ticks ``start..rounds`` without a barrier; False if the node left (churn) and does not
        finish here: gone for good, or its process exits to be started again at rejoin."""
        rng = np.random.default_rng([self.seed, self.id, 0xA5])  # fan-out choices, per node
        leave, rejoin = self.churn or (0, 0)
        t = start
        if resume and leave and leave <= t < rejoin:  # a process started again after it left: rejoin
            await self._rejoin()
            t = rejoin
        # an adversary that times its announcements goes on until its neighbours have finished
        while t <= self.rounds or (self.timing is not None and not self._neighbours_finished()):
            if leave and leave <= t and (rejoin == 0 or t < rejoin):
                if rejoin == 0 or rejoin > self.rounds:  # gone for good: close the sockets
                    log.info("node %d: leaving for good at tick %d (churn)", self.id, t)
                    self.away = True
                    self.left_at = time.perf_counter() - self._t_start
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    self.transport.close(linger_ms=0)
                    return False
                if self.leave_exits:  # its process ends; the launcher starts it again at rejoin
                    self.away_for = (rejoin - t) * self._tick_seconds()
                    log.info("node %d: leaving for %d ticks (%.1fs; churn): the process exits", self.id,
                             rejoin - t, self.away_for)
                    self.away = True
                    self.left_at = time.perf_counter() - self._t_start + self.wall_offset
                    await self._checkpoint(False)
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    self.transport.close(linger_ms=0)
                    return False
                await self._leave(rejoin - t)
                await self._rejoin()
                t = rejoin
                continue
            if self.time_budget and time.perf_counter() - self._t_start >= self.time_budget:
                log.info("node %d: time budget of %.1fs spent after %d ticks", self.id, self.time_budget, t - 1)
                break
            await self._async_tick(t, rng)
            t += 1
        return True

    async def _finish_async(self) -> None:
        """Say ``done`` and wait (bounded by the round timeout; liveness skips the departed) for
        the neighbours' ``done``, serving their snapshot requests meanwhile."""
        self.round = max(self.round, self.rounds)
        await self._checkpoint(True)
        self._post(self.protocol.done_messages(time.monotonic()))
        self.finish_complete = await self._wait(
            lambda: all(p.done or not self._alive(j) for j, p in self.peers.items()), self.round_timeout)
