"""``balance``: keep a neighbour whose model is close enough to the node's own (Fang et al., CCS 2024)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from p2pfl.validate import real

from .base import Filter, FilterContext, Proposals
from .numerics import vector_norm


class BalanceFilter(Filter):
    """BALANCE (Fang et al., CCS 2024): keep neighbour j iff

        ||x̂_j − z_i|| = ||u_ij|| <= γ·exp(−κ_b·t/T)·||z_i||,

    then the weighted sum over the accepted ones; a rejected neighbour's weight stays with
    the node (its proposal counts as 0). The threshold tightens as training proceeds
    (λ(t) = t/T).

    Deviation: BALANCE mixes the accepted models as α·z_i + (1 − α)·mean; here the
    accepted ones keep their Metropolis–Hastings weights, so with no attacker BALANCE
    equals plain gossip.

    Parameters
    ----------
    gamma : float > 0
        Default 0.3, the paper's default setting as we read it (Fang et al. 2024, §6);
        public re-implementations use 0.7–2.0, so tune it per model (it is relative to
        ||z_i||).
    kappa_b : float >= 0
        Decay rate κ, default 1 (the paper's default).

    References
    ----------
    Fang, Zhang, Hairi, Khanduri, Liu, Lu, Liu, Gong, "Byzantine-robust decentralized
    federated learning", ACM CCS 2024 (arXiv:2406.10416).
    """

    name = "balance"
    PARAMS: ClassVar[Mapping[str, Any]] = {"gamma": 0.3, "kappa_b": 1.0}
    screens = True

    def __init__(self, *, gamma: float = 0.3, kappa_b: float = 1.0) -> None:
        super().__init__()
        self.gamma = real("defence.gamma", gamma, 0.0, open_lo=True)
        self.kappa_b = real("defence.kappa_b", kappa_b, 0.0)

    def threshold(self, ctx: FilterContext) -> float:
        lam = ctx.round / max(1, ctx.rounds)
        return self.gamma * math.exp(-self.kappa_b * lam) * vector_norm(ctx.own)

    def screen(self, p: Proposals, ctx: FilterContext) -> Proposals:
        return p.subset(p.norms() <= self.threshold(ctx))


__all__ = ["BalanceFilter"]
