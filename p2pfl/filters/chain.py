"""Several filters in a row (``build_filter("accuracy-check,topk-clip")``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl.errors import ConfigError

from .base import COUNTER_KEYS, Filter, FilterContext, FilterResult, Proposals


class Chain(Filter):
    """Several filters in a row: every member screens in order, the last aggregates.

    Counters: the chain's own totals (as for any filter; ``clipped`` sums the members')
    plus every member's counters under ``"<member name>.<counter>"``.
    """

    name = "chain"

    def __init__(self, members: Sequence[Filter]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("defence", "", "at least one filter")
        self.members = list(members)

    @property
    def spec(self) -> str:
        return ",".join(m.spec for m in self.members)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.members:
            out.update(m.params())
        return out

    def check(self, degree: int) -> None:
        for m in self.members:
            m.check(degree)

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        for m in self.members:
            p = self._screen_with(m, p, ctx)
        return p

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        return self.members[-1].aggregate(p, ctx)

    @staticmethod
    def _screen_with(m: Filter, p: Proposals, ctx: FilterContext) -> Proposals:
        q = m.screen(p, ctx)
        m.counters["calls"] += 1
        m.counters["proposals"] += p.m
        m.counters["dropped"] += p.m - q.m
        return q

    def _run(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        *first, last = self.members
        for m in first:
            p = self._screen_with(m, p, ctx)
        if not last.fused_screen:
            p = self._screen_with(last, p, ctx)
        else:
            last.counters["calls"] += 1
            last.counters["proposals"] += p.m
        res = last.aggregate(p, ctx)
        last.counters["dropped"] += len(res.dropped)
        last.counters["coords_kept"] += int(res.kept_coords)
        return res

    def _finish(
        self, res: FilterResult, p: Proposals, norm_in: dict[int, float], bad: tuple[int, ...]
    ) -> FilterResult:
        out = super()._finish(res, p, norm_in, bad)
        self._merge_counters()
        return out

    def _merge_counters(self) -> None:
        own = {k: self.counters.get(k, 0) for k in COUNTER_KEYS}
        own["clipped"] = sum(m.counters["clipped"] for m in self.members)
        merged = dict(own)
        for m in self.members:
            for k, v in m.counters.items():
                merged[f"{m.name}.{k}"] = v
        self.counters = merged

    def _extra_state(self) -> dict[str, Any]:
        return {"members": [m.state_dict() for m in self.members]}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        members = state.get("members", [])
        if len(members) != len(self.members):
            raise ConfigError("defence", self.spec, "the checkpoint has a different chain")
        for m, s in zip(self.members, members, strict=True):
            m.load_state_dict(s)
        self.counters = {k: v for k, v in self.counters.items() if "." not in k}
        self._merge_counters()


__all__ = ["Chain"]
