"""When an adversary announces in async mode: eagerly, at its own rate, or right before a receiver's merge.

In async mode (docs/protocol.md, "Rounds and ticks") an adversary's timing and rate are part of the threat
model. Three attack parameters (``[attack]``, ``--set attack.X=...`` or a role profile's
``[attack]`` table) choose them; every attack takes them:

``announce = "eager"`` (default)
    Announce as soon as the tick's model is crafted, as benign nodes do.
``announce = "before-merge"``
    Announce to each neighbour j right before j's next merge. An async node merges right
    after it announces, so j's merges are as far apart as its announcements: the adversary
    predicts j's next merge from the arrival times of j's deltas (:class:`MergeClock`) and
    crafts and sends its delta to j ``announce_lead`` seconds before it. Its model is then
    the freshest the receiver holds when it merges, crafted from the latest public copies.
``announce_every`` (seconds, default 0)
    The adversary's own tick period (0: ``net.tick_period``), so it may announce far more
    often than the benign nodes: ``announce_every = 0.1 * tick_period`` is the 10x announcer.

An adversary with a timing other than the default keeps announcing until every neighbour
has finished (said ``done``, or is down), however many ticks that takes: its rate, not a
tick count, is what it chooses. What it cannot gain is weight: a receiver keeps only the
latest public copy of each neighbour and gives it W_ij, however often it arrives.

This module is pure bookkeeping (no sockets, no clock of its own: callers pass ``now``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import validate
from .errors import ConfigError

ANNOUNCE_MODES = ("eager", "before-merge")
TIMING_PARAMS = ("announce", "announce_every", "announce_lead")


@dataclass(frozen=True, kw_only=True)
class AnnounceTiming:
    """An adversary's announcement timing (see the module docstring)."""

    mode: str = "eager"
    every: float = 0.0  # seconds between own ticks (0: net.tick_period)
    lead: float = 0.05  # before-merge: seconds ahead of a receiver's predicted merge

    def __post_init__(self) -> None:
        validate.choice("attack.announce", self.mode, ANNOUNCE_MODES)
        validate.real("attack.announce_every", self.every, 0.0, 3600.0)
        validate.real("attack.announce_lead", self.lead, 0.0, 3600.0)

    @property
    def default(self) -> bool:
        """Eager at the node's own tick period: the adversary times nothing."""
        return self.mode == "eager" and self.every == 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AnnounceTiming:
        """The timing named by an attack's parameters (absent keys: the defaults)."""
        return cls(mode=params.get("announce", "eager"), every=params.get("announce_every", 0.0),
                   lead=params.get("announce_lead", 0.05))


def check_timing(params: Mapping[str, Any], *, mode: str | None = None) -> AnnounceTiming:
    """Validate the timing parameters among ``params``; ``mode``: the run's (sync refuses timing)."""
    timing = AnnounceTiming.from_params(params)
    if mode == "sync" and not timing.default:
        key = "attack.announce" if timing.mode != "eager" else "attack.announce_every"
        value = timing.mode if timing.mode != "eager" else timing.every
        raise ConfigError(key, value, "its default unless mode = 'async' (sync rounds announce once per round)")
    return timing


def strip_timing(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the timing keys (what the attack itself takes)."""
    return {k: v for k, v in params.items() if k not in TIMING_PARAMS}


class MergeClock:
    """Predicts when each neighbour merges next, from when its announcements arrive.

    An async node announces and merges in the same instant, once per tick; with fan-out it
    announces to a given neighbour only on some ticks, so the period per tick is the time
    between two arrivals over the number of ticks between them. The estimate is a moving
    average (weight ``alpha`` on the newest interval).
    """

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha
        self._last: dict[int, tuple[int, float]] = {}  # j -> (tick, arrival time)
        self._period: dict[int, float] = {}
        self._served: dict[int, float] = {}  # j -> the predicted merge last announced for

    def observe(self, j: int, tick: int, now: float) -> None:
        """j's copy reached ``tick`` at ``now``."""
        last = self._last.get(j)
        if last is not None and tick > last[0]:
            period = (now - last[1]) / (tick - last[0])
            old = self._period.get(j)
            self._period[j] = period if old is None else self.alpha * period + (1 - self.alpha) * old
        if last is None or tick > last[0]:
            self._last[j] = (tick, now)

    def period(self, j: int) -> float | None:
        return self._period.get(j)

    def next_merge(self, j: int, now: float) -> float | None:
        """j's next predicted merge after ``now`` that has not been served yet (None until two
        of its announcements arrived)."""
        last, period = self._last.get(j), self._period.get(j)
        if last is None or period is None or period <= 0:
            return None
        after = max(now, self._served.get(j, float("-inf")) + 0.5 * period)
        ticks = max(1, int((after - last[1]) // period) + 1)
        return last[1] + ticks * period

    def served(self, j: int, merge: float) -> None:
        """An announcement to j for its merge predicted at ``merge`` was sent."""
        self._served[j] = merge

    def due(self, neighbours: Iterable[int], now: float, lead: float) -> tuple[float | None, dict[int, float]]:
        """When to announce next and to whom: the earliest predicted merge minus ``lead``, and
        every neighbour whose predicted merge falls within ``lead`` of that one (with it)."""
        merges = {j: m for j in neighbours if (m := self.next_merge(j, now)) is not None}
        if not merges:
            return None, {}
        first = min(merges.values())
        return first - lead, {j: m for j, m in sorted(merges.items()) if m <= first + lead}


__all__ = ["ANNOUNCE_MODES", "TIMING_PARAMS", "AnnounceTiming", "MergeClock", "check_timing", "strip_timing"]
