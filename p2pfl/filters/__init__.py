"""Local defences: what a node applies of its neighbours' proposals.

Node i holds its freshly trained model z_i and, for each neighbour j, a *proposal*
u_ij = x̂_j − z_i (x̂_j is i's public copy of j) with Metropolis–Hastings weight W_ij
(Σ_j W_ij <= 1; the rest is i's self weight). The node applies

    x_i(t+1) = z_i + F({u_ij, W_ij}),        no filter: F = Σ_j W_ij u_ij.

A filter screens (drops or transforms proposals) and then aggregates; filters chain:
``build_filter("accuracy-check,topk-clip")`` screens with every member in order and
aggregates with the last one. The reference defence is ``topk-clip``.

Layout (one rule or family per module, shared math apart)::

    base.py            Proposals, FilterContext, FilterResult, the Filter base class, NoFilter
    numerics.py        overflow-safe norms, weighted sums, top-k, pairwise distances
    clip.py            clip, topk-clip, clipped-gossip
    robust.py          median, trimmed-mean
    krum.py            krum, multi-krum
    balance.py         balance
    accuracy_check.py  accuracy-check
    chain.py           Chain (several filters in a row)
    __init__.py        the registry: FILTERS and build_filter

Numerics: norms are accumulated in float64 (a float32 vector squared never overflows
float64, so inputs up to float32's maximum give finite norms); updates are float32.
Proposals with NaN/Inf entries are dropped before any filter sees them (the wire layer
already rejects them; this is defence in depth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl.errors import ConfigError
from p2pfl.validate import known_keys

from .accuracy_check import AccuracyCheckFilter
from .balance import BalanceFilter
from .base import COUNTER_KEYS, Filter, FilterContext, FilterResult, NoFilter, Proposals
from .chain import Chain
from .clip import AUTO, TAU_RULES, TOPK_MODES, ClipFilter, ClippedGossipFilter, TopKClipFilter
from .krum import KrumFilter, MultiKrumFilter
from .numerics import row_norms, topk_indices, vector_norm, weighted_rows
from .robust import MedianFilter, TrimmedMeanFilter

FILTERS: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (
        NoFilter,
        TopKClipFilter,
        ClipFilter,
        MedianFilter,
        TrimmedMeanFilter,
        KrumFilter,
        MultiKrumFilter,
        ClippedGossipFilter,
        BalanceFilter,
        AccuracyCheckFilter,
    )
}


def _from_text(value: Any) -> Any:
    """A number written as text (``"0.5"``, from a command line) as that number; else ``value``."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _names(spec: str | Sequence[str]) -> list[str]:
    parts = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise ConfigError("defence", part, "a filter name or a comma-separated chain")
        names.extend(n.strip().lower() for n in part.split(",") if n.strip())
    if not names:
        raise ConfigError("defence", spec, "one of " + ", ".join(FILTERS))
    return names


def build_filter(spec: str | Sequence[str], params: Mapping[str, Any] | None = None) -> Filter:
    """Build a filter or a chain from its CLI name(s) and a flat parameter mapping.

    ``build_filter("topk-clip", {"kappa": 0.05})``,
    ``build_filter("accuracy-check,topk-clip")``, ``build_filter(["clip", "median"])``.
    A parameter is given to every member that takes it (``tau`` to both ``clip`` and
    ``topk-clip``). Raises ConfigError naming ``defence`` for an unknown filter or a
    misplaced aggregator, and ``defence.<param>`` for an unknown or invalid parameter.
    """
    names = _names(spec)
    for n in names:
        if n not in FILTERS:
            raise ConfigError(
                "defence", n, "one of " + ", ".join(FILTERS) + " (comma-separated to chain)"
            )
    classes = [FILTERS[n] for n in names]
    for cls in classes[:-1]:
        if not cls.screens:
            raise ConfigError(
                "defence",
                ",".join(names),
                f"{cls.name!r} only aggregates; it can stand only last in a chain",
            )
    params = {k: _from_text(v) for k, v in (params or {}).items()}
    known_keys("defence", params, sorted({k for cls in classes for k in cls.PARAMS}), ",".join(names))
    members = [cls(**{k: v for k, v in params.items() if k in cls.PARAMS}) for cls in classes]
    return members[0] if len(members) == 1 else Chain(members)


__all__ = [
    "AUTO",
    "COUNTER_KEYS",
    "FILTERS",
    "AccuracyCheckFilter",
    "BalanceFilter",
    "Chain",
    "ClipFilter",
    "ClippedGossipFilter",
    "Filter",
    "FilterContext",
    "FilterResult",
    "KrumFilter",
    "MedianFilter",
    "MultiKrumFilter",
    "NoFilter",
    "Proposals",
    "TAU_RULES",
    "TOPK_MODES",
    "TopKClipFilter",
    "TrimmedMeanFilter",
    "build_filter",
    "row_norms",
    "topk_indices",
    "vector_norm",
    "weighted_rows",
]
