"""Stealth statistics: how an announcement compares with the benign updates (``info`` of every round).

Stealth statistics (``info`` of every round, also in delayed rounds)
--------------------------------------------------------------------
``delta_norm``   max over neighbours of ||announced delta||;
``dist_min/max`` L2 distances of this round's delta to the benign neighbours' deltas of
                 round t-1 (the newest the adversary has seen);
``prev_dist_min/max``, ``benign_min/max``  the paper's comparison, one round late: the
                 adversary's round t-1 delta against the benign deltas of round t-1, and
                 the pairwise distances among those benign deltas;
``benign_norm_max``  largest benign delta norm of round t-1;
``update_norm``  max ||announced model - x||: the update in the paper's sense (relative to the
                 model the round started from; a delta also carries the consensus drift);
``prev_update_dist_min/max``, ``update_benign_min/max``, ``update_benign_norm_max``  the same
                 comparison for updates, one round late: the adversary's round t-1 update
                 against the benign neighbours' round t-1 updates d_j = xhat_j - x_m(t-1)
                 (exact on the complete graph), and their pairwise spread;
``prev_within``, ``prev_update_within``  1.0 when the adversary's round t-1 delta (update) is
                 no farther from any benign one than the benign ones are from each other
                 (``prev_dist_max <= benign_max``), else 0.0: the paper's distance-spread
                 stealth test, one round late; summaries count the rounds that pass it;
``announced_acc``    accuracy of the announced model on up to 500 clean test examples;
                 when it equivocates, the mean over the distinct models it announced, and
                 ``announced_acc_min`` the lowest;
``benign_update_norm``, ``norm_ratio``  ``update_norm`` / the norm of a benign update of
                 this round: the adversary's own honest update ||z - x|| when the attack
                 trains z anyway (signflip, gaussian without sigma, alie, ipm, minmax, minsum,
                 dissensus, adaptive, stealth/altmin with ``constrain = "self"``, and every
                 delayed round; ``benign_norm_own`` = 1.0), else the W-weighted mean norm of
                 its benign neighbours' round t-1 updates d_j (``benign_norm_own`` = 0.0; no
                 value in round 1). 1.0 means an update of honest size.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np


def distances(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[float]:
    """L2 distances of every vector of ``a`` to every vector of ``b``."""
    return [float(np.linalg.norm(np.subtract(x, y, dtype=np.float64))) for x in a for y in b]


def pairwise(vectors: Sequence[np.ndarray]) -> list[float]:
    """L2 distances of every unordered pair of ``vectors``."""
    return [float(np.linalg.norm(np.subtract(vectors[i], vectors[k], dtype=np.float64)))
            for i in range(len(vectors)) for k in range(i + 1, len(vectors))]


def distinct_models(announce: np.ndarray | Mapping[int, np.ndarray]) -> list[np.ndarray]:
    """The announced models with distinct contents (one when it does not equivocate)."""
    if isinstance(announce, np.ndarray):
        return [announce]
    seen: dict[bytes, np.ndarray] = {}
    for m in announce.values():
        seen.setdefault(hashlib.blake2b(np.ascontiguousarray(m).tobytes(), digest_size=16).digest(), m)
    return list(seen.values())


def _norm_max(vectors: Sequence[np.ndarray]) -> float:
    return max(float(np.linalg.norm(v)) for v in vectors)


def update_spread(prev_updates: Sequence[np.ndarray], benign: Sequence[np.ndarray]) -> dict[str, float]:
    """The distance-spread test on updates, one round late.

    ``prev_updates``: the adversary's announced updates of round t-1; ``benign``: its benign
    neighbours' updates d_j of round t-1. Gives ``prev_update_dist_min/max``,
    ``update_benign_norm_max``, ``update_benign_min/max`` and ``prev_update_within``.
    """
    out: dict[str, float] = {}
    if benign:
        dist = distances(prev_updates, benign)
        out.update(prev_update_dist_min=min(dist), prev_update_dist_max=max(dist),
                   update_benign_norm_max=_norm_max(benign))
    if len(benign) > 1:
        spread = pairwise(benign)
        out.update(update_benign_min=min(spread), update_benign_max=max(spread),
                   prev_update_within=float(out["prev_update_dist_max"] <= max(spread)))
    return out


def delta_spread(mine: Sequence[np.ndarray], benign: Sequence[np.ndarray],
                 prev: Sequence[np.ndarray] | None) -> dict[str, float]:
    """The distance-spread statistics on deltas.

    ``mine``: this round's announced deltas; ``benign``: the benign neighbours' deltas of
    round t-1; ``prev``: the adversary's own deltas of round t-1 (None if it has none).
    Gives ``dist_min/max``, ``benign_norm_max``, ``benign_min/max``, ``prev_dist_min/max``
    and ``prev_within``.
    """
    out: dict[str, float] = {}
    if not benign:
        return out
    dist = distances(mine, benign)
    out.update(dist_min=min(dist), dist_max=max(dist), benign_norm_max=_norm_max(benign))
    if len(benign) > 1:
        spread = pairwise(benign)
        out.update(benign_min=min(spread), benign_max=max(spread))
    if prev:
        dist = distances(prev, benign)
        out.update(prev_dist_min=min(dist), prev_dist_max=max(dist))
        if "benign_max" in out:
            out["prev_within"] = float(max(dist) <= out["benign_max"])
    return out


def norm_ratio(update_norm: float, own_update_norm: float | None, updates: Mapping[int, np.ndarray],
               weights: Mapping[int, float]) -> dict[str, float]:
    """``benign_update_norm``, ``benign_norm_own`` and ``norm_ratio``.

    The benign norm is ``own_update_norm`` (the adversary's own honest update ||z - x||) when
    given, else the W-weighted mean norm of the benign neighbours' ``updates`` d_j; nothing
    when neither exists.
    """
    if own_update_norm is not None:
        norm, own = own_update_norm, 1.0
    else:
        total = sum(float(weights[j]) for j in updates)
        if not updates or total <= 0:
            return {}
        norm = sum(float(weights[j]) * float(np.linalg.norm(d)) for j, d in updates.items()) / total
        own = 0.0
    out = {"benign_update_norm": norm, "benign_norm_own": own}
    if norm > 0 and math.isfinite(norm):
        out["norm_ratio"] = update_norm / norm
    return out


__all__ = ["delta_spread", "distances", "distinct_models", "norm_ratio", "pairwise", "update_spread"]
