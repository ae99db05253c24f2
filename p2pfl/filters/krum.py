"""Distance-based selection: ``krum`` and ``multi-krum`` (Blanchard et al., NeurIPS 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from p2pfl.errors import ConfigError
from p2pfl.validate import integer

from .base import Filter, FilterContext, FilterResult, Proposals, partial_result, warn_degraded
from .numerics import pairwise_sq_dists, weighted_rows, with_self


class KrumFilter(Filter):
    """Krum (Blanchard et al., NeurIPS 2017) over {0 (self)} ∪ {u_ij}.

    With n = m + 1 candidates and f assumed Byzantine, score(v) = Σ of the squared
    distances from v to its n − f − 2 nearest other candidates; Krum keeps the
    lowest-scoring candidate and applies F = (Σ_j W_ij)·v*. The node's own proposal is a
    candidate: if it wins, F = 0 and every neighbour counts as dropped. Ties are broken
    towards the node itself, then the lower id.

    Parameters
    ----------
    f : int >= 0
        Assumed number of Byzantine neighbours (default 1). ``check`` needs n − f − 2 >= 1.
        At run time, with fewer proposals (after a screen), the neighbour count
        n − f − 2 is raised to 1.

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine learning with adversaries:
    Byzantine tolerant gradient descent", NeurIPS 2017.
    """

    name = "krum"
    PARAMS: ClassVar[Mapping[str, Any]] = {"f": 1}

    def __init__(self, *, f: int = 1) -> None:
        super().__init__()
        self.f = integer("defence.f", f, 0)

    def check(self, degree: int) -> None:
        n = degree + 1
        if n - self.f - 2 < 1:
            raise ConfigError(
                "defence.f",
                self.f,
                f"needs n - f - 2 >= 1 with n = m + 1 = {n} (so f <= {max(n - 3, 0)}; "
                f"at least {self.f + 2} neighbours), for a node with {degree} neighbours",
            )

    def _how_many(self, n: int) -> int:
        return 1

    def scores(self, p: Proposals) -> np.ndarray:
        """Krum score of each candidate (index 0: the node itself, then p.ids)."""
        x = with_self(p.u)
        n = x.shape[0]
        d2 = pairwise_sq_dists(x)
        q = min(n - 1, max(1, n - self.f - 2))
        if q != n - self.f - 2:
            warn_degraded(self, f"f={self.f} needs m >= {self.f + 2}; scoring {q} with m={p.m}")
        near = np.sort(d2 + np.diag(np.full(n, np.inf)), axis=1)[:, :q]
        return near.sum(axis=1)

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return partial_result(np.zeros(p.d, np.float32), p, {})
        n = p.m + 1
        sel = np.argsort(self.scores(p), kind="stable")[: self._how_many(n)]
        chosen = sorted(int(c) - 1 for c in sel if c > 0)  # rows of p
        factor = float(p.w.sum()) / len(sel)
        coef = np.zeros(p.m)
        coef[chosen] = factor
        update = weighted_rows(coef, p.u)
        norms = p.norms()
        norm_out = {p.ids[r]: factor * float(norms[r]) for r in chosen}
        kept = set(chosen)
        dropped = [j for r, j in enumerate(p.ids) if r not in kept]
        return partial_result(update, p, norm_out, dropped=dropped)


class MultiKrumFilter(KrumFilter):
    """Multi-Krum (Blanchard et al. 2017): average the ``multi`` lowest Krum scores.

    F = (Σ_j W_ij)·mean(selected candidates), candidates {0 (self)} ∪ {u_ij} as in
    :class:`KrumFilter`; the node's zero proposal, if selected, takes one slot.

    Parameters
    ----------
    f : int >= 0
        As in Krum (default 1).
    multi : int >= 1, optional
        How many candidates to average; default n − f with n = m + 1 (Blanchard et al.'s
        choice m = n − f), capped at n.
    """

    name = "multi-krum"
    PARAMS: ClassVar[Mapping[str, Any]] = {"f": 1, "multi": None}

    def __init__(self, *, f: int = 1, multi: int | None = None) -> None:
        super().__init__(f=f)
        self.multi = None if multi is None else integer("defence.multi", multi, 1)

    def check(self, degree: int) -> None:
        super().check(degree)
        if self.multi is not None and self.multi > degree + 1:
            raise ConfigError(
                "defence.multi",
                self.multi,
                f"needs multi <= m + 1 = {degree + 1} for a node with {degree} neighbours",
            )

    def _how_many(self, n: int) -> int:
        want = n - self.f if self.multi is None else self.multi
        return min(n, max(1, want))


__all__ = ["KrumFilter", "MultiKrumFilter"]
