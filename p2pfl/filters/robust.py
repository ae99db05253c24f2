"""Coordinate-wise robust aggregation: ``median`` and ``trimmed-mean``.

Both vote per coordinate over {0 (the node itself)} ∪ {u_ij} and apply the result with
the total neighbour weight Σ_j W_ij, so that with identical proposals they equal plain
gossip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from p2pfl.errors import ConfigError
from p2pfl.validate import integer

from .base import Filter, FilterContext, FilterResult, Proposals, partial_result, warn_degraded
from .numerics import masked_norm, with_self


class MedianFilter(Filter):
    """Coordinate-wise median over the node's own proposal and its neighbours'.

    F = (Σ_j W_ij)·med({0} ∪ {u_ij}_j)    (per coordinate; u_ii = 0 is z_i itself).

    This is the decentralised form of the coordinate median (e.g. "DeCM" in He et al.
    2022): the node is one of the voters, and the median displacement is applied with the
    total neighbour weight so that, with identical proposals, it equals plain gossip.
    Attribution for ``norm_out``: a coordinate counts for every proposal equal to the
    selected value (half each for the two middle values when m + 1 is even).

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett, "Byzantine-robust distributed learning: towards
    optimal statistical rates", ICML 2018.
    """

    name = "median"

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return partial_result(np.zeros(p.d, np.float32), p, {})
        scale = float(p.w.sum())
        x = with_self(p.u)
        n = x.shape[0]
        lo, hi = (n - 1) // 2, n // 2
        part = np.partition(x, [lo, hi], axis=0)
        vlo, vhi = part[lo], part[hi]
        med = (vlo.astype(np.float64) + vhi) * 0.5
        update = (med * scale).astype(np.float32)
        norm_out = {}
        for r, j in enumerate(p.ids):
            row = p.u[r]
            share = 0.5 * (row == vlo) + 0.5 * (row == vhi)
            norm_out[j] = scale * masked_norm(row, share)
        return partial_result(update, p, norm_out)


class TrimmedMeanFilter(Filter):
    """Coordinate-wise trimmed mean over {0 (self)} ∪ {u_ij}.

    Per coordinate, drop the b largest and the b smallest of the n = m + 1 values and
    average the rest; F = (Σ_j W_ij)·that mean (the same decentralised form as
    :class:`MedianFilter`).

    Parameters
    ----------
    b : int >= 0
        Values trimmed at each end (default 1). ``check`` needs 2b < m + 1; at run time,
        with fewer proposals (after a screen), b shrinks to (n − 1) // 2.

    References
    ----------
    Yin et al., ICML 2018 (coordinate-wise trimmed mean).
    """

    name = "trimmed-mean"
    PARAMS: ClassVar[Mapping[str, Any]] = {"b": 1}

    def __init__(self, *, b: int = 1) -> None:
        super().__init__()
        self.b = integer("defence.b", b, 0)

    def check(self, degree: int) -> None:
        if 2 * self.b >= degree + 1:
            raise ConfigError(
                "defence.b",
                self.b,
                f"needs 2b < m + 1 = {degree + 1}, i.e. b <= {degree // 2}, "
                f"for a node with {degree} neighbours",
            )

    def aggregate(self, p: Proposals, ctx: FilterContext) -> FilterResult:
        if p.m == 0:
            return partial_result(np.zeros(p.d, np.float32), p, {})
        scale = float(p.w.sum())
        x = with_self(p.u)
        n = x.shape[0]
        b = min(self.b, (n - 1) // 2)
        if b < self.b:
            warn_degraded(self, f"b={self.b} needs m >= {2 * self.b}; trimming {b} with m={p.m}")
        kept = n - 2 * b
        part = np.partition(x, sorted({b, n - 1 - b}), axis=0)
        mean = part[b : n - b].sum(axis=0, dtype=np.float64) / kept
        update = (mean * scale).astype(np.float32)
        vlo, vhi = part[b], part[n - 1 - b]
        norm_out = {}
        for r, j in enumerate(p.ids):
            row = p.u[r]
            norm_out[j] = scale / kept * masked_norm(row, (row >= vlo) & (row <= vhi))
        return partial_result(update, p, norm_out)


__all__ = ["MedianFilter", "TrimmedMeanFilter"]
